import numpy as np
import onnx
import pytest

from edgec.passes.plans import share as plan

import models
from calib import apply_pass, rel_err


def _share(model, feeds, **options):
    return apply_pass("share", model, feeds, **options)


@pytest.mark.parametrize("style", ["matmul", "gemm"])
@pytest.mark.parametrize("mode", ["speed", "storage"])
def test_lossless_settings_reproduce_the_outputs(style, mode):
    model = models.mlp_model("gelu", style, blocks=4)
    feeds = models.feeds(model, 6, seq=20)
    out, result = _share(model, feeds, rank=models.D, mode=mode, sparsity=0.0)
    assert result.stats["blocks_shared"] == 4
    for f in feeds:
        np.testing.assert_allclose(models.run(out, f)[0], models.run(model, f)[0], atol=1e-5)


def _users(model: onnx.ModelProto, name: str) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if name in n.input]


@pytest.mark.parametrize("mode", ["speed", "storage"])
def test_one_basis_initializer_serves_every_layer_of_its_group(mode):
    model = models.mlp_model("relu", blocks=4)
    out, result = _share(model, models.feeds(model, 6, seq=20), params=0.5, group=2, mode=mode)
    bases = [i for i in out.graph.initializer if i.name.endswith("shared_U")]
    assert len(bases) == result.stats["groups"] == 2
    for basis in bases:
        users = _users(out, basis.name)
        transposes = [n for n in users if n.op_type == "Transpose"]
        assert len(transposes) == 1                          # Uᵀ for the group's fc2 layers
        fc1_users = [n for n in users if n.op_type == "MatMul"]
        fc2_users = [n for n in _users(out, transposes[0].output[0]) if n.op_type == "MatMul"]
        assert len(fc1_users) == 2 and len(fc2_users) == 2    # both blocks, fc1 and fc2
    if mode == "speed":                                      # activation-first: x·U, never U·V
        inits = {i.name for i in out.graph.initializer}
        assert all(n.input[0] not in inits for n in out.graph.node if n.op_type == "MatMul")


def test_groups_never_cross_a_width_change():
    widths = [(8, 32)] * 3 + [(16, 64)] * 5 + [(8, 32)]
    assert plan.groups(widths, 2) == [[0, 1], [2], [3, 4], [5, 6], [7], [8]]
    assert plan.groups(widths, 4) == [[0, 1, 2], [3, 4, 5, 6], [7], [8]]


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.75])
def test_rank_from_budget_spends_the_budget(sparsity):
    d, h, n, budget = 768, 3072, 4, 0.4
    r = plan.rank_for_budget(d, h, n, budget, sparsity)
    spent = lambda rank: (d * rank + (1 - sparsity) * 2 * n * rank * h) / (2 * n * d * h)  # noqa: E731
    assert spent(r) <= budget < spent(r + 1)
    assert plan.rank_for_budget(768, 3072, 4, 0.4, 0.75) == 1092      # FiPS's DeiT-B table (algorithms.md §1)


def test_sharing_beats_plain_truncation_and_more_budget_helps():
    model = models.mlp_model("gelu", residual=False, blocks=2)
    calib, held = models.feeds(model, 20, seq=30), models.feeds(model, 8, seed=9, seq=30)
    errs = [rel_err(model, _share(model, calib, params=p, max_cost_ratio=1.0)[0], held) for p in (0.3, 0.6)]
    assert errs[1] < errs[0] < 1.0


def test_storage_mode_stores_sparse_factors_within_the_byte_budget():
    model = models.mlp_model("gelu", blocks=2)
    out, result = _share(model, models.feeds(model, 12, seq=30), params=0.5, mode="storage")
    group = result.stats["per_group"][0]
    assert group["factor_sparsity"] >= 0.7
    assert result.stats["stored_bytes"] <= 0.5 * result.stats["dense_bytes"] * 1.01
    weight_side = [n for n in out.graph.node if n.op_type == "MatMul" and n.output[0].endswith("shared_W")]
    assert len(weight_side) == 4                               # W rebuilt from U and V for every layer


def test_speed_mode_refuses_sparse_factors():
    model = models.mlp_model("gelu", blocks=2)
    with pytest.raises(ValueError, match="storage"):
        _share(model, models.feeds(model, 4), mode="speed", sparsity=0.5)


def test_reconstruction_reaches_the_target_sparsity_and_lowers_the_error():
    pytest.importorskip("torch")
    model = models.mlp_model("gelu", blocks=2)
    calib = models.feeds(model, 16, seq=30)
    out, result = _share(model, calib, params=0.5, mode="storage", train_steps=150, lr=3e-3)
    training = result.stats["training"]
    assert result.stats["per_group"][0]["factor_sparsity"] >= 0.74
    closed, _ = _share(model, calib, params=0.5, mode="storage")
    held = models.feeds(model, 6, seed=9, seq=30)
    assert rel_err(model, out, held) < rel_err(model, closed, held)
    assert training["steps"] == 150 and training["rel_error_after"] > 0


def test_a_model_without_mlp_is_a_no_op():
    model = models.no_mlp_model()
    _, result = _share(model, models.feeds(model, 2))
    assert not result.changed and result.notes


def test_the_table_of_torch_activations_matches_the_functions():
    pytest.importorskip("torch")
    from edgec.passes.training.refine import TORCH_PATTERNS, torch_activation

    assert all(torch_activation(p) is not None for p in TORCH_PATTERNS)
    assert torch_activation("relu6") is None and "relu6" not in TORCH_PATTERNS
