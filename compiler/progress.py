"""A progress bar on stderr for anything longer than a second (silent when stderr is not a terminal)."""

from __future__ import annotations

import sys
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


@contextmanager
def progress_bar(description: str, total: int):
    """Yields advance(done, info=None): `info` (e.g. the current held-out fidelity) follows the description."""
    if not sys.stderr.isatty():
        yield lambda done, info=None: None
        return
    from rich.console import Console

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda done, info=None: bar.update(
            task, completed=done, description=description if info is None else f"{description} ({info})")
