"""Shared-basis factorization (FiPS / Basis Sharing), the pure half: groups, ranks, closed-form factors.

Weights are in edgec's [in, out] orientation (y = x W + b). For a group of n MLP blocks of width d and
hidden size h, every FC weight is put in its d×h orientation — fc1 as W1, fc2 as W2ᵀ — and the slices
are concatenated along the long axis: M = [W1_1, W2_1ᵀ, W1_2, W2_2ᵀ, …] ∈ R^{d × 2nh}. One basis
U ∈ R^{d×r} is shared by every slice: fc1 ≈ x U V1 and fc2 ≈ (h V2ᵀ) Uᵀ, with per-layer factors V ∈ R^{r×h}.

Initialization (a closed-form "FiPS-lite": FiPS's shared basis fitted in closed form, Basis Sharing §5.4 extended to fc2):
left-whiten M with the pooled residual-stream Gram of the group's fc1 inputs, right-whiten each fc2 slice
with its hidden-activation Gram (slices keep their whitened scale: on MiniLM that beats normalizing every
slice to unit norm, samples/RESULTS.md#sharing), take U from the top-r left singular vectors, then solve
each V by least squares given U.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from edgec.passes.plans.sparse import resolve


@dataclass
class BlockWeights:
    """One MLP block's weights and calibration statistics (augmented Grams Σ[x,1]ᵀ[x,1])."""

    w1: np.ndarray           # [d, h]
    b1: np.ndarray | None
    w2: np.ndarray           # [h, d]
    b2: np.ndarray | None
    gram_x: np.ndarray       # [d+1, d+1] of the fc1 input
    gram_h: np.ndarray       # [h+1, h+1] of the fc2 input (the activation output)


@dataclass
class BlockFactors:
    v1: np.ndarray           # [r, h]   fc1 ≈ x U V1 + c1
    c1: np.ndarray
    v2t: np.ndarray          # [h, r]   fc2 ≈ (h V2ᵀ) Uᵀ + c2
    c2: np.ndarray


def groups(widths: list[tuple[int, int]], size: int) -> list[list[int]]:
    """Consecutive blocks with the same (d, h) in chunks of `size`; never across a width change."""
    out: list[list[int]] = []
    run: list[int] = []
    for i, shape in enumerate(widths):
        if run and widths[run[-1]] != shape:
            out.extend(_chunks(run, size))
            run = []
        run.append(i)
    out.extend(_chunks(run, size))
    return out


def _chunks(run: list[int], size: int) -> list[list[int]]:
    return [run[i:i + size] for i in range(0, len(run), size)] if run else []


