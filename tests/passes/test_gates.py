"""The gates pass: retention gates trained with the model choose MLP units and heads; the cut graph computes
what the trained, masked model computed."""

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest

from edgec.compiler.calibration.feeds import FeedSet
from edgec.compiler.reference import Reference
from edgec.passes import PassContext, PassOptionError, get_pass
from edgec.passes.attention.discovery import find_attention
from edgec.passes.mlp.discovery import find_mlps
from edgec.runtime.session import SessionConfig, create_session

import models

pytest.importorskip("torch")


def _teacher(model: onnx.ModelProto):
    feeds = models.feeds(model, 24, seq=6)
    session = create_session(model.SerializeToString(), SessionConfig())
    feed_set = FeedSet("test", feeds, fit=feeds[4:], search=feeds[:4], held_out=feeds[:4])
    return Reference(model, SessionConfig(), session, feed_set).teacher()


def _run(model, **options):
    from calib import OrtCalibration

    graph = gs.import_onnx(model)
    ctx = PassContext(teacher=_teacher(model), calibration=OrtCalibration(models.feeds(model, 6, seq=6)),
                      options={"minutes": 0.05, **options})
    return graph, get_pass("gates").run(graph, ctx)


def test_mlp_units_leave_where_the_gates_say_and_the_cut_is_exact():
    model = models.mlp_model("gelu", blocks=2)
    graph, result = _run(model, keep=0.5, min_keep=0.25)
    assert result.changed, result.notes
    hidden = [b.hidden for b in find_mlps(graph).blocks]
    assert sum(hidden) == models.H and all(h >= models.H // 4 for h in hidden)
    assert result.stats["cut_rel_error"] <= 1e-3 and result.stats["steps"] > 0
    onnx.checker.check_model(gs.export_onnx(graph))


def test_heads_are_gated_too():
    model = models.attention_model(blocks=2, heads=4)
    graph, result = _run(model, keep=1.0, heads=0.5)
    assert result.changed, result.notes
    heads = [b.heads for b in find_attention(graph).blocks]
    assert sum(heads) == 4 and all(h >= 1 for h in heads)
    assert result.stats["cut_rel_error"] <= 1e-3


def test_heads_that_cannot_be_cut_exactly_are_not_gated():
    model = models.attention_model(blocks=2, heads=4, head_bias=True)
    graph, result = _run(model, keep=1.0, heads=0.5)
    assert not result.changed and sum(b.heads for b in find_attention(graph).blocks) == 8
    assert sum("not gated" in n for n in result.notes) == 2


def test_the_torch_view_is_left_without_hooks(monkeypatch):
    from edgec.passes.training import view as view_module

    views = []
    original = view_module.TorchView.__init__

    def remember(self, *args, **kwargs):
        original(self, *args, **kwargs)
        views.append(self)

    monkeypatch.setattr(view_module.TorchView, "__init__", remember)
    _run(models.attention_model(blocks=1, heads=4), keep=1.0, heads=0.5)
    assert views and all(not v.hooks for v in views)


def test_nothing_to_gate_is_a_no_op():
    _, result = _run(models.mlp_model(), keep=1.0)
    assert not result.changed and "no MLP block" in result.notes[0]


@pytest.mark.parametrize("options", [{"keep": 0}, {"heads": 1.5}, {"minutes": 0}, {"soft": 1.0}])
def test_bad_options_are_refused(options):
    with pytest.raises(PassOptionError):
        _run(models.mlp_model(), **options)


def test_allocation_takes_the_highest_logits_across_blocks():
    from edgec.passes.training.gates import allocate

    betas = [np.array([5.0, 4.0, -1.0, -2.0]), np.array([3.0, -3.0, -4.0, -5.0])]
    assert allocate(betas, 0.5, 0.25) == [3, 1]
    assert allocate(betas, 0.25, 0.25) == [1, 1]


def test_convolution_channels_are_gated_per_group_and_the_cut_is_exact():
    from edgec.passes.conv.discovery import find_channel_groups

    model = models.wide_cnn_model()
    before = sum(g.channels for g in find_channel_groups(gs.import_onnx(model))[0])
    graph, result = _run(model, keep=1.0, channels=0.5, multiple=8, steps=40, soft=0.5)
    assert result.changed, result.notes
    assert result.stats["cut_rel_error"] <= 1e-3
    kept = [int(k.split("/")[0]) for k in result.stats["kept"].values()]
    assert all(k % 8 == 0 and k >= 8 for k in kept) and sum(kept) < before
    assert "convolution channels" in result.notes[-1]
    onnx.checker.check_model(gs.export_onnx(graph))
    feed = models.feeds(model, 1)[0]
    assert models.run(gs.export_onnx(graph), feed)[0].shape == models.run(model, feed)[0].shape
