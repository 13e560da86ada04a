"""Whether a compiled embedder keeps the geometry of the original's: for each sample, the nearest neighbour in the
set, and the rank correlation of all pairwise cosine similarities (what retrieval and clustering read)."""

from __future__ import annotations

import numpy as np


def _rows(samples: list[np.ndarray]) -> np.ndarray:
    """One embedding vector per sample (a [1, D] or [D] output), or per token if 3-D (mean over tokens)."""
    rows = []
    for s in samples:
        s = np.asarray(s, np.float64)
        if s.ndim >= 3:
            s = s.mean(axis=tuple(range(1, s.ndim - 1)))
        rows.append(s.reshape(-1, s.shape[-1]))
    return np.concatenate(rows)


def embedding_agreement(ref: list[np.ndarray], got: list[np.ndarray]) -> tuple[float | None, float | None]:
    """Nearest-neighbour agreement and Spearman correlation of pairwise cosine similarities."""
    if not np.issubdtype(ref[0].dtype, np.floating) or ref[0].ndim < 1 or len({r.shape[-1] for r in ref}) > 1:
        return None, None
    a, b = _rows(ref), _rows(got)
    if a.shape[0] < 3 or a.shape[1] < 2:
        return None, None
    sa, sb = cosine_matrix(a), cosine_matrix(b)
    np.fill_diagonal(sa, -np.inf)
    np.fill_diagonal(sb, -np.inf)
    nn = float(np.mean(np.argmax(sa, 1) == np.argmax(sb, 1)))
    iu = np.triu_indices(a.shape[0], 1)
    rho = _spearman(sa[iu], sb[iu])
    return nn, rho


def cosine_matrix(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.where(n == 0, 1, n)
    return x @ x.T


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    rx, ry = _ranks(x), _ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return 1.0 if np.array_equal(rx, ry) else 0.0
    return float(np.corrcoef(rx, ry)[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x))
    return ranks
