"""Bisection over a budget knob in k/32 steps: the smallest budget whose model keeps a fidelity floor."""

from __future__ import annotations

from typing import Callable

STEPS = 32


def smallest_budget(score_at: Callable[[float], float], floor: float) -> tuple[float, list[str]]:
    """`score_at(budget)` is the fidelity of the model compressed to `budget` (1.0 = uncompressed, which
    always meets the floor). Assumes fidelity grows with the budget; returns the budget and a trace."""
    lo, hi = 1, STEPS
    trace = []
    while lo < hi:
        mid = (lo + hi) // 2
        score = score_at(mid / STEPS)
        trace.append(f"{mid / STEPS:.3f}→{score:.4f}")
        if score >= floor:
            hi = mid
        else:
            lo = mid + 1
    return hi / STEPS, trace
