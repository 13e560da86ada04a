"""What a goal search would take on N workers, from the times its tasks recorded on this run.

Rounds of successive halving are barriers (a round's survivors are chosen from its results), so each round
takes the makespan of its tasks on N workers — longest task first onto the least loaded worker (LPT), within
4/3 of the optimum — and the host's own work (timing the candidates) is added as it was.
"""

from __future__ import annotations

import heapq
from itertools import groupby


def makespan(seconds: list[float], workers: int) -> float:
    loads = [0.0] * max(1, workers)
    for s in sorted(seconds, reverse=True):
        heapq.heapreplace(loads, loads[0] + s)
    return max(loads)


def projected_wall(tasks: list[dict], host_seconds: float, workers: int) -> float:
    """`tasks`: the executor's records ({"round", "seconds"}), in round order."""
    rounds = [[t["seconds"] for t in group] for _, group in groupby(tasks, key=lambda t: t["round"])]
    return sum(makespan(r, workers) for r in rounds) + host_seconds


def projections(tasks: list[dict], host_seconds: float, workers=(1, 2, 4, 8)) -> dict[str, float]:
    return {str(n): round(projected_wall(tasks, host_seconds, n), 1) for n in workers}
