"""What every executor shares: a task, the record of its run, and the events a progress display follows.

A task is a module-level function and its arguments; an argument wrapped in `Shared` is sent once per run and
shared by every task that names it (Ray's object store, a process pool's one pickle per task, nothing in
process). A task's result comes back with the time it took where it ran, the worker that ran it and the
attempts it needed: a worker that dies is replaced and its task run again, and the record says why.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

Events = Callable[[str, str, str], None]      # (task key, state: queued|running|done|retrying, detail)


@dataclass(frozen=True)
class Shared:
    """An argument many tasks read (a model and its calibration data): shipped once, not once per task."""
    value: Any


@dataclass(frozen=True)
class Task:
    key: str                       # unique within a run: what progress and reports call it
    fn: Callable[..., Any]         # module-level, so that a worker can import it
    args: tuple = ()


@dataclass
class TaskRun:
    key: str
    value: Any
    seconds: float                 # the successful attempt's time where it ran
    worker: str                    # host:pid that ran it
    attempts: int = 1
    lost: list[str] = field(default_factory=list)   # why each earlier attempt was lost

    def record(self) -> dict:
        return {"task": self.key, "seconds": round(self.seconds, 2), "worker": self.worker,
                "attempts": self.attempts, **({"retried": self.lost} if self.lost else {})}


class Executor(Protocol):
    name: str
    workers: int                   # tasks that can run at once
    same_machine: bool             # its workers read this machine's files (else inputs travel with the tasks)

    def run(self, tasks: list[Task], events: Events | None = None) -> list[TaskRun]:
        """Every task's run, in the order given; KeyboardInterrupt cancels what has not finished."""

    def close(self) -> None: ...


def call(fn: Callable[..., Any], args: tuple) -> tuple[Any, float, str]:
    """Runs on the worker: the value, the seconds it took there, and who ran it."""
    start = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - start, worker_name()


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def quiet(key: str, state: str, detail: str = "") -> None:
    """The events sink when nobody watches."""


def unshared(args: tuple) -> tuple:
    return tuple(a.value if isinstance(a, Shared) else a for a in args)
