import numpy as np
import pytest

from edgec.passes.plans.prune_alloc import allocate, measure_losses


def test_blocks_that_cost_more_fidelity_get_more_units_within_the_uniform_total():
    hidden = [512, 512, 512]
    fractions = allocate([0.01, 0.04, 0.01], hidden, keep=0.5, lowest=0.1)
    assert fractions == pytest.approx([0.375, 0.75, 0.375])        # ∝ √loss: 1 : 2 : 1
    assert sum(f * h for f, h in zip(fractions, hidden, strict=True)) == pytest.approx(0.5 * sum(hidden))


def test_the_split_minimizes_the_summed_loss_model_for_the_same_units():
    losses, hidden = [0.02, 0.005, 0.03], [1024, 256, 512]
    fractions = np.array(allocate(losses, hidden, keep=0.5, lowest=0.1))

    def summed(f):               # each block's loss grows like s · keep / f
        return float(np.sum(np.array(losses) * 0.5 / f))

    rng = np.random.default_rng(0)
    for _ in range(50):          # moving units between blocks, same total, never lowers it
        h = np.array(hidden, float)
        d = rng.normal(size=3) * 0.05
        d -= (d @ h) / (h @ h) * h
        other = fractions + d
        if np.all(other > 0):
            assert summed(other) >= summed(fractions) - 1e-12


def test_bounds_hold_and_what_a_clipped_block_cannot_take_goes_to_the_others():
    fractions = allocate([1.0, 1e-6, 1e-6], [256, 256, 256], keep=0.6, lowest=0.25)
    assert fractions[0] == 1.0 and fractions[1] == pytest.approx(0.4) and fractions[2] == pytest.approx(0.4)
    fractions = allocate([1.0, 1e-8, 0.5], [256, 256, 256], keep=0.5, lowest=0.25)
    assert fractions[1] == 0.25 and max(fractions) <= 1.0
    assert sum(fractions) == pytest.approx(1.5)
    assert allocate([0.0, 0.0], [128, 128], keep=0.5, lowest=0.1) == pytest.approx([0.5, 0.5])


def test_losses_are_one_minus_the_probe_score_of_each_block_alone():
    scores = {0: 0.97, 1: 0.99, 2: 1.0000001}
    assert measure_losses(scores.__getitem__, 3) == pytest.approx([0.03, 0.01, 0.0])
