"""Sharing one training budget among a goal search's candidates: successive halving.

With --recover, the training budget is the whole search's, not each candidate's. Every candidate that
compresses gets a short recovery first; then the half most worth training further (those that fail the
fidelity gate, closest to it first) get twice as long, and so on, until one is left, which gets what remains.
Each round recompiles a candidate from the original with its longer budget (each recovery has its own
warm-up and schedule). Candidates that do not compress run once, untrained.

A round's compiles are independent: the executor runs them side by side where it has the workers. The
budget is counted in work, not in wall time, so the same search makes the same choices on one machine or
on many: a budget of minutes is the sum of the tasks' times (on one worker, the wall time), a budget of
steps (--train-steps) the sum of the steps given, which needs no clock and gives the same bytes anywhere.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence

from edgec.compiler.attempts import COMPRESSING


class _Result(Protocol):
    point: dict
    report: Any
    seconds: float          # the task's own time (compile, training, verification)


Candidate = tuple[str, list[str], dict]
Round = Callable[[list[tuple[int, float]]], list]      # [(candidate index, budget)] → results, in order


def successive_halving(run_round: Round, candidates: Sequence[Candidate], total: float,
                       steps: bool = False) -> tuple[list, list[str]]:
    """Returns the best result of every candidate (in candidate order) and notes saying how the budget was
    spent. `total` is minutes of training, or optimizer steps with `steps`.

    Round 1 always runs: every compressing candidate trains `total / rounds / count`. Later rounds are paid
    from what is left (minutes: less the compile overheads round 1 showed beyond training), so the search
    ends near the budget. Survivors never train less than they did the round before: when the budget cannot
    double them all, the best one alone gets the rest."""
    best: dict[int, Any] = {}
    spent, overheads = 0.0, list[float]()       # minutes (or steps) used; minutes each compile took beyond training

    def run(jobs: list[tuple[int, float]]) -> None:
        nonlocal spent
        for (i, amount), result in zip(jobs, run_round(jobs), strict=True):
            spent += amount if steps else result.seconds / 60
            if amount > 0 and not steps:
                overheads.append(max(0.0, result.seconds / 60 - amount))
            if i not in best or _rank(result) >= _rank(best[i]):
                best[i] = result

    trained = [i for i, (_, passes, _) in enumerate(candidates) if COMPRESSING & set(passes)]
    untrained = [(i, 0.0) for i in range(len(candidates)) if i not in trained]
    if not trained:
        run(untrained)
        return [best[i] for i in sorted(best)], []
    amount = _whole(total / len(survivor_counts(len(trained))) / len(trained), steps)
    run(untrained + [(i, amount) for i in trained])      # round 1, with the untrained ones alongside
    alive, notes = list(trained), [_note(1, len(trained), amount, steps)]
    while True:
        alive = worth_training([best[i] for i in alive], alive) if len(alive) > 1 else []
        if not alive:
            break
        overhead = sum(overheads) / len(overheads) if overheads else 0.0
        left = total - spent
        rounds = survivor_counts(len(alive))
        nxt = _whole((left - overhead * sum(rounds)) / len(rounds) / len(alive), steps)
        if nxt < amount:                # not enough to double them all: the closest one alone, if it can grow
            alive, nxt = alive[:1], _whole(left - overhead, steps)
        if nxt <= amount:
            notes.append("no budget left to train any candidate longer")
            break
        amount = nxt
        run([(i, amount) for i in alive])
        notes.append(_note(len(notes) + 1, len(alive), amount, steps))
    return [best[i] for i in sorted(best)], notes


def _whole(amount: float, steps: bool) -> float:
    return float(int(amount)) if steps else amount


def _note(number: int, count: int, amount: float, steps: bool) -> str:
    return f"training round {number}: {count} candidate(s) × " + (f"{amount:.0f} steps" if steps else f"{amount:.2f} min")


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
