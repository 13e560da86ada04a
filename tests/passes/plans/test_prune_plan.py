import numpy as np
import pytest

from edgec.passes.plans import prune as prune_plan


def _data(n=400, hidden=24, out=6, seed=0):
    rng = np.random.default_rng(seed)
    a = np.maximum(rng.standard_normal((n, hidden)) @ rng.standard_normal((hidden, hidden)) * 0.3, 0)
    w2, b2 = rng.standard_normal((hidden, out)), rng.standard_normal(out)
    aug = np.concatenate([a, np.ones((n, 1))], axis=1)
    return a, w2, b2, aug.T @ aug


def test_compensation_is_the_least_squares_solution():
    a, w2, b2, gram = _data()
    keep = np.arange(0, 24, 2)
    w_new = prune_plan.compensate(gram, prune_plan.augmented_weight(w2, b2), keep, damping=0.0)
    target = a @ w2 + b2
    design = np.concatenate([a[:, keep], np.ones((len(a), 1))], axis=1)
    expected = np.linalg.lstsq(design, target, rcond=None)[0]
    np.testing.assert_allclose(w_new, expected, rtol=1e-6, atol=1e-8)


def test_relative_error_from_gram_matches_direct_computation():
    a, w2, b2, gram = _data()
    plan = prune_plan.plan_block(gram, len(a), w2, b2, 10, "obs", True, 0.0)
    got = np.concatenate([a[:, plan.keep], np.ones((len(a), 1))], axis=1) @ np.vstack([plan.weight, plan.bias])
    ref = a @ w2 + b2
    assert plan.rel_error == pytest.approx(np.linalg.norm(got - ref) / np.linalg.norm(ref), rel=1e-6)


def test_obs_never_loses_to_energy_on_calibration_error():
    a, w2, b2, gram = _data(hidden=32, seed=3)
    for count in (8, 16, 24):
        obs = prune_plan.plan_block(gram, len(a), w2, b2, count, "obs", True, 1e-8).rel_error
        energy = prune_plan.plan_block(gram, len(a), w2, b2, count, "energy", True, 1e-8).rel_error
        assert obs <= energy + 1e-9


def test_dead_units_go_first_and_do_not_break_the_solve():
    a, w2, b2, _ = _data()
    a[:, 3] = 0.0            # a unit that never fires
    a[:, 5] = a[:, 4]        # two identical units
    aug = np.concatenate([a, np.ones((len(a), 1))], axis=1)
    plan = prune_plan.plan_block(aug.T @ aug, len(a), w2, b2, 22, "obs", True, 1e-6)
    assert 3 not in plan.keep and np.isfinite(plan.weight).all()
    assert plan.rel_error < 1e-3


@pytest.mark.parametrize("hidden, keep, multiple, expected", [(1536, 0.5, 1, 768), (1536, 0.5, 64, 768),
                                                               (100, 0.33, 8, 40), (100, 0.01, 1, 8), (10, 0.9, 8, 10)])
def test_keep_count_rounds_to_the_tile(hidden, keep, multiple, expected):
    assert prune_plan.keep_count(hidden, keep, multiple, 8) == expected


def _halves(a: np.ndarray, feeds: int) -> tuple[np.ndarray, np.ndarray]:
    """The full Gram and the even feeds' part, `a` cut into `feeds` equal feeds (as the driver sums them)."""
    aug = np.concatenate([a, np.ones((len(a), 1))], axis=1)
    parts = np.array_split(aug, feeds)
    return aug.T @ aug, sum(p.T @ p for p in parts[::2])


def _error(plan, a, w2, b2):
    ref = a @ w2 + b2
    got = a[:, plan.keep] @ plan.weight + plan.bias
    return np.linalg.norm(got - ref) / np.linalg.norm(ref)


def _few_rows_errors(rows: int, ridge_grid: bool):
    plain, validated, choices = [], [], []
    for seed in range(10):
        everything, w2, b2, _ = _data(n=4000, hidden=24, seed=seed)
        a, fresh = everything[:rows], everything[rows:]
        gram, half = _halves(a, feeds=4)
        plan = prune_plan.plan_block(gram, rows, w2, b2, 12, "obs", True, 1e-4, half=half, ridge_grid=ridge_grid)
        plain.append(_error(prune_plan.plan_block(gram, rows, w2, b2, 12, "obs", True, 1e-4), fresh, w2, b2))
        validated.append(_error(plan, fresh, w2, b2))
        choices.append(plan.damping)
    return np.mean(plain), np.mean(validated), choices


def test_with_fewer_rows_than_unknowns_validation_drops_the_resolve():
    plain, validated, choices = _few_rows_errors(8, ridge_grid=False)   # 8 rows for 12 kept units + bias
    assert choices == [None] * 10 and validated < 0.9 * plain


def test_with_few_rows_the_validated_ridge_generalizes_better():
    plain, validated, choices = _few_rows_errors(20, ridge_grid=True)
    assert validated < plain and all(d is None or d > 1e-4 / 2 for d in choices)


def test_with_plenty_of_calibration_rows_validation_keeps_a_light_resolve():
    a, w2, b2, _ = _data(n=4000, hidden=24, seed=5)
    gram, half = _halves(a, feeds=8)
    plan = prune_plan.plan_block(gram, len(a), w2, b2, 12, "obs", True, 1e-4, half=half)
    grid = prune_plan.plan_block(gram, len(a), w2, b2, 12, "obs", True, 1e-4, half=half, ridge_grid=True)
    uncompensated = prune_plan.plan_block(gram, len(a), w2, b2, 12, "obs", False, 1e-4)
    assert plan.damping == 1e-4 and grid.damping is not None and grid.damping <= 1e-2
    assert plan.rel_error < uncompensated.rel_error
