"""Backprop GRASP's hooks on the torch view compute what the tuning graph (and so the fold) computes."""

import numpy as np
import onnx_graphsurgeon as gs
import onnxruntime as ort
import pytest

from edgec.passes.recovery.shared import slots_for
from edgec.passes.recovery.sites import find_sites
from edgec.passes.recovery.tuning import tuning_model
from edgec.runtime.zo.tuner import group_index

import models

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("model", ["mlp", "conv"])
def test_hooks_match_the_tuning_graph(model):
    from edgec.passes.recovery.group_affines import _install_hooks
    from edgec.passes.training.view import TorchView, to_torch_feed

    onnx_model = models.conv_model() if model == "conv" else models.mlp_model("gelu")
    graph = gs.import_onnx(onnx_model)
    sites = find_sites(graph, "linear")
    view = TorchView(onnx_model, trainable=[])
    scales = [0.5 + i for i in range(len(sites))]
    params = _install_hooks(view, sites, scales, 3)
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for p in params.values():
            p.copy_(torch.from_numpy(rng.normal(0, 0.2, p.shape).astype(np.float32)))
    slots = slots_for(sites, 3)
    extra = {}
    for i, (site, slot) in enumerate(zip(sites, slots, strict=True)):
        index = group_index(site.channels, slot.groups)
        extra[slot.gamma] = (1 + params[f"g{i}"].detach().numpy()[index]).reshape(site.shape).astype(np.float32)
        if slot.beta:
            extra[slot.beta] = (scales[i] * params[f"b{i}"].detach().numpy()[index]).reshape(site.shape).astype(np.float32)
    feed = models.feeds(onnx_model, 1)[0]
    name = onnx_model.graph.output[0].name
    session = ort.InferenceSession(tuning_model(gs.export_onnx(graph), slots).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    expected = session.run([name], {**feed, **extra})[0]
    with torch.no_grad():
        got = view(to_torch_feed(feed))[name].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert np.abs(got - models.run(onnx_model, feed)[0]).max() > 1e-2
