"""Unstructured and N:M sparsity masks (magnitude or Wanda) with a least-squares re-solve, the pure half.

Weights are [in, out] (y = x W + b). Wanda scores |W_ij|·‖x_i‖: a weight matters in proportion to the
input it multiplies. Masks are chosen per output column (the Wanda comparison group), then each
column's surviving weights and its bias are re-solved on the augmented calibration Gram G = Σ[x,1]ᵀ[x,1]
so that the column's output is preserved: G[S,S] w_S = G[S,:] w̃  (S = survivors + the bias row).
"""

from __future__ import annotations

import re

import numpy as np
import scipy.linalg

SCORES = ("wanda", "magnitude")


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


def resolve(weight: np.ndarray, bias: np.ndarray | None, gram: np.ndarray, keep: np.ndarray,
            damping: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares re-fit of every column's surviving weights and bias; pruned entries stay zero."""
    n_in = weight.shape[0]
    w_aug = np.vstack([weight.astype(np.float64), (np.zeros(weight.shape[1]) if bias is None else bias)[None]])
    ridge = damping * (float(np.mean(np.diag(gram))) or 1.0)
    new_w = np.zeros_like(w_aug)
    target = gram @ w_aug                                      # G[:, :] w̃ for every column at once
    for j in range(weight.shape[1]):
        idx = np.append(np.flatnonzero(keep[:, j]), n_in)      # survivors + the bias row
        lhs = gram[np.ix_(idx, idx)] + ridge * np.eye(len(idx))
        new_w[idx, j] = scipy.linalg.solve(lhs, target[idx, j], assume_a="pos")
    return new_w[:-1], new_w[-1]
