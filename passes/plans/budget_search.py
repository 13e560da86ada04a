"""Bisection over a budget knob in k/32 steps: the smallest budget whose model keeps a fidelity floor."""

from __future__ import annotations

from typing import Callable

STEPS = 32


def smallest_budget(score_at: Callable[[float], float], floor: float) -> tuple[float, list[tuple[float, float]]]:
    """`score_at(budget)` is the fidelity of the model compressed to `budget` (1.0 = uncompressed, which
    always meets the floor). Assumes fidelity grows with the budget; returns the budget and the
    (budget, fidelity) points it evaluated."""
    lo, hi = 1, STEPS
    trace = []
    while lo < hi:
        mid = (lo + hi) // 2
        score = score_at(mid / STEPS)
        trace.append((mid / STEPS, round(float(score), 6)))
        if score >= floor:
            hi = mid
        else:
            lo = mid + 1
    return hi / STEPS, trace


def describe(knob: str, floor: float, trace: list[tuple[float, float]], chosen: float) -> str:
    points = ", ".join(f"{b:.3f}→{s:.4f}" for b, s in trace)
    return f"{knob} searched for calibration score ≥ {floor}: {points}; chose {chosen:.3f}"
