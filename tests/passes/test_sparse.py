import numpy as np
import onnx_graphsurgeon as gs
import pytest

from edgec.passes.mlp.discovery import find_mlps
from edgec.passes.plans import sparse as sparse_plan

import models
from calib import apply_pass, rel_err


def _sparse(model, feeds, **options):
    return apply_pass("sparse", model, feeds, **options)


_rel_err = rel_err


def test_two_four_keeps_two_of_every_four_inputs_per_output():
    model = models.mlp_model("gelu")
    out, result = _sparse(model, models.feeds(model, 6, seq=20), pattern="2:4")
    assert result.changed and result.stats["sparsity"] == 0.5
    for block in find_mlps(gs.import_onnx(out)).blocks:
        for lin in (block.fc1, block.fc2):
            groups = (lin.weight != 0).reshape(lin.in_features // 4, 4, lin.out_features)
            assert (groups.sum(axis=1) <= 2).all()


def test_unstructured_sparsity_level_per_output():
    model = models.mlp_model("relu")
    out, _ = _sparse(model, models.feeds(model, 6, seq=20), pattern="0.75")
    for block in find_mlps(gs.import_onnx(out)).blocks:
        zeros = (block.fc2.weight == 0).mean(axis=0)
        assert np.allclose(zeros, 0.75)


def _anisotropic(count, seed):
    """Correlated inputs with a few loud channels, as real activations have."""
    rng = np.random.default_rng(seed)
    mix = np.random.default_rng(99).standard_normal((models.D, models.D)) * 0.5 + np.eye(models.D)
    scale = np.ones(models.D)
    scale[:3] = 8.0
    return [{"x": ((rng.standard_normal((2, 30, models.D)) @ mix) * scale).astype(np.float32)} for _ in range(count)]


def test_least_squares_resolve_and_wanda_help():
    model = models.mlp_model("gelu", residual=False, blocks=1)
    calib, held = _anisotropic(20, 1), _anisotropic(8, 2)
    plain = _rel_err(model, _sparse(model, calib, pattern="0.5", score="magnitude", resolve=False)[0], held)
    resolved = _rel_err(model, _sparse(model, calib, pattern="0.5", score="wanda", resolve=True)[0], held)
    assert resolved < 0.8 * plain


def test_resolve_is_exact_least_squares_per_column():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 8))
    w, b = rng.standard_normal((8, 3)), rng.standard_normal(3)
    aug = np.concatenate([x, np.ones((300, 1))], axis=1)
    keep = sparse_plan.mask(np.abs(w), "0.5")
    new_w, new_b = sparse_plan.resolve(w, b, aug.T @ aug, keep, damping=0.0)
    for j in range(3):
        design = np.concatenate([x[:, keep[:, j]], np.ones((300, 1))], axis=1)
        expected = np.linalg.lstsq(design, x @ w[:, j] + b[j], rcond=None)[0]
        np.testing.assert_allclose(np.append(new_w[keep[:, j], j], new_b[j]), expected, rtol=1e-6, atol=1e-9)
        assert (new_w[~keep[:, j], j] == 0).all()


def _fit_and_fresh(rows: int, seed: int):
    """Correlated inputs (so a re-fit can help), split into four calibration feeds and fresh rows."""
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((16, 16)) * 0.5 + np.eye(16)
    x = rng.standard_normal((rows + 4000, 16)) @ mix
    w, b = rng.standard_normal((16, 12)), rng.standard_normal(12)
    aug = np.concatenate([x[:rows], np.ones((rows, 1))], axis=1)
    parts = np.array_split(aug, 4)
    return w, b, aug.T @ aug, sum(p.T @ p for p in parts[::2]), x[rows:]


def _fresh_error(w, b, new_w, new_b, fresh) -> float:
    ref = fresh @ w + b
    return float(np.linalg.norm(fresh @ new_w + new_b - ref) / np.linalg.norm(ref))


def test_validation_keeps_a_light_refit_with_plenty_of_rows_and_regularizes_it_with_few():
    w, b, gram, half, _ = _fit_and_fresh(4000, seed=0)
    keep = sparse_plan.mask(np.abs(w), "0.5")
    assert sparse_plan.validated_damping(w, b, gram, half, keep) <= 1e-3
    plain, validated = [], []
    for seed in range(10):
        w, b, gram, half, fresh = _fit_and_fresh(12, seed)     # 12 rows for 8 survivors + bias per column
        keep = sparse_plan.mask(np.abs(w), "0.5")
        damping = sparse_plan.validated_damping(w, b, gram, half, keep)
        assert damping is None or damping > 1e-5
        chosen = (np.where(keep, w, 0), b) if damping is None else sparse_plan.resolve(w, b, gram, keep, damping)
        plain.append(_fresh_error(w, b, *sparse_plan.resolve(w, b, gram, keep), fresh))
        validated.append(_fresh_error(w, b, *chosen, fresh))
    assert np.mean(validated) < np.mean(plain)


@pytest.mark.parametrize("pattern", ["0", "1.5", "4:2", "abc"])
def test_bad_patterns(pattern):
    with pytest.raises(ValueError):
        sparse_plan.parse_pattern(pattern)


def test_nm_needs_divisible_inputs_and_says_so():
    b = models.Builder()
    y = models.linear(b, b.op("Relu", [models.linear(b, "x", models.D, 30)]), 30, models.D)
    model = b.model("x", y)
    out, result = _sparse(model, models.feeds(model, 4, seq=10), pattern="4:8")
    assert any("multiple of 8" in n for n in result.notes)
