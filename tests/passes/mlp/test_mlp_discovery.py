import onnx_graphsurgeon as gs
import pytest

from edgec.passes.mlp.discovery import find_mlps

import models

STYLES = ["matmul", "gemm", "constant_node", "identity"]


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("act", sorted(models.PATTERNS))
def test_every_pattern_and_weight_style_is_found(act, style):
    found = find_mlps(gs.import_onnx(models.mlp_model(act, style, blocks=3)))
    assert [b.act.pattern for b in found.blocks] == [models.PATTERNS[act]] * 3
    assert found.near_misses == []
    block = found.blocks[0]
    assert (block.d_in, block.hidden, block.d_out) == (models.D, models.H, models.D)
    assert block.fc1.weight.shape == (models.D, models.H) and block.fc2.weight.shape == (models.H, models.D)
    assert block.fc1.bias.shape == (models.H,) and block.fc2.bias.shape == (models.D,)
    assert not block.shared_weights


def test_gemm_weight_is_transposed_into_in_out_orientation():
    model = models.mlp_model("relu", "gemm", blocks=1)
    found = find_mlps(gs.import_onnx(model))
    stored = {i.name: i for i in model.graph.initializer}
    fc1 = found.blocks[0].fc1
    assert fc1.matmul.attrs["transB"] == 1
    assert fc1.weight.shape == tuple(reversed(stored[fc1.weight_source.name].dims))


def test_blocks_without_bias_are_found():
    found = find_mlps(gs.import_onnx(models.mlp_model("relu", bias=False)))
    assert len(found.blocks) == 2 and found.blocks[0].fc1.bias is None


def test_shared_weights_are_marked_and_kept():
    found = find_mlps(gs.import_onnx(models.shared_weight_model()))
    assert len(found.blocks) == 2
    assert all(b.shared_weights for b in found.blocks)


def test_model_without_mlp_finds_nothing():
    found = find_mlps(gs.import_onnx(models.no_mlp_model()))
    assert found.blocks == [] and found.near_misses == []


def test_conv_mlp_is_a_near_miss_with_reason():
    found = find_mlps(gs.import_onnx(models.conv_mlp_model()))
    assert found.blocks == []
    assert len(found.near_misses) == 1 and "Conv" in found.near_misses[0].reason


def test_activation_with_a_second_consumer_is_a_near_miss():
    b = models.Builder()
    a = b.op("Relu", [models.linear(b, "x", models.D, models.H)])
    y = models.linear(b, a, models.H, models.D)
    side = b.op("ReduceMean", [a], axes=[-1], keepdims=1)   # the activation leaks out of the block
    found = find_mlps(gs.import_onnx(b.model("x", b.op("Add", [y, side]))))
    assert found.blocks == []
    assert len(found.near_misses) == 1 and "also feeds ReduceMean" in found.near_misses[0].reason


def test_describe_reports_shape_pattern_and_layer():
    found = find_mlps(gs.import_onnx(models.mlp_model("gelu")))
    info = found.blocks[1].describe()
    assert info["index"] == 1 and info["pattern"] == "gelu"
    assert info["shape"] == f"{models.D}→{models.H}→{models.D}"
    assert info["params"] == 2 * models.D * models.H + models.D + models.H


@pytest.mark.parametrize("act", ["silu", "gelu"])
def test_gated_mlps_are_found_with_their_up_projection(act):
    graph = gs.import_onnx(models.gated_mlp_model(act, blocks=2))
    found = find_mlps(graph)
    assert len(found.blocks) == 2 and not found.near_misses
    for block in found.blocks:
        assert block.act.pattern == f"gated-{models.PATTERNS[act]}"
        assert block.up is not None and block.up.out_features == block.hidden
        assert block.up.matmul is not block.fc1.matmul
        assert block.describe()["up"] == block.up.matmul.name
