"""The distillation loop's schedule, parameter groups and focus, on small random MLP models."""

import numpy as np
import onnx
import pytest

import models

torch = pytest.importorskip("torch")

from edgec.compiler.calibration.feeds import FeedSet  # noqa: E402
from edgec.compiler.reference import Reference, Teacher  # noqa: E402
from edgec.passes.graph_tools import changed_initializers  # noqa: E402
from edgec.passes.training.distill import DistillSettings, distill  # noqa: E402
from edgec.passes.training.view import TorchView  # noqa: E402
from edgec.runtime.session import SessionConfig, create_session  # noqa: E402


def _perturbed(model: onnx.ModelProto, names: set[str], scale: float = 0.7) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for init in out.graph.initializer:
        if init.name in names:
            init.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(init) * scale, init.name))
    return out


def _fc2_weights(model: onnx.ModelProto) -> set[str]:
    matmuls = [n for n in model.graph.node if n.op_type == "MatMul"]
    return {n.input[1] for n in matmuls[1::2]}


def test_rewritten_weights_are_the_initializers_compression_changed_or_created():
    original = models.mlp_model("gelu", blocks=2)
    student = _perturbed(original, _fc2_weights(original))
    student.graph.initializer.append(onnx.numpy_helper.from_array(np.ones(3, np.float32), "new_factor"))
    assert changed_initializers(student, original) == _fc2_weights(original) | {"new_factor"}


def _teacher(model: onnx.ModelProto, judged=None) -> Teacher:
    feeds = models.feeds(model, 24, seq=6)      # trained on the last 20, early stopping scores the first 4
    session = create_session(model.SerializeToString(), SessionConfig())
    feed_set = FeedSet("test", feeds, fit=feeds[4:], search=feeds[:4], held_out=feeds[:4])
    return Reference(model, SessionConfig(), session, feed_set, judged=judged).teacher()


def test_with_train_rest_off_only_the_rewritten_weights_learn():
    original = models.mlp_model("gelu", blocks=2)
    rewritten = _fc2_weights(original)
    view = TorchView(_perturbed(original, rewritten))
    before = {name: p.detach().clone() for name, p in view.named_weights()}
    settings = DistillSettings(minutes=0.02, lr=1e-3, rewritten_lr=10, warmup=0.1, eval_every=5, batch=1,
                               rewritten=frozenset(rewritten), train_rest=False)
    result = distill(view, _teacher(original), [original.graph.output[0].name], [], settings)
    assert result.steps > 5 and result.held_out_best > result.held_out_before
    for name, p in view.named_weights():
        changed = not torch.equal(p.detach(), before[name])
        assert changed == (name in rewritten), name


def test_nothing_to_train_is_a_clear_error():
    original = models.mlp_model("gelu", blocks=1)
    settings = DistillSettings(minutes=0.01, train_rest=False)
    with pytest.raises(ValueError, match="no weight to train"):
        distill(TorchView(original), _teacher(original), [original.graph.output[0].name], [], settings)


def test_layer_matching_follows_the_mlp_output_into_the_residual_stream():
    import onnx_graphsurgeon as gs

    from edgec.passes.mlp.discovery import editable_blocks
    from edgec.passes.recovery.shared import matched_tensor

    graph = gs.import_onnx(models.mlp_model("gelu", blocks=2))
    block = editable_blocks(graph)[0]
    assert matched_tensor(block.fc2.y, "mlp") is block.fc2.y
    residual = matched_tensor(block.fc2.y, "layer")
    assert [n.op for n in residual.inputs] == ["Add"] and block.fc2.y in residual.inputs[0].inputs


def test_early_stopping_scores_the_judged_outputs_only():
    from edgec.passes.training.distill import _judged

    scores = {"sentence_embedding": 0.95, "last_hidden_state": 0.90}
    assert _judged(scores, ("sentence_embedding",)) == 0.95
    assert _judged(scores, ()) == 0.90                         # nothing judged: the worst output