def rank_for_budget(d: int, h: int, n: int, budget: float, sparsity: float, bytes_per_nonzero: float = 4.0) -> int:
    """FiPS's compute_sparse_r: the rank r whose U (d·r dense) plus 2n factors (r·h each, a fraction
    1 − sparsity kept) cost `budget` × the group's 2n·d·h dense weights. Costs are in bytes: dense floats
    take 4, a stored non-zero `bytes_per_nonzero` (4 counts non-zeros like the paper; ONNX COO takes 12)."""
    dense = 4.0 * 2 * n * d * h
    per_rank = 4.0 * d + bytes_per_nonzero * (1 - sparsity) * 2 * n * h
    return max(1, int(budget * dense // per_rank))


def sqrt_gram(gram: np.ndarray, rel_floor: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    """(S, S⁻¹) with SᵀS = gram, by eigendecomposition so rank-deficient Grams are safe."""
    vals, vecs = scipy.linalg.eigh((gram + gram.T) / 2)
    vals = np.maximum(vals, rel_floor * max(float(vals.max()), 1e-30))
    root = np.sqrt(vals)
    return (vecs * root).T, vecs / root


def best_shared_basis(blocks: list[BlockWeights], rank: int):
    """(U, factors, spectrum, weighting, worst relative layer error): the joint SVD with the slices at their
    whitened scale and with every slice at unit norm, whichever leaves the smaller worst layer error on the
    calibration Grams. Kept scale wins on MiniLM (samples/RESULTS.md#sharing); where one layer's whitened
    slice dwarfs another's (fc2's scale carries the hidden activations'), the basis spends its rank on that
    layer and starves the other, and equal weights win."""
    best = None
    for weighting in ("whitened scale", "balanced"):
        basis, sigma = shared_basis(blocks, rank, balanced=weighting == "balanced")
        factors = [solve_factors(w, basis) for w in blocks]
        worst = max(max(relative_errors(w, basis, f)) for w, f in zip(blocks, factors, strict=True))
        if best is None or worst < best[-1]:
            best = (basis, factors, sigma, weighting, worst)
    assert best is not None
    return best


def relative_errors(block: BlockWeights, basis: np.ndarray, f: BlockFactors) -> tuple[float, float]:
    """fc1's and fc2's output error relative to their output, over the calibration rows (from the Grams)."""
    w1 = np.vstack([block.w1, _bias(block.b1, block.w1.shape[1])[None]])
    approx1 = _lift(basis) @ np.vstack([f.v1, f.c1[None]])
    w2 = np.vstack([block.w2, _bias(block.b2, block.w2.shape[1])[None]])
    approx2 = np.vstack([f.v2t @ basis.T, f.c2[None]])
    return _relative(block.gram_x, w1, approx1), _relative(block.gram_h, w2, approx2)


def _relative(gram: np.ndarray, exact: np.ndarray, approx: np.ndarray) -> float:
    diff = exact - approx
    total = float(np.trace(exact.T @ gram @ exact))
    return float(np.sqrt(max(np.trace(diff.T @ gram @ diff), 0.0) / total)) if total > 0 else 0.0


def _bias(bias: np.ndarray | None, size: int) -> np.ndarray:
    return np.zeros(size) if bias is None else bias.astype(np.float64)


def shared_basis(blocks: list[BlockWeights], rank: int, balanced: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """U [d, rank] from the whitened joint SVD of the group, and the singular values of M (a spectrum); with
    `balanced`, every whitened slice scaled to unit norm first."""
    pooled = blocks[0].gram_x[:-1, :-1]
    for b in blocks[1:]:
        pooled = pooled + b.gram_x[:-1, :-1]
    s, s_inv = sqrt_gram(pooled)
    slices = []
    for b in blocks:
        h_root, _ = sqrt_gram(b.gram_h[:-1, :-1])
        slices += [s @ b.w1, s @ b.w2.T @ h_root.T]
    if balanced:
        slices = [m / (np.linalg.norm(m) or 1.0) for m in slices]
    u, sigma, _ = scipy.linalg.svd(np.hstack(slices), full_matrices=False, lapack_driver="gesvd")
    # Only span(U) matters (the factors are solved given it), so hand back an orthonormal basis of it:
    # better conditioned than S⁻¹U, and fc2's basis coordinates then carry the output error unscaled.
    basis, _ = np.linalg.qr(s_inv @ u[:, :rank])
    return basis, sigma


def solve_factors(block: BlockWeights, basis: np.ndarray) -> BlockFactors:
    """Least-squares factors given the shared (orthonormal) basis; biases absorb the mean of what was cut."""
    d = basis.shape[0]
    b1 = np.zeros(block.w1.shape[1]) if block.b1 is None else block.b1.astype(np.float64)
    lifted = _lift(basis)                                   # [d+1, r+1]: [x, 1] → [x U, 1]
    gram_z = lifted.T @ block.gram_x @ lifted
    target = lifted.T @ block.gram_x @ np.vstack([block.w1, b1[None]])
    v1_aug = scipy.linalg.lstsq(gram_z + _ridge(gram_z), target)[0]
    # fc2: the output must lie in span(U); the Euclidean projection is optimal whatever the inputs.
    v2t = block.w2 @ basis                                   # [h, r] (U has orthonormal columns)
    lost = block.w2 - v2t @ basis.T
    mean_h = block.gram_h[-1, :-1] / max(block.gram_h[-1, -1], 1)
    b2 = np.zeros(d) if block.b2 is None else block.b2.astype(np.float64)
    return BlockFactors(v1_aug[:-1], v1_aug[-1], v2t, b2 + mean_h @ lost)


def _lift(basis: np.ndarray) -> np.ndarray:
    d, r = basis.shape
    lifted = np.zeros((d + 1, r + 1))
    lifted[:d, :r] = basis
    lifted[d, r] = 1.0
    return lifted


def _ridge(gram: np.ndarray, damping: float = 1e-8) -> np.ndarray:
    return damping * (float(np.mean(np.diag(gram))) or 1.0) * np.eye(len(gram))


def factor_scores(block: BlockWeights, basis: np.ndarray, f: BlockFactors) -> tuple[np.ndarray, np.ndarray]:
    """Wanda-style importance |V|·‖input‖ of every factor entry (fc1's input is x U, fc2's is h)."""
    lifted = _lift(basis)
    z_norms = np.sqrt(np.maximum(np.diag(lifted.T @ block.gram_x @ lifted)[:-1], 0))
    h_norms = np.sqrt(np.maximum(np.diag(block.gram_h)[:-1], 0))
    return np.abs(f.v1) * z_norms[:, None], np.abs(f.v2t) * h_norms[:, None]


def global_threshold(scores: list[np.ndarray], sparsity: float) -> float:
    """The score below which a fraction `sparsity` of all entries (pooled over every factor) falls."""
    pooled = np.concatenate([s.ravel() for s in scores])
    k = int(round(sparsity * pooled.size))
    return float(np.partition(pooled, k - 1)[k - 1]) if k > 0 else -np.inf


def sparsify(block: BlockWeights, basis: np.ndarray, f: BlockFactors, keep1: np.ndarray,
             keep2: np.ndarray) -> BlockFactors:
    """Zero the pruned factor entries and re-solve the survivors of every column by least squares."""
    lifted = _lift(basis)
    gram_z = lifted.T @ block.gram_x @ lifted
    v1, c1 = resolve(f.v1, f.c1, gram_z, keep1)
    # fc2's factor maps h to basis coordinates z = h V2ᵀ: keep each coordinate's output on the data.
    v2t, z_bias = resolve(f.v2t, None, block.gram_h, keep2)
    return BlockFactors(v1, c1, v2t, f.c2 + z_bias @ basis.T)


def padded(basis: np.ndarray, factors: list[BlockFactors], rank: int, tau: float = 32.0):
    """Net2Net-style widening past r = d (FiPS): zero columns in U, copies of the top factor rows ÷ τ in
    V. U V is unchanged; training can then use the extra rank."""
    extra = rank - basis.shape[1]
    if extra <= 0:
        return basis, factors
    u = np.hstack([basis, np.zeros((basis.shape[0], extra))])
    out = []
    for f in factors:
        top1 = np.resize(np.arange(f.v1.shape[0]), extra)
        out.append(BlockFactors(np.vstack([f.v1, f.v1[top1] / tau]), f.c1,
                                np.hstack([f.v2t, f.v2t[:, top1] / tau]), f.c2))
    return u, out


def captured_curve(sigma: np.ndarray, points: int = 32) -> list[list[float]]:
    """[rank, fraction of the whitened group's energy captured] at `points` ranks (for the report)."""
    energy = np.concatenate([[0.0], np.cumsum(sigma.astype(np.float64) ** 2)])
    ranks = np.unique(np.linspace(0, len(sigma), points).round().astype(int))
    total = energy[-1] or 1.0
    return [[int(r), round(float(energy[r] / total), 5)] for r in ranks]
