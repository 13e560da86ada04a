"""Delta pruning for folding fine-tunes into a base model, the pure half (numpy only).

Δ = W_tuned − W_base. DARE drops each entry with probability p and rescales the survivors by 1/(1−p);
DAREx-q rescales by 1/q instead, with q chosen label-free; magnitude keeps the largest (1−p)|Δ| with no
rescale; exact keeps Δ whole. See the DARE and DAREx papers (Yu et al. 2024; Deng et al. 2025) and samples/RESULTS.md.
"""

from __future__ import annotations

import numpy as np

METHODS = ("exact", "dare", "darex-q", "magnitude")


def drop_mask(delta: np.ndarray, drop: float, method: str, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of the entries of Δ that survive."""
    if method == "exact" or drop <= 0:
        return np.ones(delta.shape, dtype=bool)
    if method == "magnitude":
        keep = max(1, int(round(delta.size * (1 - drop))))
        threshold = np.partition(np.abs(delta).ravel(), delta.size - keep)[delta.size - keep]
        return np.abs(delta) >= threshold
    return rng.random(delta.shape) >= drop


def rescale(method: str, drop: float, q: float | None = None) -> float:
    """The factor applied to the surviving entries."""
    if method == "dare":
        return 1.0 / (1.0 - drop)
    if method == "darex-q":
        if q is None:
            raise ValueError("darex-q needs q")
        return 1.0 / q
    return 1.0


def layer_optimal_scale(delta: np.ndarray, kept: np.ndarray, gram: np.ndarray | None) -> float:
    """The scale s minimizing ‖X(Δ − s·Δ_kept)‖ for a MatMul weight with input Gram G = XᵀX (per-layer q = 1/s).
    Without a Gram, the Frobenius version ‖Δ − s·Δ_kept‖."""
    d, k = delta.astype(np.float64), kept.astype(np.float64)
    if gram is None:
        num, den = float(np.sum(d * k)), float(np.sum(k * k))
    else:
        gk = gram @ k
        num, den = float(np.sum(d * gk)), float(np.sum(k * gk))
    return num / den if den > 0 else 1.0


def q_grid(drop: float, points: int = 12) -> np.ndarray:
    """Candidate q values for DAREx-q: from below 1−p (stronger rescale) up to 1 (no rescale); 1−p itself
    (DARE's rescale) is always a candidate, so the search can only match or beat DARE on its data."""
    low = max(1e-4, (1 - drop) * 0.5)
    return np.unique(np.append(np.geomspace(low, 1.0, points), 1 - drop))


def refine_grid(grid: np.ndarray, best: float, points: int = 6) -> np.ndarray:
    """A finer grid between the neighbours of the best coarse candidate."""
    i = int(np.searchsorted(grid, best))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    return np.geomspace(lo, hi, points + 2)[1:-1] if hi > lo else np.array([])
