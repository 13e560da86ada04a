import pytest

from edgec.passes import prune_alloc
from edgec.passes.prune_alloc import LossCurve, allocate, measure_curves


def _curve(weight: float) -> LossCurve:
    """A block whose loss grows as the square of the units it lost, scaled by its weight."""
    fractions = (0.125, 0.25, 0.5, 0.75, 1.0)
    return LossCurve(fractions, tuple(weight * (1 - f) ** 2 for f in fractions))


def test_blocks_that_cost_more_fidelity_get_more_units_within_the_uniform_total():
    hidden = [512, 512, 512]
    fractions = allocate([_curve(0.01), _curve(0.04), _curve(0.01)], hidden, keep=0.5, lowest=0.125)
    assert fractions[1] > 0.5 > fractions[0] and fractions[0] == pytest.approx(fractions[2])
    used = sum(f * h for f, h in zip(fractions, hidden, strict=True))
    assert 0.5 * sum(hidden) - prune_alloc.STEP * 512 < used <= 0.5 * sum(hidden) + 1e-6


def test_equal_curves_give_the_uniform_keep_and_nothing_leaves_its_bounds():
    assert allocate([_curve(0.02)] * 4, [256] * 4, keep=0.5, lowest=0.125) == pytest.approx([0.5] * 4)
    fractions = allocate([_curve(1.0), _curve(0.001)], [256, 256], keep=0.7, lowest=0.25)
    assert fractions == [1.0, 0.375]       # the first block full, the rest (4 steps) to the second


def test_blocks_of_different_widths_share_one_budget_of_units():
    hidden = [1024, 256]
    fractions = allocate([_curve(0.02), _curve(0.02)], hidden, keep=0.5, lowest=0.125)
    assert sum(f * h for f, h in zip(fractions, hidden, strict=True)) == pytest.approx(640, abs=prune_alloc.STEP * 1024)


def test_curves_are_measured_at_the_levels_above_the_lowest_and_never_rise_with_more_units():
    calls = []

    def score_alone(block, fraction):
        calls.append((block, fraction))
        return {0.25: 0.90, 0.5: 0.97, 0.75: 0.96}[fraction]     # 0.75 scores worse than 0.5: noise

    curves = measure_curves(score_alone, blocks=2, lowest=0.25)
    assert calls == [(b, f) for b in (0, 1) for f in (0.25, 0.5, 0.75)]
    assert curves[0].fractions == (0.25, 0.5, 0.75, 1.0)
    assert curves[0].losses == pytest.approx((0.10, 0.04, 0.04, 0.0))
    assert curves[0].loss(0.375) == pytest.approx(0.07)
