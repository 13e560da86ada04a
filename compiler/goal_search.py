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
    """`trial.run(index, candidate, minutes)` compiles one candidate; returns the best result of every
    candidate (in candidate order) and notes saying how the budget was spent.

    Round 1 always runs: every compressing candidate trains `total / rounds / count` minutes. Later rounds
    are paid from what is left of the budget as wall time, less the compile overheads the compressing
    candidates showed in round 1, so the search ends near the budget. Survivors never train less than
    they did the round before: when the budget cannot double them all, the best one alone gets the rest."""
    start = clock()
    best: dict[int, Any] = {}
    overheads: list[float] = []        # minutes each compressing compile took beyond its training

    def timed(i: int, minutes: float) -> None:
        began = clock()
        result = trial.run(i, candidates[i], minutes)
        if minutes > 0:
            overheads.append(max(0.0, (clock() - began) / 60 - minutes))
        if i not in best or _rank(result) >= _rank(best[i]):
            best[i] = result

    trained = [i for i, (_, passes, _) in enumerate(candidates) if COMPRESSING & set(passes)]
    for i in range(len(candidates)):
        if i not in trained:
            timed(i, 0.0)
    if not trained:
        return [best[i] for i in sorted(best)], []
    minutes = total_minutes / len(survivor_counts(len(trained))) / len(trained)
    alive, notes = list(trained), list[str]()
    while True:
        for i in alive:
            timed(i, minutes)
        notes.append(f"training round {len(notes) + 1}: {len(alive)} candidate(s) × {minutes:.2f} min")
        alive = worth_training([best[i] for i in alive], alive) if len(alive) > 1 else []
        if not alive:
            break
        overhead = sum(overheads) / len(overheads)
        left = total_minutes - (clock() - start) / 60
        nxt = (left - overhead * sum(survivor_counts(len(alive)))) / len(survivor_counts(len(alive))) / len(alive)
        if nxt < minutes:               # not enough to double them all: the closest one alone, if it can grow
            alive, nxt = alive[:1], left - overhead
        if nxt <= minutes:
            notes.append("no budget left to train any candidate longer")
            break
        minutes = nxt
    return [best[i] for i in sorted(best)], notes


def _rank(result) -> tuple[bool, float]:
    """A candidate's results compare by passing the gate, then by fidelity (a longer run may do worse)."""
    if result.report is None:
        return (False, -1.0)
    return (bool(result.report.ok), float(result.point["cosine"]))


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
