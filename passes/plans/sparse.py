"""Unstructured and N:M sparsity masks (magnitude or Wanda) with a least-squares re-solve, the pure half.

Weights are [in, out] (y = x W + b). Wanda scores |W_ij|·‖x_i‖: a weight matters in proportion to the
input it multiplies. Masks are chosen per output column (the Wanda comparison group), then each
column's surviving weights and its bias are re-solved on the augmented calibration Gram G = Σ[x,1]ᵀ[x,1]
so that the column's output is preserved: G[S,S] w_S = G[S,:] w̃  (S = survivors + the bias row).
"""

from __future__ import annotations

import re
from typing import Literal, get_args

import numpy as np
import scipy.linalg

from edgec.passes.plans.prune import augmented_weight

Score = Literal["wanda", "magnitude"]
SCORES = get_args(Score)


def parse_pattern(pattern: str) -> tuple[str, float, int, int]:
    """'0.5' → unstructured 50 % zeros; '2:4' → keep 2 of every 4 inputs per output."""
    if m := re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", pattern):
        n, group = int(m.group(1)), int(m.group(2))
        if not 0 < n < group:
            raise ValueError(f"N:M pattern needs 0 < N < M, not {pattern}")
        return "nm", 1 - n / group, n, group
    try:
        sparsity = float(pattern)
    except ValueError:
        raise ValueError(f"sparsity pattern '{pattern}': expected a fraction like 0.5 or N:M like 2:4") from None
    if not 0 < sparsity < 1:
        raise ValueError(f"sparsity must lie in (0, 1), not {sparsity}")
    return "unstructured", sparsity, 0, 0


def scores(weight: np.ndarray, gram: np.ndarray | None, rows: int, score: str) -> np.ndarray:
    magnitude = np.abs(weight.astype(np.float64))
    if score == "magnitude" or gram is None:
        return magnitude
    norms = np.sqrt(np.maximum(np.diag(gram)[:-1], 0) / max(rows, 1))
    return magnitude * norms[:, None]


def mask(score: np.ndarray, pattern: str) -> np.ndarray:
    """Boolean keep-mask of the weight's shape."""
    kind, sparsity, n, group = parse_pattern(pattern)
    n_in, n_out = score.shape
    if kind == "unstructured":
        keep = max(1, int(round(n_in * (1 - sparsity))))
        order = np.argsort(-score, axis=0, kind="stable")[:keep]
        out = np.zeros_like(score, dtype=bool)
        np.put_along_axis(out, order, True, axis=0)
        return out
    if n_in % group:
        raise ValueError(f"{n}:{group} sparsity needs the input size ({n_in}) to be a multiple of {group}")
    grouped = score.reshape(n_in // group, group, n_out)
    order = np.argsort(-grouped, axis=1, kind="stable")[:, :n]
    out = np.zeros_like(grouped, dtype=bool)
    np.put_along_axis(out, order, True, axis=1)
    return out.reshape(n_in, n_out)


RIDGES = (1e-6, 1e-5, 1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)   # candidate dampings for validation


def resolve(weight: np.ndarray, bias: np.ndarray | None, gram: np.ndarray, keep: np.ndarray,
            damping: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares re-fit of every column's surviving weights and bias; pruned entries stay zero."""
    new_w = _solved(augmented_weight(weight, bias), gram, keep, damping, range(weight.shape[1]))
    return new_w[:-1], new_w[-1]


def validated_damping(weight: np.ndarray, bias: np.ndarray | None, gram: np.ndarray, half: np.ndarray,
                      keep: np.ndarray, candidates: tuple[float, ...] = RIDGES, sample: int = 32) -> float | None:
    """The ridge whose re-fit generalizes best between two halves of the calibration feeds (fit on one half,
    output error on the other, both ways, over a sample of columns), or None when the surviving weights as
    they are do better than every re-fit (few calibration rows per input: the re-fit memorizes them). As in
    plans.prune.plan_block, the ridge picked on half the rows is halved for the fit on all of them."""
    w_aug = augmented_weight(weight, bias)
    columns = np.random.default_rng(0).choice(weight.shape[1], min(sample, weight.shape[1]), replace=False)
    masked = np.where(np.vstack([keep, np.ones((1, keep.shape[1]), bool)]), w_aug, 0.0)
    folds = [(half, gram - half), (gram - half, half)]

    def held_out_error(damping: float | None) -> float:
        total = 0.0
        for fit, check in folds:
            fitted = masked if damping is None else _solved(w_aug, fit, keep, damping, columns)
            diff = (fitted - w_aug)[:, columns]
            total += float(np.einsum("ij,ik,kj->", diff, check, diff))
        return total

    best = min([None, *candidates], key=held_out_error)
    return None if best is None else best / 2


def _solved(w_aug: np.ndarray, gram: np.ndarray, keep: np.ndarray, damping: float, columns) -> np.ndarray:
    """The augmented weight with the given columns re-fitted on their survivors (other columns zero)."""
    n_in = keep.shape[0]
    ridge = damping * (float(np.mean(np.diag(gram))) or 1.0)
    new_w = np.zeros_like(w_aug)
    columns = np.asarray(list(columns))
    target = gram @ w_aug[:, columns]                         # G w̃ for those columns at once
    for k, j in enumerate(columns):
        idx = np.append(np.flatnonzero(keep[:, j]), n_in)      # survivors + the bias row
        lhs = gram[np.ix_(idx, idx)] + ridge * np.eye(len(idx))
        new_w[idx, j] = scipy.linalg.solve(lhs, target[idx, k], assume_a="pos")
    return new_w
