"""The two zeroth-order step rules of `runtime.zo.tuner`, both from forward passes only, numpy only.

The objective is the distillation residual: for every float output, (student − teacher) per row over the
teacher row's norm, over √rows (so each output weighs the same and ‖r‖² ≈ Σ 2(1 − cosine) + relative norm
error), at real tokens only.

- `spsa`: ZO-ASR's multi-query random-direction gradient estimate ĝ = (1/q) Σ_k [L(θ+εz_k) − L(θ−εz_k)]/(2ε) z_k
  of L = ‖r‖², directions regenerated from (seed, step, k), and an Adam step on ĝ. One number per pair of
  forward passes: on MiniLM it walked off (samples/RESULTS.md#forward-only-recovery).
- `gauss-newton` (default): the same random directions and the same two forward passes per direction, but
  each pair gives the whole output vector's change, J z_k = [r(θ+εz_k) − r(θ−εz_k)]/(2ε); the step is the
  damped least-squares solution in the q-dimensional subspace, θ += shrink · Z a with
  a = −(MᵀM + λ diag(MᵀM))⁻¹ Mᵀ r, M = [J z_1 … J z_q]. No learning rate to tune, and far more
  information per forward pass.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Protocol

import numpy as np

from edgec.runtime.fidelity import real_tokens, token_mask

Pair = tuple[dict, dict]     # (feed, the teacher's outputs on it)


def residual(got: dict, pair: Pair, outputs: list[str]) -> np.ndarray:
    feed, target = pair
    mask = token_mask(feed)
    parts = []
    for name in outputs:
        t = np.asarray(target[name])
        if not np.issubdtype(t.dtype, np.floating):
            continue
        s, t = _rows(np.asarray(got[name], np.float64), mask), _rows(t.astype(np.float64), mask)
        norm = np.linalg.norm(t, axis=-1, keepdims=True) + 1e-8
        parts.append(((s - t) / norm / math.sqrt(len(t))).ravel())
    return np.concatenate(parts) if parts else np.zeros(1)


def _rows(a: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    a = real_tokens(a, mask)
    return a.reshape(-1, a.shape[-1]) if a.ndim >= 2 else a.reshape(1, -1)


def direction(seed: int, step: int, k: int, size: int) -> np.ndarray:
    return np.random.default_rng([seed, step, k]).standard_normal(size)


class SPSAAdam:
    def __init__(self, size: int, settings):
        self.settings, self.m, self.v = settings, np.zeros(size), np.zeros(size)

    def step(self, theta: np.ndarray, residual_at, step: int, lr_factor: float) -> np.ndarray:
        s = self.settings
        grad = np.zeros_like(theta)
        for k in range(s.queries):
            z = direction(s.seed, step, k, theta.size)
            plus, minus = residual_at(theta + s.epsilon * z), residual_at(theta - s.epsilon * z)
            grad += (plus @ plus - minus @ minus) / (2 * s.epsilon) * z
        grad /= s.queries
        b1, b2, t = 0.9, 0.999, step + 1
        self.m = b1 * self.m + (1 - b1) * grad
        self.v = b2 * self.v + (1 - b2) * grad * grad
        lr = s.lr * lr_factor
        return theta - lr * (self.m / (1 - b1 ** t)) / (np.sqrt(self.v / (1 - b2 ** t)) + 1e-8)


class SubspaceGaussNewton:
    def __init__(self, size: int, settings):
        self.settings = settings

    def step(self, theta: np.ndarray, residual_at, step: int, lr_factor: float) -> np.ndarray:
        s = self.settings
        columns, centre, directions = [], None, []
        for k in range(s.queries):
            z = direction(s.seed, step, k, theta.size)
            plus, minus = residual_at(theta + s.epsilon * z), residual_at(theta - s.epsilon * z)
            columns.append((plus - minus) / (2 * s.epsilon))
            centre = (plus + minus) / 2 if centre is None else centre + (plus + minus) / 2
            directions.append(z)
        m = np.stack(columns, axis=1)
        r = centre / s.queries        # r(θ) to second order, without another forward pass
        gram = m.T @ m
        damped = gram + s.damping * np.diag(np.diag(gram)) + 1e-12 * np.trace(gram) * np.eye(len(columns))
        a = -np.linalg.solve(damped, m.T @ r)
        return theta + s.shrink * lr_factor * (np.stack(directions, axis=1) @ a)


class StepRule(Protocol):
    def step(self, theta: np.ndarray, residual_at: Callable[[np.ndarray], np.ndarray], step: int,
             lr_factor: float) -> np.ndarray:
        ...


OPTIMIZERS: dict[str, Callable[..., StepRule]] = {"gauss-newton": SubspaceGaussNewton, "spsa": SPSAAdam}


class Clock:
    """A tuner's budget (`runtime.zo.tuner.ZOSettings`): minutes (less `reserve_seconds`, kept for work that must follow
    the last step) or steps (`result.steps` against `max_steps`)."""

    def __init__(self, settings, result):
        self.settings, self.result = settings, result
        self.start, self.budget, self.reserve_seconds = time.perf_counter(), settings.minutes * 60, 0.0

    def spent(self) -> bool:
        if self.settings.max_steps is not None and self.result.steps >= self.settings.max_steps:
            return True
        return self.budget > 0 and time.perf_counter() - self.start + self.reserve_seconds >= self.budget

    def fraction(self) -> float:
        """How much of the budget is gone (for schedules)."""
        if self.budget > 0:
            return (time.perf_counter() - self.start) / self.budget
        return self.result.steps / (self.settings.max_steps or 1)

    def seconds(self) -> float:
        return round(time.perf_counter() - self.start, 1)

    def done(self) -> int:
        """Progress units: seconds within the budget, or steps."""
        return min(int(self.seconds()), int(self.budget)) if self.budget > 0 else self.result.steps
