"""channels: output channels of convolutions removed, consumers re-solved, the result checked by ONNX Runtime."""

import numpy as np
import onnx_graphsurgeon as gs
import pytest

from edgec.passes import PassOptionError

import models
from calib import apply_pass, fidelity_probe, rel_err


def _image_feeds(model, count=8, seed=1):
    dims = [d.dim_value or 1 for d in model.graph.input[0].type.tensor_type.shape.dim]
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal(dims).astype(np.float32)} for _ in range(count)]


@pytest.mark.parametrize("flatten", [False, True])
def test_constant_channels_go_exactly_into_the_next_layers_bias(flatten):
    model = models.constant_channels_cnn_model(flatten=flatten)
    feeds = _image_feeds(model)
    out, result = apply_pass("channels", model, feeds, keep=0.5, scope="layer", multiple=1, damping=1e-9)
    assert result.changed and result.stats["kept"] == [f"{gs.import_onnx(model).nodes[0].name}:8/16"]
    assert rel_err(model, out, _image_feeds(model, 4, seed=9)) < 1e-4


def test_keep_one_changes_nothing():
    model = models.wide_cnn_model()
    out, result = apply_pass("channels", model, _image_feeds(model), keep=1.0)
    assert not result.changed


def test_the_pruned_graph_runs_and_the_floor_search_keeps_its_score():
    model = models.wide_cnn_model()
    feeds = _image_feeds(model, 12)
    out, result = apply_pass("channels", model, feeds, judge=fidelity_probe(model, feeds[6:]), floor=0.995)
    assert result.changed and 0 < result.stats["keep"] < 1
    assert fidelity_probe(model, feeds[6:])(gs.import_onnx(out)) >= 0.995
    graph = gs.import_onnx(out)
    depthwise = next(n for n in graph.nodes if n.op == "Conv" and n.attrs.get("group", 1) > 1)
    assert depthwise.attrs["group"] == depthwise.inputs[1].shape[0]           # the depthwise Conv follows
    assert models.run(out, feeds[0])[0].shape == (1, 10)


def test_fewer_channels_cost_more_fidelity_and_each_layer_keeps_a_multiple_of_eight():
    model = models.wide_cnn_model()
    feeds = _image_feeds(model, 12)
    errors = []
    for keep in (0.75, 0.5, 0.25):
        out, result = apply_pass("channels", model, feeds[:8], keep=keep, scope="layer")
        assert all(int(k.split(":")[1].split("/")[0]) % 8 == 0 for k in result.stats["kept"])
        errors.append(rel_err(model, out, feeds[8:]))
    assert errors[0] < errors[1] < errors[2]


def test_bad_options_are_refused():
    with pytest.raises(PassOptionError):
        apply_pass("channels", models.wide_cnn_model(), [], keep=0.0)
