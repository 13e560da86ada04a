"""Structured pruning of MLP hidden units, the pure half: scores, keep sets and least-squares compensation.

Everything here works on the Gram matrix of fc2's input augmented with a ones column,
G = Σ [a, 1]ᵀ[a, 1], and on W̃ = [W2; b2] (fc2's weight in [hidden, out] orientation over its bias).
Removing units K̄ and re-solving fc2 on the kept units K minimizes ‖[a,1]_K W' − [a,1] W̃‖² over the
calibration rows:  G[K,K] W' = G[K,:] W̃   (the bias row is always kept).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import scipy.linalg

from edgec.passes.plans.frank_wolfe import frank_wolfe_order

Score = Literal["obs", "energy", "frank-wolfe"]
SCORES = get_args(Score)
RIDGES = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)   # candidate dampings for validation


@dataclass
class BlockPlan:
    keep: np.ndarray          # sorted indices of the kept hidden units
    weight: np.ndarray        # new fc2 weight [len(keep), out]
    bias: np.ndarray | None   # new fc2 bias [out] (None if fc2 had none and no compensation)
    rel_error: float          # ‖output change‖ / ‖output‖ on the calibration rows
    damping: float | None = None   # ridge of the re-solve (None: fc2 kept as it was on the kept units)


def augmented_weight(w2: np.ndarray, b2: np.ndarray | None) -> np.ndarray:
    bias = np.zeros(w2.shape[1]) if b2 is None else b2
    return np.vstack([w2.astype(np.float64), bias[None, :].astype(np.float64)])


def unit_scores(gram: np.ndarray, rows: int, w_aug: np.ndarray, score: str, damping: float) -> np.ndarray:
    """Importance of every hidden unit (higher = keep). The bias row is not scored.

    energy: sqrt(E[a_j²]) · ‖W2[j, :]‖, the unit's output energy without compensation.
    obs:    ‖W̃_j‖² / [G⁻¹]_jj, the output error that removing unit j alone costs *after* the
            least-squares re-solve of the others (Optimal Brain Surgeon for a linear layer).
    """
    hidden = gram.shape[0] - 1
    if score == "frank-wolfe":   # an order, not per-unit scores: splits across blocks (scope=global) use OBS's
        score = "obs"
    if score == "energy":
        mean_sq = np.diag(gram)[:hidden] / max(rows, 1)
        return np.sqrt(np.maximum(mean_sq, 0)) * np.linalg.norm(w_aug[:hidden], axis=1)
    if score == "obs":
        inv_diag = np.diag(_inverse(gram, damping))[:hidden]
        return np.sum(w_aug[:hidden] ** 2, axis=1) / np.maximum(inv_diag, 1e-30)
    raise ValueError(f"unknown score '{score}' (known: {', '.join(SCORES)})")


def importance_order(gram: np.ndarray, rows: int, w_aug: np.ndarray, score: str, damping: float,
                     rounds: int = 12) -> np.ndarray:
    """Hidden units from most to least important; keeping `c` units keeps the first `c`.

    OBS scores are refreshed as units go (units are removed in `rounds` geometric chunks), since
    removing one unit changes how much the others can compensate for. One order serves every budget.
    """
    hidden = gram.shape[0] - 1
    if score == "frank-wolfe":
        return frank_wolfe_order(gram, w_aug)
    if score == "energy":
        return np.argsort(-unit_scores(gram, rows, w_aug, score, damping), kind="stable")
    alive = np.arange(hidden)
    removed: list[np.ndarray] = []
    targets = np.unique(np.geomspace(hidden, 1, rounds + 1).round().astype(int))[::-1][1:]
    for target in [*targets, 0]:
        idx = np.append(alive, hidden)  # + the bias row
        sub = unit_scores(gram[np.ix_(idx, idx)], rows, w_aug[idx], "obs", damping)
        order = np.argsort(-sub, kind="stable")
        removed.append(alive[order[target:]])   # the weakest go now, weakest last
        alive = alive[order[:target]]
    return np.concatenate(removed[::-1])


def compensate(gram: np.ndarray, w_aug: np.ndarray, keep: np.ndarray, damping: float) -> np.ndarray:
    """Least-squares fc2 on the kept units (+ bias): solve G[K,K] W' = G[K,:] W̃."""
    hidden = gram.shape[0] - 1
    idx = np.append(keep, hidden)
    lhs = gram[np.ix_(idx, idx)] + ridge(gram[np.ix_(idx, idx)], damping)
    rhs = gram[idx] @ w_aug
    return scipy.linalg.solve(lhs, rhs, assume_a="pos")


