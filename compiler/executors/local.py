"""Executors on this machine: in process, one task after another (the default), or a pool of `jobs` worker
processes (`--jobs N`). Pool workers are started fresh (spawn): torch and ONNX Runtime thread pools do not
survive a fork. A pool whose worker dies is replaced and the unfinished tasks run again."""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from edgec.compiler.executors.base import Events, Task, TaskRun, call, quiet, unshared, worker_name

MAX_ATTEMPTS = 3


class InProcess:
    name = "local"
    workers = 1
    same_machine = True

    def run(self, tasks: list[Task], events: Events | None = None) -> list[TaskRun]:
        events = events or quiet
        for task in tasks:
            events(task.key, "queued", "")
        runs = []
        for task in tasks:
            events(task.key, "running", worker_name())
            value, seconds, worker = call(task.fn, unshared(task.args))
            events(task.key, "done", f"{seconds:.0f} s")
            runs.append(TaskRun(task.key, value, seconds, worker))
        return runs

    def close(self) -> None:
        pass


class ProcessPool:
    name = "local"
    same_machine = True

    def __init__(self, jobs: int):
        self.workers = jobs
        self._pool: ProcessPoolExecutor | None = None

    def _fresh_pool(self) -> ProcessPoolExecutor:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_quiet_worker)
        return self._pool

    def run(self, tasks: list[Task], events: Events | None = None) -> list[TaskRun]:
        events = events or quiet
        pool = self._pool or self._fresh_pool()
        attempts = {t.key: 1 for t in tasks}
        lost: dict[str, list[str]] = {t.key: [] for t in tasks}
        started: dict[str, float] = {}
        done: dict[str, TaskRun] = {}
        pending = {pool.submit(call, t.fn, unshared(t.args)): t for t in tasks}
        for t in tasks:
            events(t.key, "queued", "")
        try:
            while pending:
                finished, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                _report_running(pending, started, events)
                broken = [f for f in finished if isinstance(f.exception(), BrokenProcessPool)]
                for future in [f for f in finished if f not in broken]:
                    task = pending.pop(future)
                    value, seconds, worker = future.result()
                    done[task.key] = TaskRun(task.key, value, seconds, worker, attempts[task.key], lost[task.key])
                    events(task.key, "done", f"{seconds:.0f} s")
                if broken:
                    for task in pending.values():
                        started.pop(task.key, None)      # it will start again
                    pool, pending = self._retry(pending, attempts, lost, events)
        except BaseException:
            self._fresh_pool().shutdown(wait=False, cancel_futures=True)
            self._pool = None
            raise
        return [done[t.key] for t in tasks]

    def _retry(self, pending: dict[Future, Task], attempts: dict[str, int], lost: dict[str, list[str]],
               events: Events) -> tuple[ProcessPoolExecutor, dict[Future, Task]]:
        """A worker died: the pool is broken for every task it held. A fresh pool runs them all again."""
        pool = self._fresh_pool()
        again = {}
        for task in pending.values():
            attempts[task.key] += 1
            lost[task.key].append("a pool worker process died")
            if attempts[task.key] > MAX_ATTEMPTS:
                raise RuntimeError(f"task {task.key}: its worker died {MAX_ATTEMPTS} times")
            events(task.key, "retrying", "a worker died")
            again[pool.submit(call, task.fn, unshared(task.args))] = task
        return pool, again

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _report_running(pending: dict[Future, Task], started: dict[str, float], events: Events) -> None:
    for future, task in pending.items():
        if future.running() and task.key not in started:
            started[task.key] = time.monotonic()
            events(task.key, "running", "")


def _quiet_worker() -> None:
    """A pool worker's own progress bars would garble the host's task board."""
    os.environ["EDGEC_PROGRESS"] = "0"
