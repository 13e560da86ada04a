"""A goal search's candidates as tasks: each round's compiles go to the executor together, and come back to
be timed here, one after another, against the original (never on a worker: a ratio never mixes machines).

A candidate's budget is minutes or (--train-steps) optimizer steps; a gates candidate gives half to the gates
and half to recovery. Each measured candidate is kept in the search's temporary folder until the winner is
chosen; the record of every task (where it ran, how long, retries) goes into the report.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from edgec.compiler import modelio
from edgec.compiler.driver import CompileOptions
from edgec.compiler.executors import Events, Executor, Shared, Task
from edgec.compiler.report.compile_report import CompileReport
from edgec.compiler.tasks.bundle import pack
from edgec.compiler.tasks.compile import CompileJob, CompileOutcome, Host, compile_task
from edgec.targets import TargetProfile

if TYPE_CHECKING:
    from edgec.compiler.goal.driver import Goal


@dataclass
class Result:
    point: dict
    report: CompileReport | None
    output: Path | None
    seconds: float = 0.0       # the task's time where it ran


@dataclass
class Trial:
    path: Path
    target: TargetProfile
    options: CompileOptions
    goal: Goal
    points: list[tuple[str, list[str], dict]]     # the candidates: label, passes, their options
    folder: Path
    executor: Executor
    events: Events | None = None
    records: list[dict] = field(default_factory=list)     # every task's run, round by round
    measuring: float = 0.0                                # seconds spent timing candidates here

    def __post_init__(self):
        self.host = Host(self.path, self.target)
        # a worker elsewhere reads the model and its data from the object store; this machine, from disk
        here = getattr(self.executor, "same_machine", True)
        self.source = self.path if here else Shared(pack(self.path, self.options.calibration))

    def run_round(self, jobs: list[tuple[int, float]]) -> list[Result]:
        """Compile these (candidate index, budget) pairs as tasks, then time each one here."""
        points = self.points
        tasks = [Task(_key(points[i][0], amount, self.steps), compile_task, (self.source, self._job(points[i], amount)))
                 for i, amount in jobs]
        runs = self.executor.run(tasks, self.events)
        round_number = 1 + max((r["round"] for r in self.records), default=0)
        results = []
        for (i, amount), run in zip(jobs, runs, strict=True):
            self.records.append({"round": round_number, **run.record()})
            results.append(self._finished(i, points[i][0], amount, run.value, run.seconds))
        return results

    @property
    def steps(self) -> bool:
        return self.options.recover_steps > 0

    def _job(self, candidate: tuple[str, list[str], dict], amount: float) -> CompileJob:
        label, passes, pass_options = candidate
        merged = merged_options(pass_options, self.options.pass_options, passes)
        recover = amount
        if "gates" in passes:           # the gates train first: half the candidate's budget, recovery the rest
            recover = max(1, amount // 2) if self.steps else amount / 2
            merged["gates"] = {**merged["gates"], **({"steps": int(recover)} if self.steps else {"minutes": recover})}
        options = dataclasses.replace(self.options, passes=passes, pass_options=merged, allow_slower=True,
                                      recover_steps=int(recover) if self.steps else 0,
                                      recover_minutes=0.0 if self.steps else recover)
        return CompileJob(label, self.target, options)

    def _finished(self, index: int, label: str, amount: float, outcome: CompileOutcome, seconds: float) -> Result:
        budget = {"train_steps" if self.steps else "train_minutes": amount}
        if outcome.report is None and outcome.user_error is None:
            return Result({"pipeline": label, "ok": False, "meets_goal": False, "latency_ratio": None,
                           "result": f"failed: {(outcome.failure or '')[:120]}", "bytes_ratio": None,
                           "cosine": 0.0, **budget}, None, None, seconds)
        began = time.monotonic()
        options = dataclasses.replace(self.options, allow_slower=True, measure=True)   # the goal needs the latency
        model = self.host.finish(outcome, options)
        self.measuring += time.monotonic() - began
        report = outcome.report
        assert report is not None
        out = self.folder / f"candidate{index}_{amount:g}.onnx"
        modelio.save_model_atomic(model, out)
        gated = self.options.gate_outputs
        point = {"pipeline": label, "ok": report.ok, "meets_goal": report.ok and self.goal.met(report),
                 "result": self.goal.describe(report), "latency_ratio": report.latency.get("ratio_p50"),
                 "bytes_ratio": bytes_ratio(report), **budget,
                 "cosine": judged_cosine(report, gated)}
        return Result(point, report, out, seconds)

    def summary(self, wall_seconds: float) -> dict:
        """Where the tasks ran and how long each took: enough to project the search onto N workers."""
        from edgec.compiler.executors.projection import projections

        return {"executor": self.executor.name, "workers": self.executor.workers,
                "wall_seconds": round(wall_seconds, 2), "measuring_seconds": round(self.measuring, 2),
                "projected_wall_seconds": projections(self.records, self.measuring), "tasks": self.records}


def bytes_ratio(report: CompileReport) -> float:
    assert report.before is not None and report.after is not None, "a finished compile summarizes both models"
    return report.after.bytes / max(report.before.bytes, 1)


def judged_cosine(report: CompileReport, gated: list[str] | None = None) -> float:
    """The worst held-out score over the outputs the gate judges (all of them when `gated` is None)."""
    return min((f["score"] for f in report.fidelity if gated is None or f["name"] in gated), default=1.0)


def merged_options(candidate: dict[str, dict], user: dict[str, dict], passes: list[str]) -> dict[str, dict]:
    """The candidate's own options, with the user's laid over them for the passes it runs (and recover)."""
    names = set(candidate) | {p for p in user if p in passes or p == "recover"}
    return {p: {**candidate.get(p, {}), **user.get(p, {})} for p in names}


def _key(label: str, amount: float, steps: bool) -> str:
    if amount <= 0:
        return label
    return f"{label} · {amount:.0f} steps" if steps else f"{label} · {amount:.2f} min"
