"""The pooled-Jacobian rule of zeroth-order tuning on a problem whose answer is known (numpy only)."""

import time

import numpy as np

from edgec.runtime.zo.jacobian import pooled_gauss_newton
from edgec.runtime.zo.tuner import ZOResult, ZOSettings


def _linear_problem(delay: float = 0.0):
    """r(θ) = Aθ − b on two 'batches'; the search score is −‖r‖² on both."""
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((2, 40, 6)), rng.standard_normal((2, 40))

    def residual_at(theta, index):
        time.sleep(delay)
        return a[index] @ theta - b[index]

    def evaluate(theta):
        return -sum(float(np.sum((a[i] @ theta - b[i]) ** 2)) for i in range(2))
    return residual_at, evaluate, a, b


def test_the_pooled_step_solves_a_linear_least_squares_problem():
    residual_at, evaluate, a, b = _linear_problem()
    result = ZOResult(held_out_before=evaluate(np.zeros(6)))
    theta = pooled_gauss_newton(6, residual_at, 2, evaluate, ZOSettings(minutes=0, max_steps=4), result,
                                lambda *_: None)
    exact = np.linalg.lstsq(np.concatenate(a), np.concatenate(b), rcond=None)[0]
    assert result.steps >= 2 and result.held_out_best > result.held_out_before
    assert np.linalg.norm(theta - exact) < 0.05 * np.linalg.norm(exact)     # λ = 0.01 of the mean curvature


def test_a_budget_spent_inside_the_first_batch_takes_no_step():
    residual_at, evaluate, _, _ = _linear_problem(delay=0.01)
    result = ZOResult(held_out_before=evaluate(np.zeros(6)))
    theta = pooled_gauss_newton(6, residual_at, 2, evaluate, ZOSettings(minutes=0.0001), result, lambda *_: None)
    assert result.steps == 0 and not theta.any() and result.held_out_best == result.held_out_before
