"""Module-level task functions for the executor tests (a worker imports them by name)."""

from __future__ import annotations

import os
import time
from pathlib import Path


def square(x: int) -> int:
    return x * x


def total(values: list[int], offset: int) -> int:
    return sum(values) + offset


def die_once(marker: str, value: int) -> int:
    """The first attempt kills its own worker process (as an OOM killer or a lost node would)."""
    path = Path(marker)
    if not path.exists():
        path.write_text(str(os.getpid()))
        os._exit(1)
    return value


def slow(seconds: float, value: int) -> int:
    time.sleep(seconds)
    return value
