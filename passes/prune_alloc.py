"""Units per MLP block chosen end to end (prune scope=model).

A layer-local error says little about what a block's units are worth to the model's outputs: on
all-MiniLM-L6-v2, pruning one block alone to 25 % costs the sentence embedding 0.009–0.010 of cosine in
blocks 1–3 but 0.017, 0.026 and 0.038 in blocks 0, 4 and 5. So every block is pruned alone at a few
fractions and the driver's fidelity probe scores the whole model each time; assuming the blocks' losses add
up, units then go greedily where they buy the most fidelity per unit, within the uniform keep's total.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

LEVELS = (0.125, 0.25, 0.5, 0.75)   # fractions each block is probed at alone (1.0 costs nothing)
STEP = 1 / 32                       # allocation granularity, a fraction of a block's units


@dataclass(frozen=True)
class LossCurve:
    """A block's measured loss of probe fidelity (1 − cosine) against the fraction of its units kept."""

    fractions: tuple[float, ...]     # ascending, ending at 1.0
    losses: tuple[float, ...]        # the loss at each fraction (0 at 1.0)

    def loss(self, fraction: float) -> float:
        return float(np.interp(fraction, self.fractions, self.losses))


def measure_curves(score_alone: Callable[[int, float], float], blocks: int, lowest: float) -> list[LossCurve]:
    """`score_alone(block, fraction)`: the probe's fidelity with only that block pruned to that fraction."""
    levels = sorted({max(lowest, f) for f in LEVELS if f < 1.0})
    curves = []
    for index in range(blocks):
        losses = [max(0.0, 1.0 - score_alone(index, f)) for f in levels]
        # more units never cost fidelity in this model of the loss: measurement noise must not say otherwise
        monotone = np.maximum.accumulate(np.array(losses + [0.0])[::-1])[::-1]
        curves.append(LossCurve(tuple(levels) + (1.0,), tuple(float(x) for x in monotone)))
    return curves


def allocate(curves: list[LossCurve], hidden: list[int], keep: float, lowest: float) -> list[float]:
    """Fractions per block, each in [lowest, 1], whose units add up to about keep × all units (the total the
    uniform keep would spend), chosen greedily by the loss each STEP of units saves per unit."""
    fractions = [min(1.0, max(lowest, 0.0)) for _ in hidden]
    budget = keep * sum(hidden) - sum(f * h for f, h in zip(fractions, hidden, strict=True))
    while True:
        best, best_gain = None, -1.0
        for i, (curve, h) in enumerate(zip(curves, hidden, strict=True)):
            step = min(STEP, 1.0 - fractions[i])
            if step <= 1e-9 or step * h > budget + 1e-9:
                continue
            gain = (curve.loss(fractions[i]) - curve.loss(fractions[i] + step)) / (step * h)
            # equal gains (the curves are piecewise linear) go to the block that has fewer units so far
            if gain > best_gain + 1e-15 or (abs(gain - best_gain) <= 1e-15 and fractions[i] < fractions[best]):
                best, best_gain = i, gain
        if best is None:
            return fractions
        step = min(STEP, 1.0 - fractions[best])
        fractions[best] += step
        budget -= step * hidden[best]
