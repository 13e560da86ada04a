"""Progress on stderr for anything longer than a second (silent when stderr is not a terminal, or in a worker
process of an executor, whose tasks show on the host's task board instead)."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


@contextmanager
def progress_bar(description: str, total: int):
    """Yields advance(done, info=None): `info` (e.g. the current held-out fidelity) follows the description."""
    if not shows_progress():
        yield lambda done, info=None: None
        return
    from rich.console import Console

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda done, info=None: bar.update(
            task, completed=done, description=description if info is None else f"{description} ({info})")


def shows_progress() -> bool:
    return sys.stderr.isatty() and os.environ.get("EDGEC_PROGRESS", "1") != "0"


@contextmanager
def task_board(description: str):
    """Yields events(key, state, detail) for an executor: the overall count of finished tasks, and one line per
    running task with its worker and time (a retried task says so)."""
    if not shows_progress():
        yield lambda key, state, detail="": None
        return
    from rich.console import Console
    from rich.progress import SpinnerColumn, TaskID

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=Console(stderr=True), transient=True) as bar:
        overall = bar.add_task(description, total=0)
        rows: dict[str, TaskID] = {}

        def events(key: str, state: str, detail: str = "") -> None:
            if state == "queued":
                bar.update(overall, total=(bar.tasks[0].total or 0) + 1)
            elif state in ("running", "retrying"):
                where = f" on {detail}" if detail else ""
                label = f"  {key}" + (where if state == "running" else f" (retrying: {detail or 'its worker died'})")
                if key in rows:
                    bar.update(rows[key], description=label)
                else:
                    rows[key] = bar.add_task(label, total=None)
            elif state == "done":
                if key in rows:
                    bar.remove_task(rows.pop(key))
                bar.advance(overall)
        yield events
