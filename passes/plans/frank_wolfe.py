"""Frank–Wolfe with momentum as a selector of MLP hidden units (after Projection-Free CNN Pruning via
Frank–Wolfe with Momentum): a forward, projection-free alternative to the OBS elimination order.

The block output is a sum of unit contributions z_i = a_i W̃_i (activation times fc2's row; the bias row is
a unit that always stays). Re-weighting unit i by w_i gives  f(w) = ‖Σ_i (w_i − 1) z_i‖²  over the
calibration rows, a quadratic  rᵀ Q r  with r = w − 1 and  Q = G ∘ (W̃ W̃ᵀ)  (G the Gram matrix of [a, 1]).
Frank–Wolfe minimizes it over {w ≥ 0, Σ w ≤ R}: the linear minimization picks the vertex R·e_j of the unit
whose (momentum-averaged) gradient is most negative, so every step adds at most one unit, and the exact line
search of a quadratic sets the step. Units in the order they entered are the importance order; the kept
units' fc2 rows are then re-solved by least squares like every other selector's (prune_plan.compensate).
"""

from __future__ import annotations

import numpy as np


def interaction(gram: np.ndarray, w_aug: np.ndarray) -> np.ndarray:
    """Q = G ∘ (W̃ W̃ᵀ): ⟨z_i, z_j⟩ summed over the calibration rows."""
    return gram * (w_aug @ w_aug.T)


def frank_wolfe_order(gram: np.ndarray, w_aug: np.ndarray, momentum: float = 0.5, max_steps: int | None = None
                      ) -> np.ndarray:
    """Hidden units from most to least important: the order in which Frank–Wolfe brought them in; units it
    never chose follow, strongest contribution ‖z_i‖² first. Heavy momentum (0.9) keeps the first gradient
    for long and so reproduces the energy order; 0.5 chose better prefixes on synthetic blocks."""
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
        j = int(np.argmin(direction[:hidden]))
        vertex = np.zeros(hidden + 1)
        vertex[hidden] = 1.0
        if direction[j] < 0:
            vertex[j] = radius
        step = vertex - w
        # Q (s − w) without a matrix product: Q w = gradient / 2 + Q 1, and s is R·e_j (or 0) plus the bias
        q_step = radius * q[:, j] * (direction[j] < 0) + q[:, hidden] - (gradient / 2 + q_ones)
        curvature = float(step @ q_step)
        if curvature <= 0:
            break
        gamma = float(np.clip(-(gradient @ step) / (2 * curvature), 0.0, 1.0))
        if gamma <= 0:
            break
        w += gamma * step
        gradient += 2 * gamma * q_step
        if direction[j] < 0 and not seen[j]:
            seen[j] = True
            entered.append(j)
            if len(entered) == hidden:
                break
    rest = np.flatnonzero(~seen)
    rest = rest[np.argsort(-np.diag(q)[rest], kind="stable")]
    return np.concatenate([np.array(entered, dtype=int), rest]).astype(int)
