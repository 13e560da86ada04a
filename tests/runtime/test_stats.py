import numpy as np
import pytest

from edgec.runtime.stats import mann_whitney_greater, ratio_estimate


def test_mann_whitney_detects_a_shift_and_not_noise():
    rng = np.random.default_rng(0)
    base = rng.normal(10, 1, 40)
    assert mann_whitney_greater(base + 3, base) < 1e-6
    assert mann_whitney_greater(rng.normal(10, 1, 40), base) > 0.01


def test_mann_whitney_matches_scipy():
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(1)
    x, y = rng.normal(1.1, 1, 30).round(1), rng.normal(1.0, 1, 25).round(1)   # with ties
    expected = mannwhitneyu(x, y, alternative="greater", method="asymptotic").pvalue
    assert mann_whitney_greater(x, y) == pytest.approx(expected, rel=1e-6)


def test_ratio_interval_contains_the_true_ratio():
    rng = np.random.default_rng(2)
    est = ratio_estimate(list(rng.normal(10, 0.5, 60)), list(rng.normal(15, 0.5, 60)))
    assert est.low < 1.5 < est.high and est.ratio == pytest.approx(1.5, rel=0.05)
