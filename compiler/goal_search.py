"""Sharing one training budget among a goal search's candidates: successive halving.

With --recover, `--train-minutes` is the budget of the whole search, not of each candidate. Every candidate
that compresses gets a short recovery first; then the half most worth training further (those that fail the
fidelity gate, closest to it first) get twice as long, and so on, until one is left, which gets what remains. Each round recompiles a candidate from the original with its longer
budget (each recovery has its own warm-up and schedule). Candidates that do not compress run once, untrained.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Protocol, Sequence

from edgec.compiler.attempts import COMPRESSING


class _Result(Protocol):
    point: dict
    report: Any


Candidate = tuple[str, list[str], dict]


def successive_halving(trial, candidates: Sequence[Candidate], total_minutes: float,
                       clock: Callable[[], float] = time.monotonic) -> tuple[list, list[str]]:
    """`trial.run(index, candidate, minutes)` compiles one candidate; returns the latest result of every
    candidate (in candidate order) and notes saying how the budget was spent. The budget is wall time: every
    compile's own work (calibration, searches, timing) is paid from it too, so the search ends near it."""
    start = clock()
    latest: dict[int, Any] = {}
    overheads: list[float] = []        # minutes each compile took beyond its training

    def timed(i: int, minutes: float) -> None:
        began = clock()
        latest[i] = trial.run(i, candidates[i], minutes)
        overheads.append(max(0.0, (clock() - began) / 60 - minutes))

    trained = [i for i, (_, passes, _) in enumerate(candidates) if COMPRESSING & set(passes)]
    for i in range(len(candidates)):
        if i not in trained:
            timed(i, 0.0)
    notes, alive, round_index = [], list(trained), 0
    while alive:
        compiles_left = sum(survivor_counts(len(alive)))
        overhead = sum(overheads) / len(overheads) if overheads else 0.0
        training = total_minutes - (clock() - start) / 60 - overhead * compiles_left
        minutes = training / len(survivor_counts(len(alive))) / len(alive)
        if minutes <= 0:
            notes.append(f"training budget spent before round {round_index + 1}")
            break
        for i in alive:
            timed(i, minutes)
        round_index += 1
        notes.append(f"training round {round_index}: {len(alive)} candidate(s) × {minutes:.2f} min")
        if len(alive) == 1:
            break
        alive = worth_training([latest[i] for i in alive], alive)
    return [latest[i] for i in sorted(latest)], notes


def survivor_counts(survivors: int) -> list[int]:
    """Candidates in each remaining round, halving until one is left (each round costs about the same:
    survivors halve, minutes per candidate double)."""
    counts = [survivors]
    while counts[-1] > 1:
        counts.append((counts[-1] + 1) // 2)
    return counts


def worth_training(results: Sequence[_Result], indices: list[int]) -> list[int]:
    """The better half of the candidates that fail the gate now, closest to the gate first. Their latency
    says little yet: a quantize floor keeps such a model float until training lifts its fidelity, and then
    it turns int8 (on MiniLM, prune keep 0.5 + int8 timed 1.33× faster than the original while float)."""
    hopeful = [(r.point["cosine"], i) for r, i in zip(results, indices, strict=True)
               if r.report is not None and not r.report.ok]
    hopeful.sort(key=lambda t: -t[0])
    return [i for _, i in hopeful[:max(1, (len(results) + 1) // 2)]] if hopeful else []
