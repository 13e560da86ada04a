import numpy as np
import onnx
import pytest

import models

torch = pytest.importorskip("torch")

from edgec.passes.training.view import TorchView, UnsupportedGraph, to_torch_feed  # noqa: E402


def _rel(a, b) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("act, style", [("gelu", "matmul"), ("erf_new", "gemm"), ("tanh", "constant_node"),
                                        ("silu", "identity"), ("relu", "matmul"), ("hardswish", "gemm")])
def test_view_matches_onnx_runtime_and_write_back_is_exact(act, style):
    model = models.mlp_model(act, style)
    view = TorchView(model)
    assert view.trainable                                       # the MLP weights became parameters
    for feed in models.feeds(model, 3, seq=7):
        ref = models.run(model, feed)[0]
        with torch.no_grad():
            got = view(to_torch_feed(feed))[model.graph.output[0].name].numpy()
        assert _rel(got, ref) < 1e-5
        back = view.write_back()
        assert [n.op_type for n in back.graph.node] == [n.op_type for n in model.graph.node]
        np.testing.assert_allclose(models.run(back, feed)[0], ref, atol=1e-5)


def test_trained_values_are_written_back_into_the_same_initializers():
    model = models.mlp_model("gelu")
    view = TorchView(model)
    with torch.no_grad():
        for p in view.weights.values():
            p.mul_(0.5)
    back = view.write_back()
    before = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    after = {i.name: onnx.numpy_helper.to_array(i) for i in back.graph.initializer}
    assert before.keys() == after.keys()
    changed = [n for n in view.trainable if not np.allclose(before[n], after[n])]
    assert changed == view.trainable


def test_an_operator_the_view_lacks_is_reported():
    b = models.Builder()
    y = b.op("Hardmax", ["x"])
    with pytest.raises(UnsupportedGraph, match="Hardmax"):
        TorchView(b.model("x", y))