def test_sparse_weights_keep_their_zeros_while_training():
    original = models.mlp_model("gelu", blocks=2)
    fc2 = _fc2_weights(original)
    student = onnx.ModelProto()
    student.CopyFrom(original)
    for init in student.graph.initializer:
        if init.name in fc2:
            w = onnx.numpy_helper.to_array(init).copy()
            w[:, ::2] = 0                                            # half the weights are exact zeros
            init.CopyFrom(onnx.numpy_helper.from_array(w, init.name))
    view = TorchView(student)
    settings = DistillSettings(minutes=0.02, lr=1e-3, eval_every=5, batch=1, rewritten=frozenset(fc2))
    distill(view, _teacher(original), [original.graph.output[0].name], [], settings)
    for name, p in view.named_weights():
        if name in fc2:
            w = p.detach().numpy()
            assert (w[:, ::2] == 0).all() and (w[:, 1::2] != 0).all()


def test_norms_matching_adds_every_layer_normalization_output():
    import onnx_graphsurgeon as gs

    from edgec.passes.recovery.shared import intermediates

    b = models.Builder(opset=20)
    normed = b.op("LayerNormalization", ["x", b.const(np.ones(models.D)), b.const(np.zeros(models.D))], axis=-1)
    hidden = models.activation(b, models.linear(b, normed, models.D, models.H), "gelu")
    y = b.op("Add", ["x", models.linear(b, hidden, models.H, models.D)])
    graph = gs.import_onnx(b.model("x", b.op("Relu", [y])))

    class Everything:
        def has_tensor(self, name):
            return True

    layer = intermediates(graph, "layer", ["out"], Everything())
    assert layer == [y]
    assert intermediates(graph, "norms", ["out"], Everything()) == [y, normed]
    assert intermediates(graph, "none", ["out"], Everything()) == []



def test_an_int8_tail_trains_and_scores_through_int8_rounding_then_leaves_the_view_float():
    original = models.mlp_model("relu", blocks=2)
    view = TorchView(_perturbed(original, _fc2_weights(original)))
    settings = DistillSettings(minutes=0.03, lr=1e-3, eval_every=5, patience=1, batch=1, int8_tail=0.5)
    result = distill(view, _teacher(original), [original.graph.output[0].name], [], settings)
    assert result.int8_from_step is not None and 0 < result.int8_from_step < result.steps
    assert any(point.get("int8") for point in result.curve)             # the switch is on the curve
    assert result.held_out_best >= result.held_out_int8_start            # the best int8 weights are kept
    assert view.int8 is None                                              # the written-back model is float


def test_the_int8_tail_starts_from_the_float_phase_even_before_its_first_evaluation():
    from edgec.passes.training.distill import _scores

    original = models.mlp_model("relu", blocks=2)
    student, teacher, output = _perturbed(original, _fc2_weights(original)), _teacher(original), original.graph.output[0].name
    untrained = TorchView(student)
    untrained.int8 = False
    held = [(f, teacher.run(f, [output])) for f in teacher.search_feeds]
    untrained_int8 = _scores(untrained, held, [output], teacher)[output]
    settings = DistillSettings(minutes=0.1, lr=1e-3, eval_every=10_000, batch=1, int8_tail=0.3)   # steps enough on a busy machine
    result = distill(TorchView(student), teacher, [output], [], settings)
    assert result.curve[1]["steps"] == result.int8_from_step > 0      # no float evaluation came before the switch
    assert result.held_out_int8_start > untrained_int8 + 0.01          # yet int8 starts from the trained weights


def test_the_rewritten_weights_learn_faster_only_when_they_are_the_minority():
    from edgec.passes.training.distill import _groups

    model = models.mlp_model("gelu", blocks=2)
    view = TorchView(model)
    names = [name for name, _ in view.named_weights()]
    few = DistillSettings(minutes=1, lr=1e-4, rewritten_lr=5, rewritten=frozenset(_fc2_weights(model)))
    assert sorted(g["peak"] for g in _groups(view, few)) == pytest.approx([1e-4, 5e-4])
    most = DistillSettings(minutes=1, lr=1e-4, rewritten_lr=5, rewritten=frozenset(names))     # a width-pruned CNN
    assert [g["peak"] for g in _groups(view, most)] == pytest.approx([1e-4])
