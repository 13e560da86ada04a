"""Frank–Wolfe with momentum as a selector of MLP units: a full order, useful prefixes, and its plumbing."""

import numpy as np

from edgec.passes.plans import prune as prune_plan
from edgec.passes.plans.frank_wolfe import frank_wolfe_order, interaction


def _problem(seed=1, rows=2000, hidden=48, out=12):
    rng = np.random.default_rng(seed)
    a = np.tanh(rng.standard_normal((rows, 8)) @ rng.standard_normal((8, hidden)) + 0.5 * rng.standard_normal((rows, hidden)))
    w2 = rng.standard_normal((hidden, out)) * rng.uniform(0.1, 1, (hidden, 1))
    aug = np.hstack([a, np.ones((rows, 1))])
    return aug.T @ aug, prune_plan.augmented_weight(w2, rng.standard_normal(out)), rows


def test_the_interaction_matrix_is_the_gram_of_unit_contributions():
    rng = np.random.default_rng(0)
    a = np.hstack([rng.standard_normal((50, 3)), np.ones((50, 1))])
    w = rng.standard_normal((4, 5))
    z = [np.outer(a[:, i], w[i]) for i in range(4)]
    expected = np.array([[np.sum(zi * zj) for zj in z] for zi in z])
    np.testing.assert_allclose(interaction(a.T @ a, w), expected, rtol=1e-10)


def test_the_order_holds_every_unit_once():
    gram, w_aug, _ = _problem()
    order = frank_wolfe_order(gram, w_aug)
    assert sorted(order.tolist()) == list(range(48))


def test_its_prefixes_beat_random_choices():
    """How it compares with OBS is measured on real models (samples/RESULTS.md), not asserted here."""
    gram, w_aug, _ = _problem()
    fw = frank_wolfe_order(gram, w_aug)
    rng = np.random.default_rng(3)

    def error(order, count):
        keep = np.sort(order[:count])
        return prune_plan.relative_error(gram, w_aug, keep, prune_plan.compensate(gram, w_aug, keep, 1e-4))

    for count in (8, 16, 24):
        assert error(fw, count) < np.median([error(rng.permutation(48), count) for _ in range(9)])


def test_the_prune_pass_takes_it_as_a_score():
    import models
    from calib import apply_pass

    model = models.mlp_model("gelu")
    _, result = apply_pass("prune", model, models.feeds(model, 8, seq=20), keep=0.5, score="frank-wolfe")
    assert result.changed and result.stats["hidden_after"] == models.H


def test_the_step_product_without_a_matrix_product_is_exact():
    from edgec.passes.plans.frank_wolfe import _vertex_step

    gram, w_aug, _ = _problem(hidden=12)
    q = interaction(gram, w_aug)
    rng = np.random.default_rng(0)
    w = np.append(rng.uniform(0, 2, 12), 1.0)
    gradient = 2 * q @ (w - 1)
    for direction in (gradient, -np.abs(rng.standard_normal(13)), np.abs(rng.standard_normal(13))):
        step, q_step, _ = _vertex_step(q, w, gradient, q.sum(axis=1), direction, 12.0)
        np.testing.assert_allclose(q_step, q @ step, rtol=1e-9, atol=1e-9 * np.abs(q).max())

