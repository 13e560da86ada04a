"""The local executors: in process, and a pool of processes whose dead workers are replaced."""

from __future__ import annotations

import pytest
import tasks

from edgec.compiler.errors import InputError
from edgec.compiler.executors import Shared, Task, open_executor
from edgec.compiler.executors.local import InProcess, ProcessPool


def test_in_process_runs_tasks_in_order_and_says_so():
    events = []
    runs = InProcess().run([Task("a", tasks.square, (3,)), Task("b", tasks.total, (Shared([1, 2]), 4))],
                           lambda key, state, detail="": events.append((key, state)))
    assert [r.value for r in runs] == [9, 7] and all(r.attempts == 1 for r in runs)
    assert events == [("a", "queued"), ("b", "queued"), ("a", "running"), ("a", "done"), ("b", "running"),
                      ("b", "done")]


def test_a_process_pool_replaces_a_dead_worker_and_reruns_its_task(tmp_path):
    pool = ProcessPool(2)
    try:
        runs = pool.run([Task("dies", tasks.die_once, (str(tmp_path / "marker"), 5)), Task("sq", tasks.square, (4,))])
    finally:
        pool.close()
    dies = runs[0]
    assert dies.value == 5 and dies.attempts == 2 and "died" in dies.lost[0]
    assert runs[1].value == 16


@pytest.mark.parametrize("spec, jobs, kind", [("local", 1, InProcess), ("local", 3, ProcessPool)])
def test_executor_specs(spec, jobs, kind):
    assert isinstance(open_executor(spec, jobs), kind)


@pytest.mark.parametrize("spec", ["dask", "ray-ish", ""])
def test_unknown_executors_are_input_errors(spec):
    with pytest.raises(InputError, match="--executor"):
        open_executor(spec)
