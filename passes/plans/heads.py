"""Which attention heads to remove, the pure half: group Optimal Brain Surgeon on the output projection.

The output projection sees the concatenated per-head contexts c = [c_1 … c_H] (head_dim features each), so a
head is a group of its input features. With G the Gram matrix of [c, 1] and W̃ = [Wo; bo], removing the
group g and re-solving Wo on the rest by least squares costs  tr(W̃_gᵀ ([G⁻¹]_gg)⁻¹ W̃_g)  (the group form of
OBS). Heads go one at a time, weakest first, the scores refreshed after each: one order serves every count.
The Q/K/V columns of the kept heads are untouched, so their scores and contexts stay exact; the only change
to the block's output is the least-squares error computed here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from edgec.passes.plans import prune as prune_plan


@dataclass
class HeadPlan:
    keep: np.ndarray          # sorted indices of the kept heads
    weight: np.ndarray        # new output-projection weight [kept · head_dim, out]
    bias: np.ndarray | None
    rel_error: float          # ‖block output change‖ / ‖block output‖ on the calibration rows


def columns(heads: np.ndarray, head_dim: int) -> np.ndarray:
    return (np.asarray(heads)[:, None] * head_dim + np.arange(head_dim)[None, :]).reshape(-1)


def removal_order(gram: np.ndarray, w_aug: np.ndarray, heads: int, head_dim: int, damping: float) -> np.ndarray:
    """Heads from most to least important (keeping `c` heads keeps the first `c`)."""
    alive = list(range(heads))
    removed: list[int] = []
    while len(alive) > 1:
        idx = np.append(columns(np.array(alive), head_dim), gram.shape[0] - 1)
        sub = gram[np.ix_(idx, idx)]
        inverse = scipy.linalg.inv(sub + prune_plan.ridge(sub, damping))
        costs = []
        for j in range(len(alive)):
            g = slice(j * head_dim, (j + 1) * head_dim)
            w_g = w_aug[idx[g]]
            costs.append(float(np.trace(w_g.T @ np.linalg.solve(inverse[g, g], w_g))))
        weakest = int(np.argmin(costs))
        removed.append(alive.pop(weakest))
    return np.array(alive + removed[::-1])


def error_curve(gram: np.ndarray, w_aug: np.ndarray, order: np.ndarray, head_dim: int, damping: float) -> np.ndarray:
    """Relative error of the block output when keeping the first c heads of `order`, for c = 0 … heads."""
    out = []
    for count in range(len(order) + 1):
        keep = np.sort(columns(order[:count], head_dim))
        w_new = prune_plan.compensate(gram, w_aug, keep, damping)
        out.append(prune_plan.relative_error(gram, w_aug, keep, w_new))
    return np.array(out)


def allocate(curves: list[np.ndarray], keep: float, minimum: int = 1) -> list[int]:
    """Heads to keep per block so that `keep` of all heads stay, removing next wherever the squared relative
    error grows least (each block removes along its own order)."""
    counts = [len(c) - 1 for c in curves]
    to_remove = int(round((1 - keep) * sum(counts)))
    for _ in range(to_remove):
        costs = [c[n - 1] ** 2 - c[n] ** 2 if n > minimum else np.inf for c, n in zip(curves, counts, strict=True)]
        best = int(np.argmin(costs))
        if not np.isfinite(costs[best]):
            break
        counts[best] -= 1
    return counts


def plan(gram: np.ndarray, wo: np.ndarray, bo: np.ndarray | None, order: np.ndarray, count: int, head_dim: int,
         damping: float, compensated: bool = True) -> HeadPlan:
    """Keep the first `count` heads of `order`: prune's unit plan over their columns (a head is head_dim units)."""
    units = prune_plan.plan_block(gram, 0, wo, bo, count * head_dim, "obs", compensated, damping,
                                  columns(order, head_dim))
    return HeadPlan(np.sort(order[:count]), units.weight, units.bias, units.rel_error)
