"""What a compile cost the machine it ran on: wall time and peak resident memory (the issue's budget for a
compile is minutes on 2 cores and memory under 2 GB plus 4× the model's file)."""

from __future__ import annotations

import time


def peak_memory_mb() -> float | None:
    """The largest resident set of this process or of any child it waited for, in MiB (None where the
    platform has no getrusage)."""
    try:
        from edgec.runtime.bench import peak_rss_mb
    except ImportError:         # Windows: no `resource` module
        return None
    return round(peak_rss_mb(children=True), 1)


def usage_since(start: float) -> dict[str, float | None]:
    """The report's `resources`: seconds since `start` (a time.perf_counter() reading) and peak memory."""
    return {"seconds": round(time.perf_counter() - start, 2), "peak_memory_mb": peak_memory_mb()}
