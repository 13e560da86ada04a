"""Low-rank factorization, the pure half: the layer-output-optimal factors and rank allocation.

For y = x W + b (W: [in, out]) and calibration inputs X, the rank-k W_k that minimizes the output
error ‖(X − 1x̄)(W − W_k)‖ is W V_k V_kᵀ, where V_k are the top eigenvectors of the output covariance
C = Wᵀ Σ W (Σ the centered input covariance) — the Swift-SVD form of SVD-LLM's whitened SVD, with no
Cholesky, so rank-deficient activations are safe. One eigendecomposition gives every rank. The bias
absorbs the mean of what was cut: b' = b + x̄ W (I − V_k V_kᵀ). Emitted activation-first:
MatMul(MatMul(x, A = W V_k), B = V_kᵀ) + b'.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import scipy.linalg
from scipy.interpolate import PchipInterpolator

Method = Literal["whitened", "svd"]
METHODS = get_args(Method)


@dataclass
class Spectrum:
    """Everything needed to factorize one layer at any rank."""

    basis: np.ndarray      # [out, r_max] directions, most important first
    energy: np.ndarray     # [r_max] output energy along each direction (descending)
    total: float           # total output energy (the error at rank 0)
    in_features: int
    out_features: int

    @property
    def max_rank(self) -> int:
        return len(self.energy)

    def rel_error(self, rank: int) -> float:
        lost = float(self.energy[rank:].sum())
        return float(np.sqrt(max(lost, 0.0) / self.total)) if self.total > 0 else 0.0

    def params(self, rank: int) -> int:
        return rank * (self.in_features + self.out_features)


def centered_covariance(gram: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(Σ, x̄) from an augmented Gram Σ[x,1]ᵀ[x,1]."""
    n = max(rows, 1)
    mean = gram[-1, :-1] / n
    return gram[:-1, :-1] / n - np.outer(mean, mean), mean


def spectrum(weight: np.ndarray, gram: np.ndarray | None, rows: int, method: str) -> Spectrum:
    w = weight.astype(np.float64)
    if method == "svd" or gram is None:
        u, s, vt = np.linalg.svd(w, full_matrices=False)
        return Spectrum(vt.T, s**2, float((s**2).sum()), w.shape[0], w.shape[1])
    if method != "whitened":
        raise ValueError(f"unknown method '{method}' (known: {', '.join(METHODS)})")
    cov, _ = centered_covariance(gram, rows)
    c = w.T @ cov @ w
    c = (c + c.T) / 2
    vals, vecs = scipy.linalg.eigh(c)
    order = np.argsort(vals)[::-1]
    vals, vecs = np.maximum(vals[order], 0.0), vecs[:, order]
    r_max = min(w.shape)
    return Spectrum(vecs[:, :r_max], vals[:r_max], float(vals.sum()), w.shape[0], w.shape[1])


def factors(weight: np.ndarray, bias: np.ndarray | None, spec: Spectrum, rank: int,
            mean: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """A [in, rank], B [rank, out] and the corrected bias for y ≈ (x A) B + b'."""
    w = weight.astype(np.float64)
    v = spec.basis[:, :rank]
    a, b = w @ v, v.T
    new_bias = None if bias is None else bias.astype(np.float64)
    if mean is not None:
        correction = mean @ (w - a @ b)
        new_bias = correction if new_bias is None else new_bias + correction
    return a, b, new_bias


def allocate(spectra: list[Spectrum], params_fraction: float, multiple: int) -> list[int]:
    """Ranks under a budget of `params_fraction` × the dense parameters of these layers, each a multiple of
    `multiple` (the target's tile) where one fits under its break-even.

    Greedy by relative energy captured per parameter over steps of `multiple` ranks, which is exact for this
    separable problem (each layer's energies are sorted, so its steps' gains fall). The budget is never
    exceeded: rounding each layer's rank up afterwards would spend a tile per layer over it (rank 17 → 32).
    A layer never gets a rank whose factors outgrow it.
    """
    budget = params_fraction * sum(s.in_features * s.out_features for s in spectra)
    gains: list[tuple[float, int, int]] = []            # (gain per parameter, layer, ranks in this step)
    for i, s in enumerate(spectra):
        rel = s.energy / s.total if s.total > 0 else np.zeros_like(s.energy)
        step = multiple if 1 < multiple <= break_even(s) else 1
        for start in range(0, break_even(s) - step + 1, step):         # whole tiles under the break-even
            gains.append((float(rel[start:start + step].sum()) / (step * (s.in_features + s.out_features)), i,
                          step))
    gains.sort(key=lambda t: -t[0])
    ranks = [0] * len(spectra)
    spent = 0.0
    for _, i, width in gains:
        cost = width * (spectra[i].in_features + spectra[i].out_features)
        if spent + cost > budget:
            continue                                   # a smaller step of another layer may still fit
        ranks[i] += width
        spent += cost
    return ranks


def break_even(s: Spectrum) -> int:
    """The largest rank whose factors hold fewer parameters than the dense weight."""
    return max(0, min(s.max_rank, (s.in_features * s.out_features - 1) // (s.in_features + s.out_features)))


def effective_rank(spec: Spectrum, points: int = 24) -> int:
    """The knee of captured-energy vs rank (PCHIP-smoothed): farthest point from the secant."""
    ranks = np.unique(np.linspace(0, spec.max_rank, points).round().astype(int))
    captured = np.array([1.0 - spec.rel_error(int(r)) for r in ranks])
    grid = np.arange(spec.max_rank + 1)
    curve = PchipInterpolator(ranks, captured)(grid)
    x, y = grid / max(spec.max_rank, 1), curve
    distance = y - (y[0] + (y[-1] - y[0]) * x)
    return int(grid[int(np.argmax(distance))])


def captured_curve(spec: Spectrum, points: int = 32) -> list[list[float]]:
    """[rank, fraction of output energy captured] at `points` ranks: the spectrum a report plots."""
    ranks = np.unique(np.linspace(0, spec.max_rank, points).round().astype(int))
    return [[int(r), round(1.0 - spec.rel_error(int(r)) ** 2, 5)] for r in ranks]
