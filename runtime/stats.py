"""Statistics for latency comparisons: Mann–Whitney U and a bootstrap interval of the median ratio."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RatioEstimate:
    ratio: float          # median(candidate) / median(baseline)
    low: float            # bootstrap confidence interval of that ratio
    high: float
    p_slower: float       # one-sided Mann–Whitney p-value for "candidate is slower"


def mann_whitney_greater(x: np.ndarray, y: np.ndarray) -> float:
    """One-sided p-value that x tends to be larger than y (normal approximation with tie correction)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        return 1.0
    values = np.concatenate([x, y])
    ranks = _average_ranks(values)
    u = ranks[:n1].sum() - n1 * (n1 + 1) / 2
    _, counts = np.unique(values, return_counts=True)
    n = n1 + n2
    tie = (counts ** 3 - counts).sum() / (n * (n - 1)) if n > 1 else 0.0
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - tie))
    if sigma == 0:
        return 0.5
    z = (u - n1 * n2 / 2 - 0.5) / sigma   # continuity correction
    return 0.5 * math.erfc(z / math.sqrt(2))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    sorted_vals = values[order]
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and sorted_vals[j + 1] == sorted_vals[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def ratio_estimate(baseline: list[float], candidate: list[float], confidence: float = 0.95,
                   resamples: int = 2000, seed: int = 0) -> RatioEstimate:
    base, cand = np.asarray(baseline, float), np.asarray(candidate, float)
    rng = np.random.default_rng(seed)
    b = np.median(rng.choice(base, (resamples, len(base))), axis=1)
    c = np.median(rng.choice(cand, (resamples, len(cand))), axis=1)
    ratios = c / b
    alpha = (1 - confidence) / 2
    return RatioEstimate(float(np.median(cand) / np.median(base)), float(np.quantile(ratios, alpha)),
                         float(np.quantile(ratios, 1 - alpha)), mann_whitney_greater(cand, base))
