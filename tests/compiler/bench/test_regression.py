"""The CI latency gate's verdict: a regression only when the slowdown is over the threshold and real."""

import numpy as np

from edgec.compiler.bench.regression import judge


def _samples(median, n=60, seed=0):
    return list(median * (1 + 0.01 * np.random.default_rng(seed).standard_normal(n)))


def test_a_clear_slowdown_past_the_threshold_is_a_regression():
    verdict = judge("new.onnx", "old.onnx", _samples(10.0), _samples(12.0, seed=1), threshold=0.10)
    assert verdict.status == "regression" and verdict.ratio > 1.15


def test_the_same_speed_is_ok():
    assert judge("new.onnx", "old.onnx", _samples(10.0), _samples(10.0, seed=1), 0.10).status == "ok"


def test_noise_around_the_limit_is_inconclusive_not_a_regression():
    rng = np.random.default_rng(2)
    base = list(10 * (1 + 0.3 * rng.standard_normal(8)) ** 2)
    current = list(11 * (1 + 0.3 * rng.standard_normal(8)) ** 2)
    assert judge("new.onnx", "old.onnx", base, current, 0.10).status in ("inconclusive", "ok")
