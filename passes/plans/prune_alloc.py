"""Units per MLP block chosen end to end (prune scope=model).

A layer-local error says little about what a block's units are worth to the model's outputs: on
all-MiniLM-L6-v2, pruning one block alone costs the sentence embedding several times more cosine in some
blocks than in others (samples/RESULTS.md#pruning). So every block is pruned alone to the keep and the
driver's fidelity probe scores the whole model: that block's loss s (1 − cosine).

The split: if a block's loss grows like s · keep / f as its kept fraction f shrinks, the fractions that
minimize the summed loss for the uniform keep's total number of units are f ∝ √(s / h) (h: the block's
width; Lagrange). A greedy split on measured loss curves was tried first: assuming losses add up, it
gave MiniLM's last two blocks every unit and the others far fewer — best before training but worse after
recovery than a milder split close to the square-root rule. This rule beats the uniform split on MiniLM
both before and after recovery (samples/RESULTS.md#pruning, `make bench-recover`).
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def measure_losses(score_alone: Callable[[int], float], blocks: int) -> list[float]:
    """`score_alone(block)`: the probe's fidelity with only that block pruned to the keep."""
    return [max(0.0, 1.0 - score_alone(index)) for index in range(blocks)]


def allocate(losses: list[float], hidden: list[int], keep: float, lowest: float) -> list[float]:
    """Fractions per block, each in [lowest, 1], f ∝ √(loss / width), spending keep × all units in total;
    a block clipped at a bound keeps it and the others share what is left (water-filling)."""
    hidden_arr = np.asarray(hidden, float)
    weight = np.sqrt(np.maximum(np.asarray(losses, float), 1e-12) / hidden_arr)
    budget = keep * hidden_arr.sum()
    fixed = np.full(len(hidden), np.nan)
    for _ in range(len(hidden) + 1):
        free = np.isnan(fixed)
        left = budget - np.nansum(fixed * hidden_arr)
        fractions = np.where(free, weight * left / max((weight * hidden_arr)[free].sum(), 1e-30), fixed)
        over, under = free & (fractions > 1.0), free & (fractions < lowest)
        if over.any():                  # clip the full blocks first: what they leave may lift others over too
            fixed[over] = 1.0
        elif under.any():
            fixed[under] = lowest
        else:
            break
    return [float(f) for f in np.clip(fractions, lowest, 1.0)]