def validated_damping(gram: np.ndarray, half: np.ndarray, w_aug: np.ndarray, keep: np.ndarray,
                      candidates: tuple[float, ...] = RIDGES) -> float | None:
    """The candidate ridge (relative to the mean diagonal) whose re-solve generalizes best between two halves
    of the calibration feeds (fit on one, error on the other, both ways), or None when the kept units'
    original fc2 rows do better than every re-solve. With few rows per hidden unit a light ridge memorizes
    them, and the unsolved rows generalize better (samples/RESULTS.md#pruning)."""
    idx = np.append(keep, gram.shape[0] - 1)
    kept_rows = w_aug[idx]

    def fold(fit: np.ndarray, check: np.ndarray) -> dict:
        return {"lhs": fit[np.ix_(idx, idx)], "rhs": fit[idx] @ w_aug, "scale": float(np.mean(np.diag(fit))) or 1.0,
                "full": float(np.trace(w_aug.T @ check @ w_aug)), "cross": check[idx] @ w_aug,
                "kk": check[np.ix_(idx, idx)]}

    folds = [fold(half, gram - half), fold(gram - half, half)]

    def held_out_error(damping: float | None) -> float:
        total = 0.0
        for f in folds:
            w = kept_rows if damping is None else scipy.linalg.solve(
                f["lhs"] + np.eye(len(idx)) * damping * f["scale"], f["rhs"], assume_a="pos")
            total += (f["full"] - 2 * np.sum(w * f["cross"]) + np.sum(w * (f["kk"] @ w))) / max(f["full"], 1e-300)
        return total

    return min([None, *candidates], key=held_out_error)


def relative_error(gram: np.ndarray, w_aug: np.ndarray, keep: np.ndarray, w_new: np.ndarray) -> float:
    """‖[a,1]_K W' − [a,1] W̃‖ / ‖[a,1] W̃‖ from the Gram alone (no activations needed)."""
    hidden = gram.shape[0] - 1
    idx = np.append(keep, hidden)
    full = np.trace(w_aug.T @ gram @ w_aug)
    cross = np.trace(w_new.T @ gram[idx] @ w_aug)
    kept = np.trace(w_new.T @ gram[np.ix_(idx, idx)] @ w_new)
    return float(np.sqrt(max(full - 2 * cross + kept, 0.0) / full)) if full > 0 else 0.0


def plan_block(gram: np.ndarray, rows: int, w2: np.ndarray, b2: np.ndarray | None, count: int, score: str,
               compensated: bool, damping: float, order: np.ndarray | None = None,
               half: np.ndarray | None = None, ridge_grid: bool = False) -> BlockPlan:
    """Keep the `count` most important units; re-solve fc2 on them when `compensated`. Given the even feeds'
    Gram `half`, validation decides whether the re-solve (with `damping`) generalizes better than none, or with
    `ridge_grid` also picks the ridge from RIDGES — halved for the fit on all rows, since the best relative ridge
    shrinks about as 1/rows (on MiniLM the grid helped a little at a low keep, lost at a high one and made the
    search several times slower: samples/RESULTS.md#pruning)."""
    w_aug = augmented_weight(w2, b2)
    if order is None:
        order = importance_order(gram, rows, w_aug, score, damping)
    keep = np.sort(order[:count])
    if compensated and half is not None:
        best = validated_damping(gram, half, w_aug, keep, tuple(sorted({*RIDGES, damping})) if ridge_grid
                                 else (damping,))
        damping = best / 2 if ridge_grid and best is not None else best   # type: ignore[assignment]
    if compensated and damping is not None:
        w_new = compensate(gram, w_aug, keep, damping)
    else:
        w_new = np.vstack([w_aug[keep], w_aug[-1:]])
    err = relative_error(gram, w_aug, keep, w_new)
    bias = w_new[-1] if (b2 is not None or compensated) else None
    return BlockPlan(keep, w_new[:-1], bias, err, damping if compensated else None)


def keep_count(hidden: int, keep: float, multiple: int, minimum: int) -> int:
    """Units to keep: the fraction, rounded up to the target's tile multiple, never below `minimum`."""
    count = max(int(np.ceil(hidden * keep)), min(minimum, hidden), 1)
    if multiple > 1:
        count = int(np.ceil(count / multiple) * multiple)
    return min(count, hidden)


def _inverse(gram: np.ndarray, damping: float) -> np.ndarray:
    return scipy.linalg.inv(gram + ridge(gram, damping))


def ridge(gram: np.ndarray, damping: float) -> np.ndarray:
    """Damping relative to the mean diagonal, so dead or collinear units cannot make G singular."""
    scale = float(np.mean(np.diag(gram))) or 1.0
    return np.eye(gram.shape[0]) * damping * scale
