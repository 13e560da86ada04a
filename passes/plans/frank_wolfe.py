"""Frank–Wolfe with momentum as a selector of MLP hidden units (after Projection-Free CNN Pruning via
Frank–Wolfe with Momentum): a forward, projection-free alternative to the OBS elimination order.

The block output is a sum of unit contributions z_i = a_i W̃_i (activation times fc2's row; the bias row is
a unit that always stays). Re-weighting unit i by w_i gives  f(w) = ‖Σ_i (w_i − 1) z_i‖²  over the
calibration rows, a quadratic  rᵀ Q r  with r = w − 1 and  Q = G ∘ (W̃ W̃ᵀ)  (G the Gram matrix of [a, 1]).
Frank–Wolfe minimizes it over {w ≥ 0, Σ w ≤ R}: the linear minimization picks the vertex R·e_j of the unit
whose (momentum-averaged) gradient is most negative, so every step adds at most one unit, and the exact line
search of a quadratic sets the step. Units in the order they entered are the importance order; the kept
units' fc2 rows are then re-solved by least squares like every other selector's (plans.prune.compensate).
"""

from __future__ import annotations

import numpy as np


def interaction(gram: np.ndarray, w_aug: np.ndarray) -> np.ndarray:
    """Q = G ∘ (W̃ W̃ᵀ): ⟨z_i, z_j⟩ summed over the calibration rows."""
    return gram * (w_aug @ w_aug.T)


def _vertex_step(q: np.ndarray, w: np.ndarray, gradient: np.ndarray, q_ones: np.ndarray, direction: np.ndarray,
                 radius: float) -> tuple[np.ndarray, np.ndarray, int]:
    """The step s − w toward the vertex the direction picks (R·e_j, or 0 when no entry is negative), Q (s − w)
    without a matrix product (Q w = gradient / 2 + Q 1; s holds the bias at 1 like w), and j."""
    hidden = len(w) - 1
    j = int(np.argmin(direction[:hidden]))
    chosen = direction[j] < 0
    vertex = np.zeros_like(w)
    vertex[hidden] = 1.0
    vertex[j] = radius if chosen else 0.0
    q_step = radius * q[:, j] * chosen + q[:, hidden] - (gradient / 2 + q_ones)
    return vertex - w, q_step, j


def _line_search(gradient: np.ndarray, step: np.ndarray, q_step: np.ndarray) -> float:
    """The exact minimizer in [0, 1] of the quadratic along the step (0: no descent)."""
    curvature = float(step @ q_step)
    if curvature <= 0:
        return 0.0
    return float(np.clip(-(gradient @ step) / (2 * curvature), 0.0, 1.0))


def frank_wolfe_order(gram: np.ndarray, w_aug: np.ndarray, momentum: float = 0.5, max_steps: int | None = None
                      ) -> np.ndarray:
    """Hidden units from most to least important: the order in which Frank–Wolfe brought them in; units it
    never chose follow, strongest contribution ‖z_i‖² first. Where the averaged direction does not descend,
    the step falls back to the plain gradient's vertex."""
    q = interaction(gram, w_aug)
    hidden = q.shape[0] - 1
    radius = float(hidden)
    w = np.zeros(hidden + 1)
    w[hidden] = 1.0                                  # the bias is always there
    gradient = 2 * q @ (w - 1)
    q_ones = q.sum(axis=1)
    direction = gradient.copy()
    entered: list[int] = []
    seen = np.zeros(hidden, bool)
    for _ in range(max_steps or 4 * hidden):
        direction = momentum * direction + (1 - momentum) * gradient
        step, q_step, j = _vertex_step(q, w, gradient, q_ones, direction, radius)
        gamma = _line_search(gradient, step, q_step)
        if gamma <= 0:        # the averaged direction does not descend here: one plain Frank–Wolfe step instead
            direction = gradient.copy()
            step, q_step, j = _vertex_step(q, w, gradient, q_ones, direction, radius)
            gamma = _line_search(gradient, step, q_step)
            if gamma <= 0:    # no descent even along the gradient: w is optimal on the feasible set
                break
        w += gamma * step
        gradient += 2 * gamma * q_step
        if step[j] > 0 and not seen[j]:
            seen[j] = True
            entered.append(j)
            if len(entered) == hidden:
                break
    rest = np.flatnonzero(~seen)
    rest = rest[np.argsort(-np.diag(q)[rest], kind="stable")]
    return np.concatenate([np.array(entered, dtype=int), rest]).astype(int)
