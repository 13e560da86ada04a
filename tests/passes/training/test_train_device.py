"""--train-device: choosing where torch training runs, and the view's weights, constants and feeds following it."""

import numpy as np
import pytest

import models

torch = pytest.importorskip("torch")

from edgec.passes.training import device  # noqa: E402
from edgec.passes.training.view import TorchView, to_torch_feed  # noqa: E402


@pytest.mark.parametrize("cuda, choice, expected", [(False, "auto", "cpu"), (False, "cpu", "cpu"), (True, "auto", "cuda"),
                                                    (True, "cuda", "cuda"), (True, "cpu", "cpu")])
def test_the_choice_resolves_to_what_is_there(monkeypatch, cuda, choice, expected):
    monkeypatch.setattr(device, "cuda_available", lambda: cuda)
    assert device.resolve_train_device(choice) == expected


def test_cuda_asked_for_and_absent_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(device, "cuda_available", lambda: False)
    with pytest.raises(device.TrainDeviceUnavailable, match="no CUDA GPU"):
        device.resolve_train_device("cuda")
    with pytest.raises(device.TrainDeviceUnavailable, match="choose one of"):
        device.resolve_train_device("tpu")


def test_weights_constants_and_feeds_follow_the_view_to_its_device():
    """'meta' stands in for a GPU on a CPU-only machine: every tensor of the forward pass must be there, or the
    first MatMul of a CPU feed with a moved weight fails."""
    model = models.mlp_model("relu", "matmul")
    view = TorchView(model, trainable=[model.graph.initializer[0].name])
    view.to_device("meta")
    assert all(p.device.type == "meta" and p.requires_grad for _, p in view.named_weights())
    assert all(c.device.type == "meta" for c in view.constants.values())
    feed = models.feeds(model, 1, seq=5)[0]
    with torch.no_grad():
        out = view(to_torch_feed(feed))[model.graph.output[0].name]
    assert out.device.type == "meta" and tuple(out.shape) == models.run(model, feed)[0].shape


def test_a_view_moved_back_to_the_cpu_computes_as_before():
    model = models.mlp_model("gelu", "gemm")
    feed = models.feeds(model, 1, seq=4)[0]
    view = TorchView(model).to_device("cpu")
    with torch.no_grad():
        got = view(to_torch_feed(feed))[model.graph.output[0].name].numpy()
    np.testing.assert_allclose(got, models.run(model, feed)[0], rtol=1e-4, atol=1e-5)
    assert device.describe("cpu") == "cpu"
