"""Latency measurement: warm-up, interleaved runs, percentiles."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

PERCENTILES = (50, 90, 95, 99)


@dataclass(frozen=True)
class LatencyStats:
    runs: int
    mean_ms: float
    min_ms: float
    max_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float

    @classmethod
    def from_samples(cls, seconds: list[float]) -> LatencyStats:
        ms = np.asarray(seconds, np.float64) * 1e3
        p = np.percentile(ms, PERCENTILES)
        return cls(len(ms), float(ms.mean()), float(ms.min()), float(ms.max()), *map(float, p))


MAX_RUN_FACTOR = 100


def measure_interleaved(runners: list[Callable[[], object]], warmup: int, runs: int,
                        max_seconds: float = float("inf"),
                        progress: Callable[[int], None] | None = None,
                        min_seconds: float = 0.0) -> list[list[float]]:
    """Time several callables side by side (A B A B …) so machine noise hits them alike.

    Returns one list of per-run seconds per runner. Stops early once `max_seconds` have passed
    (but always keeps at least 3 runs of each); runs on past `runs` (up to MAX_RUN_FACTOR times as many) until
    `min_seconds` have passed, so that a model of a few microseconds is not judged on a millisecond of samples.
    """
    for _ in range(warmup):
        for run in runners:
            run()
    samples: list[list[float]] = [[] for _ in runners]
    start = time.perf_counter()
    for i in range(runs * MAX_RUN_FACTOR):
        if i >= runs and time.perf_counter() - start >= min_seconds:
            break
        order = range(len(runners)) if i % 2 == 0 else reversed(range(len(runners)))
        for k in order:
            t0 = time.perf_counter()
            runners[k]()
            samples[k].append(time.perf_counter() - t0)
        if progress:
            progress(i + 1)
        if i >= 2 and time.perf_counter() - start > max_seconds:
            break
    return samples
