"""A goal search whose candidates compile on an executor: the same choice and the same bytes in process, in a
process pool and on a two-worker Ray cluster (with a step budget), a worker killed mid-task changes nothing,
and Ctrl-C leaves no output."""

from __future__ import annotations

import dataclasses
import os
import signal
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgec.compiler.calibration.spec import CalibrationSpec
from edgec.compiler.driver import CompileOptions
from edgec.compiler.executors import open_executor
from edgec.compiler.goal.driver import Goal, compile_to_goal
from edgec.targets import load_target

import models

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    folder = tmp_path_factory.mktemp("goal")
    onnx.save(models.mlp_model("gelu", blocks=2), folder / "m.onnx")
    rng = np.random.default_rng(0)
    np.savez(folder / "calib.npz", x=rng.standard_normal((48, 5, models.D)).astype(np.float32))
    # one training thread in every task, as Ray's one-CPU tasks have: the documented condition for equal bytes
    options = CompileOptions(calibration=CalibrationSpec(npz=folder / "calib.npz"), recover_steps=60, runs=5,
                             min_cosine=0.9, force=True, task_threads=1)
    return folder, options


def _search(problem, name: str, executor_spec: str, jobs: int = 1, events=None):
    folder, options = problem
    out = folder / f"{name}.onnx"
    executor = open_executor(executor_spec, jobs)
    try:
        report, tried = compile_to_goal(folder / "m.onnx", load_target("x86"), dataclasses.replace(options, output=out),
                                        Goal("size", 0.9), executor, events)
    finally:
        executor.close()
    return out, report, tried


def _same(a, b):
    (out_a, report_a, _), (out_b, report_b, _) = a, b
    assert out_a.read_bytes() == out_b.read_bytes()
    assert [(t["pipeline"], t["cosine"], t.get("train_steps"), t["chosen"]) for t in report_a.candidates] == \
           [(t["pipeline"], t["cosine"], t.get("train_steps"), t["chosen"]) for t in report_b.candidates]
    assert report_a.fidelity == report_b.fidelity and report_a.pipeline == report_b.pipeline


@pytest.fixture(scope="module")
def in_process(problem):
    return _search(problem, "local", "local")


def test_a_process_pool_gives_the_same_choice_and_bytes(problem, in_process):
    pooled = _search(problem, "pool", "local", jobs=2)
    _same(in_process, pooled)
    assert len({t["worker"] for t in pooled[1].executor["tasks"]}) >= 2


def test_a_ray_cluster_gives_the_same_choice_and_bytes(problem, in_process, ray_cluster):
    on_ray = _search(problem, "ray", f"ray:{ray_cluster}")
    _same(in_process, on_ray)
    record = on_ray[1].executor
    assert record["executor"] == "ray" and record["workers"] == 2
    assert all(t["worker"].split(":")[1] != str(os.getpid()) for t in record["tasks"])   # none ran here
    assert on_ray[1].latency["compiled"]["runs"] == 5                                       # timed here, after


def test_a_worker_killed_mid_task_reruns_it_and_the_result_is_the_same(problem, in_process, ray_cluster):
    killed: list[str] = []

    def kill_first_trained(key, state, detail=""):
        if state == "running" and "steps" in key and not killed:
            killed.append(key)
            os.kill(int(detail.rsplit(":", 1)[1]), signal.SIGKILL)

    on_ray = _search(problem, "killed", f"ray:{ray_cluster}", events=kill_first_trained)
    _same(in_process, on_ray)
    retried = [t for t in on_ray[1].executor["tasks"] if t["attempts"] > 1]
    assert killed and [t["task"] for t in retried] == killed and "died" in retried[0]["retried"][0]


def test_ctrl_c_leaves_no_output_and_no_temporary_folder(problem, ray_cluster):
    def interrupt(key, state, detail=""):
        if state == "running":          # Ctrl-C while the tasks run (KeyboardInterrupt in the main thread)
            raise KeyboardInterrupt

    folder = problem[0]
    with pytest.raises(KeyboardInterrupt):
        _search(problem, "interrupted", f"ray:{ray_cluster}", events=interrupt)
    assert not (folder / "interrupted.onnx").exists()
    assert not [p for p in Path(folder).iterdir() if p.name.startswith(".edgec-goal-")]


def test_a_compile_with_a_step_budget_writes_the_same_bytes_twice(problem):
    from clirun import run_cli

    folder, _ = problem
    outs = [folder / "steps_a.onnx", folder / "steps_b.onnx"]
    for out in outs:
        code, text = run_cli("compile", folder / "m.onnx", "--calib", folder / "calib.npz", "--passes", "cleanup,prune",
                             "--pass-option", "prune.keep=0.5", "--train-steps", "25", "--min-cosine", "0.5",
                             "--no-measure", "-o", out, "--format", "json")
        assert code == 0, text
    assert outs[0].read_bytes() == outs[1].read_bytes()
    import json

    recover = next(p for p in json.loads(text[text.index("{"):])["passes"] if p["name"] == "recover")
    assert recover["stats"]["steps"] == 17 and recover["stats"]["blockwise"]["budget"] == "8 steps"   # 30 % first


def test_a_task_trains_with_the_threads_it_is_given_and_gives_the_host_its_own_back(problem, monkeypatch):
    import torch

    import edgec.compiler.tasks.compile as compile_task_module
    from edgec.compiler.tasks.compile import CompileJob, compile_task

    folder, options = problem
    seen = []
    monkeypatch.setattr(compile_task_module, "build", lambda *a: seen.append(torch.get_num_threads()) or 1 / 0)
    before = torch.get_num_threads()
    outcome = compile_task(folder / "m.onnx", CompileJob("x", load_target("x86"),
                                                         dataclasses.replace(options, task_threads=1)))
    assert seen == [1] and torch.get_num_threads() == before and "division by zero" in outcome.failure
