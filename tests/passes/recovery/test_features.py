"""Conv feature maps a width-pruned CNN is taught to match, and the distillation that uses them."""

import numpy as np
import onnx_graphsurgeon as gs
import pytest

import models
from calib import apply_pass

torch = pytest.importorskip("torch")

from edgec.compiler.calibration.feeds import FeedSet  # noqa: E402
from edgec.compiler.reference import Reference  # noqa: E402
from edgec.passes.recovery.features import conv_feature_maps  # noqa: E402
from edgec.passes.training.distill import DistillSettings, distill, distill_loss, feature_loss  # noqa: E402
from edgec.passes.training.view import TorchView, to_torch_feed  # noqa: E402
from edgec.runtime.session import SessionConfig, create_session  # noqa: E402


def _image_feeds(count: int, seed: int = 1) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal((2, 3, 16, 16)).astype(np.float32)} for _ in range(count)]


def _teacher(model, feeds):
    session = create_session(model.SerializeToString(), SessionConfig())
    feed_set = FeedSet("test", feeds, fit=feeds[4:], search=feeds[:4], held_out=feeds[:4])
    return Reference(model, SessionConfig(), session, feed_set).teacher()


def _pruned(count: int = 16):
    original = models.wide_cnn_model()
    feeds = _image_feeds(count)
    pruned, result = apply_pass("channels", original, feeds[:16], keep=0.5, scope="layer", multiple=1)
    assert result.changed
    return original, pruned, feeds


def test_narrowed_maps_match_the_teacher_channels_they_were_cut_from():
    original, pruned, feeds = _pruned()
    maps = conv_feature_maps(gs.import_onnx(pruned), TorchView(pruned), _teacher(original, feeds), exclude=[])
    narrowed = {k: v for k, v in maps.items() if v is not None}
    assert narrowed     # (every Conv of this CNN is narrowed; its consumer at full width is the Gemm)
    convs = {n.output[0]: n for n in pruned.graph.node if n.op_type == "Conv"}
    weights = {i.name: i for i in pruned.graph.initializer}
    for name, index in narrowed.items():
        assert len(index) == weights[convs[name].input[1]].dims[0]      # one teacher channel per student channel
        assert len(set(index.tolist())) == len(index)
    # the first Conv is narrowed but computes exact copies of the kept channels: its index is where they were
    first = next(n for n in pruned.graph.node if n.op_type == "Conv").output[0]
    assert first in narrowed and np.all(np.diff(narrowed[first]) > 0)


def test_an_unchanged_model_has_no_feature_maps_to_match():
    original = models.wide_cnn_model()
    feeds = _image_feeds(8)
    assert conv_feature_maps(gs.import_onnx(original), TorchView(original), _teacher(original, feeds), []) == {}


def test_distillation_with_feature_maps_brings_the_narrowed_features_to_the_teachers():
    original, pruned, feeds = _pruned(count=100)       # random images: fewer are memorized
    teacher = _teacher(original, feeds)
    view = TorchView(pruned)
    output = original.graph.output[0].name
    settings = DistillSettings(minutes=0.0, steps=80, lr=1e-3, eval_every=20, patience=10, batch=4, warmup=0.1)
    settings.features = conv_feature_maps(gs.import_onnx(pruned), view, teacher, [output])
    names = list(settings.features)

    def features_error() -> float:
        feed = feeds[0]
        with torch.no_grad():
            got = view(to_torch_feed(feed), names)
        return feature_loss(got, dict(zip(names, teacher.run(feed, names), strict=True)), settings.features).item()

    before = features_error()
    result = distill(view, teacher, [output], [], settings)
    assert result.held_out_best > result.held_out_before and features_error() < before


def test_feature_loss_is_zero_on_the_matched_channels_and_averages_over_maps():
    t = np.random.default_rng(0).standard_normal((2, 6, 4, 4)).astype(np.float32)
    got = {"a": torch.from_numpy(t[:, [1, 4]]), "b": torch.from_numpy(t)}
    target = {"a": t, "b": t}
    assert feature_loss(got, target, {"a": np.array([1, 4]), "b": None}).item() == pytest.approx(0.0, abs=1e-7)
    got["b"] = torch.zeros_like(got["b"])
    assert feature_loss(got, target, {"a": np.array([1, 4]), "b": None}).item() == pytest.approx(0.5, rel=1e-5)


def test_probability_outputs_are_distilled_by_kl_as_well():
    probs = torch.tensor([[0.97, 0.01, 0.01, 0.01]])
    flat = torch.tensor([[0.94, 0.02, 0.02, 0.02]])
    with_kl = distill_loss({"p": flat}, {"p": probs.numpy()}, ["p"], [], 1.0, None).item()
    scores = flat.numpy() * 3.0             # not a distribution: cosine and MSE only
    without = distill_loss({"p": flat * 3.0}, {"p": scores}, ["p"], [], 1.0, None).item()
    assert without == pytest.approx(0.0, abs=1e-6) and with_kl > 0.005

