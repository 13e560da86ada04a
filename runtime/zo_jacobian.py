"""The `jacobian` rule of `runtime.zo`: Gauss-Newton on a finite-difference Jacobian pooled over many batches.

Why: on a least-squares-pruned MiniLM, what group affines can still gain on unseen text (a few 1e-4 of sentence
cosine) is smaller than how far one batch's optimum lies from the next. The per-batch rules of `zo_steps` fit
each batch's noise and the held-out score falls from the first steps (samples/RESULTS.md#forward-only-recovery).
Here every batch contributes its exact Jacobian (one forward pass per parameter, θ + ε·e_i, plus one at θ) to
one set of normal equations JᵀJ, Jᵀr; the step solves them for the whole training sample,
(JᵀJ + λ·mean diag(JᵀJ)·I) δ = −Jᵀr, with λ chosen on the search feeds from strong to weak damping. A step
that does not raise the search score is not taken. With time left, the model is linearised again at the new θ
on the next batches. Numpy only (it runs on a device too).
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

DAMPINGS = (100.0, 30.0, 10.0, 3.0, 1.0, 0.3, 0.1, 0.03, 0.01)   # λ, relative to the mean curvature
MAX_ENTRIES = 32_768      # residual entries per batch kept in the Jacobian (a fixed sample beyond that)


def pooled_gauss_newton(size: int, residual_at: Callable[[np.ndarray, int], np.ndarray], batches: int,
                        evaluate: Callable[[np.ndarray], float], settings, result,
                        progress: Callable[..., None]) -> np.ndarray:
    """Returns the best θ found. `residual_at(θ, b)`: the judged outputs' residual on training batch b;
    `evaluate(θ)`: the search score. `result` (a `runtime.zo.ZOResult`) is filled in: steps (batches
    linearised), forward passes, curve, held_out_best."""
    theta, best = np.zeros(size), result.held_out_before
    start, budget = time.perf_counter(), settings.minutes * 60

    def spent() -> bool:
        return ((budget > 0 and time.perf_counter() - start >= budget)
                or (settings.max_steps is not None and result.steps >= settings.max_steps))

    while not spent():
        gram, gradient, used = np.zeros((size, size)), np.zeros(size), 0
        while used < batches and not spent():
            index = result.steps % batches
            probed = _jacobian(theta, index, residual_at, settings.epsilon, spent)
            if probed is None:           # the budget ran out inside this batch: it is left out
                break
            jac, base = probed
            jac64 = jac.astype(np.float64)
            gram += jac64.T @ jac64
            gradient += jac64.T @ base
            used, result.steps = used + 1, result.steps + 1
            progress(_done(start, budget, result.steps), f"held-out {best:.4f}")
        if not used:
            break
        theta, improved = _damped_step(theta, gram, gradient, evaluate, best)
        result.curve.append({"seconds": round(time.perf_counter() - start, 1), "steps": result.steps,
                             "held_out": round(max(improved, best), 6)})
        if improved <= best:
            result.stopped_early = not spent()
            break
        best = improved
    result.held_out_best = best
    return theta


def _jacobian(theta: np.ndarray, index: int, residual_at, epsilon: float,
              spent: Callable[[], bool]) -> tuple[np.ndarray, np.ndarray] | None:
    """Forward differences, one parameter at a time, on a fixed sample of the residual's entries (None when
    the budget runs out first)."""
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
    return jac * weight, base * weight


def _sample(entries: int, index: int) -> tuple[slice | np.ndarray, float]:
    """All entries, or a fixed random sample of MAX_ENTRIES weighted so that its squared norm stays unbiased."""
    if entries <= MAX_ENTRIES:
        return slice(None), 1.0
    keep = np.sort(np.random.default_rng([7, index]).choice(entries, MAX_ENTRIES, replace=False))
    return keep, float(np.sqrt(entries / MAX_ENTRIES))


def _damped_step(theta: np.ndarray, gram: np.ndarray, gradient: np.ndarray, evaluate,
                 best: float) -> tuple[np.ndarray, float]:
    """The damping whose step scores best on the search feeds (θ unchanged when none beats `best`)."""
    curvature = float(np.mean(np.diag(gram))) or 1.0
    chosen, chosen_score = theta, best
    for damping in DAMPINGS:
        try:
            step = -np.linalg.solve(gram + damping * curvature * np.eye(len(gradient)), gradient)
        except np.linalg.LinAlgError:
            continue
        score = evaluate(theta + step)
        if score > chosen_score:
            chosen, chosen_score = theta + step, score
    return chosen, chosen_score


def _done(start: float, budget: float, steps: int) -> int:
    return int(time.perf_counter() - start) if budget > 0 else steps
