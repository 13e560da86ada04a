"""The `jacobian` rule of `runtime.zo.tuner`: Gauss-Newton on a finite-difference Jacobian pooled over many batches.

Why: on a least-squares-pruned MiniLM, what group affines can still gain on unseen text (a few 1e-4 of sentence
cosine) is smaller than how far one batch's optimum lies from the next. The per-batch rules of `runtime.zo.steps` fit
each batch's noise and the held-out score falls from the first steps (samples/RESULTS.md#forward-only-recovery).
Here every batch contributes its exact Jacobian (one forward pass per parameter, θ + ε·e_i, plus one at θ) to
one set of normal equations JᵀJ, Jᵀr; the step solves them for the whole training sample,
(JᵀJ + λ·mean diag(JᵀJ)·I) δ = −Jᵀr, with λ chosen on the search feeds from strong to weak damping (one
eigendecomposition serves every λ). A step that does not raise the search score is not taken. The time for
that choice is kept out of the batches' budget; with time left, the model is linearised again at the new θ on
the next batches. A "step" of this rule is one batch linearised: trainable + 1 forward passes. Numpy only (it
runs on a device too).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable

import numpy as np

from edgec.runtime.zo.steps import Clock

if TYPE_CHECKING:
    from edgec.runtime.zo.tuner import ZOResult, ZOSettings

DAMPINGS = (100.0, 30.0, 10.0, 3.0, 1.0, 0.3, 0.1, 0.03, 0.01)   # λ, relative to the mean curvature
MAX_ENTRIES = 32_768      # residual entries per batch kept in the Jacobian (a fixed sample beyond that)
CHUNK = 4_096             # Jacobian rows turned into float64 at a time


def pooled_gauss_newton(size: int, residual_at: Callable[[np.ndarray, int], np.ndarray], batches: int,
                        evaluate: Callable[[np.ndarray], float], settings: ZOSettings, result: ZOResult,
                        progress: Callable[..., None]) -> np.ndarray:
    """Returns the best θ found. `residual_at(θ, b)`: the judged outputs' residual on training batch b;
    `evaluate(θ)`: the search score. `result` is filled in: steps (batches linearised), curve, held_out_best."""
    theta, best = np.zeros(size), result.held_out_before
    clock = Clock(settings, result)
    clock.reserve_seconds = _timed(lambda: evaluate(theta)) * len(DAMPINGS)
    while not clock.spent():
        gram, gradient, used = np.zeros((size, size)), np.zeros(size), 0
        while used < batches and not clock.spent():
            probed = _jacobian(theta, result.steps % batches, residual_at, settings.epsilon, clock.spent)
            if probed is None:           # the budget ran out inside this batch: it is left out
                break
            _accumulate(gram, gradient, *probed)
            used, result.steps = used + 1, result.steps + 1
            progress(clock.done(), f"held-out {best:.4f}")
        if not used or not np.all(np.isfinite(gram)) or not np.all(np.isfinite(gradient)):
            break
        theta, score = _damped_step(theta, gram, gradient, evaluate, best)
        result.curve.append({"seconds": clock.seconds(), "steps": result.steps, "held_out": round(max(score, best), 6)})
        if score <= best:
            result.stopped_early = not clock.spent()
            break
        best = score
    result.held_out_best = best
    return theta


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _jacobian(theta: np.ndarray, index: int, residual_at, epsilon: float,
              spent: Callable[[], bool]) -> tuple[np.ndarray, np.ndarray, float] | None:
    """Forward differences, one parameter at a time, on a fixed sample of the residual's entries, with the
    sample's weight (None when the budget runs out first)."""
    base = residual_at(theta, index)
    keep, weight = _sample(base.size, index)
    base = base[keep]
    jac = np.empty((base.size, theta.size), np.float32)
    for i in range(theta.size):
        if spent():
            return None
        probe = theta.copy()
        probe[i] += epsilon
        jac[:, i] = (residual_at(probe, index)[keep] - base) / epsilon
    return jac, base, weight


def _accumulate(gram: np.ndarray, gradient: np.ndarray, jac: np.ndarray, base: np.ndarray, weight: float) -> None:
    """gram += w² JᵀJ, gradient += w² Jᵀr, in float64 a few thousand rows at a time."""
    for start in range(0, len(base), CHUNK):
        rows = jac[start:start + CHUNK].astype(np.float64)
        gram += weight * weight * (rows.T @ rows)
        gradient += weight * weight * (rows.T @ base[start:start + CHUNK])


def _sample(entries: int, index: int) -> tuple[slice | np.ndarray, float]:
    """All entries, or a fixed random sample of MAX_ENTRIES weighted so that its squared norm stays unbiased."""
    if entries <= MAX_ENTRIES:
        return slice(None), 1.0
    keep = np.sort(np.random.default_rng([7, index]).choice(entries, MAX_ENTRIES, replace=False))
    return keep, float(np.sqrt(entries / MAX_ENTRIES))


def _damped_step(theta: np.ndarray, gram: np.ndarray, gradient: np.ndarray, evaluate,
                 best: float) -> tuple[np.ndarray, float]:
    """The damping whose step scores best on the search feeds (θ unchanged when none beats `best`). From strong
    to weak damping; the sweep ends once the score has fallen twice in a row past its best."""
    values, vectors = np.linalg.eigh(gram)
    values = np.clip(values, 0.0, None)
    curvature = float(np.mean(np.diag(gram))) or 1.0
    projected = vectors.T @ gradient
    chosen, chosen_score, falling, last = theta, best, 0, -np.inf
    for damping in DAMPINGS:
        step = -vectors @ (projected / (values + damping * curvature))
        score = evaluate(theta + step)
        if score > chosen_score:
            chosen, chosen_score = theta + step, score
        falling = falling + 1 if score < last else 0
        last = score
        if falling >= 2 and chosen_score > best:
            break
    return chosen, chosen_score
