import numpy as np
import onnx_graphsurgeon as gs
import pytest

from edgec.passes import PassContext, get_pass
from edgec.passes.base import PassOptionError

import models


def _cleanup(model, **options):
    graph = gs.import_onnx(model)
    result = get_pass("cleanup").run(graph, PassContext(options=options))
    graph.cleanup().toposort()
    out = gs.export_onnx(graph)
    out.ir_version = model.ir_version
    return out, result


@pytest.mark.parametrize("style", ["matmul", "gemm", "constant_node", "identity"])
@pytest.mark.parametrize("act", ["gelu", "erf_old", "tanh", "silu"])
def test_cleanup_keeps_outputs(act, style):
    model = models.mlp_model(act, style)
    cleaned, _ = _cleanup(model)
    for feed in models.feeds(model):
        np.testing.assert_allclose(models.run(cleaned, feed)[0], models.run(model, feed)[0], atol=1e-5, rtol=1e-5)


def test_cleanup_turns_constant_nodes_into_initializers_and_drops_identities():
    cleaned, result = _cleanup(models.mlp_model("relu", "identity"))
    assert result.stats["identities_removed"] == 4
    assert not [n for n in cleaned.graph.node if n.op_type in ("Identity", "Constant")]
    cleaned, result = _cleanup(models.mlp_model("relu", "constant_node"))
    assert result.stats["constant_nodes"] == 4
    assert not [n for n in cleaned.graph.node if n.op_type == "Constant"]


def test_folding_never_multiplies_factors_back():
    """MatMul(U, V) of two initializers would grow the model: it must stay factorized."""
    b = models.Builder()
    u, v = b.const(b.weight((models.D, 2))), b.const(b.weight((2, models.H)))
    y = b.op("MatMul", ["x", b.op("MatMul", [u, v])])
    cleaned, result = _cleanup(b.model("x", y, out_shape=("batch", "seq", models.H)))
    assert result.stats["folded"] == 0
    assert sum(n.op_type == "MatMul" for n in cleaned.graph.node) == 2


def test_folding_folds_a_transposed_constant():
    b = models.Builder()
    w = b.const(b.weight((models.H, models.D)))
    y = b.op("MatMul", ["x", b.op("Transpose", [w], perm=[1, 0])])
    model = b.model("x", y, out_shape=("batch", "seq", models.H))
    cleaned, result = _cleanup(model)
    assert result.stats["folded"] == 1
    assert [n.op_type for n in cleaned.graph.node] == ["MatMul"]
    feed = models.feeds(model)[0]
    np.testing.assert_allclose(models.run(cleaned, feed)[0], models.run(model, feed)[0], atol=1e-6)


def test_no_mlp_model_survives_cleanup_unchanged():
    model = models.no_mlp_model()
    cleaned, result = _cleanup(model)
    assert not result.changed
    assert [n.op_type for n in cleaned.graph.node] == [n.op_type for n in model.graph.node]


def test_unknown_option_is_a_clear_error():
    with pytest.raises(PassOptionError, match="has no option"):
        _cleanup(models.no_mlp_model(), bogus=1)


def test_folding_log_of_zero_gives_minus_infinity_quietly():
    """T5's relative-position buckets take log(0) on constants; the runtime gives -inf too, without a warning."""
    import warnings

    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Log", ["zeros"], ["logs"]), helper.make_node("Add", ["x", "logs"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        [onnx.numpy_helper.from_array(np.array([0.0, 1.0], np.float32), "zeros")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cleaned, _ = _cleanup(model)
    assert [n.op_type for n in cleaned.graph.node] == ["Add"]
    np.testing.assert_array_equal(models.run(cleaned, {"x": np.ones(2, np.float32)})[0], [-np.inf, 1.0])
