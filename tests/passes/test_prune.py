import numpy as np
import onnx_graphsurgeon as gs
import pytest

from edgec.passes import PassContext, PassOptionError, get_pass
from edgec.passes.mlp.discovery import find_mlps

import models
from calib import OrtCalibration, apply_pass, rel_err


def _prune(model, feeds, **options):
    return apply_pass("prune", model, feeds, **options)


_rel_err = rel_err


def test_keep_everything_is_exact():
    model = models.mlp_model("gelu")
    feeds = models.feeds(model, 6, seq=20)
    pruned, result = _prune(model, feeds, keep=1.0)
    assert not result.changed
    for f in feeds:
        np.testing.assert_allclose(models.run(pruned, f)[0], models.run(model, f)[0], atol=1e-5)


@pytest.mark.parametrize("style", ["matmul", "gemm", "constant_node", "identity"])
@pytest.mark.parametrize("act", ["gelu", "erf_new", "silu", "relu"])
def test_pruned_shapes_are_consistent(act, style):
    model = models.mlp_model(act, style, blocks=2)
    pruned, result = _prune(model, models.feeds(model, 6, seq=20), keep=0.5)
    assert result.changed and result.stats["hidden_after"] == models.H
    for block in find_mlps(gs.import_onnx(pruned)).blocks:
        assert block.hidden == models.H // 2
        assert block.fc1.weight.shape == (models.D, models.H // 2)
        assert block.fc2.weight.shape == (models.H // 2, models.D)
        assert block.fc1.bias.shape == (models.H // 2,) and block.fc2.bias.shape == (models.D,)


def test_compensation_lowers_the_error_on_held_out_inputs():
    model = models.mlp_model("gelu", residual=False, blocks=1)
    calib, held = models.feeds(model, 20, seed=1, seq=30), models.feeds(model, 8, seed=2, seq=30)
    errors = {c: _rel_err(model, _prune(model, calib, keep=0.5, compensate=c)[0], held) for c in (False, True)}
    assert errors[True] < 0.8 * errors[False]


def test_reported_error_matches_the_measured_calibration_error():
    model = models.mlp_model("relu", residual=False, blocks=1)
    calib = models.feeds(model, 10, seq=30)
    pruned, result = _prune(model, calib, keep=0.5)
    assert result.stats["rel_error"][0] == pytest.approx(_rel_err(model, pruned, calib), rel=1e-2, abs=1e-4)


def test_more_units_kept_means_less_error():
    model = models.mlp_model("gelu", residual=False, blocks=1)
    calib, held = models.feeds(model, 20, seq=30), models.feeds(model, 8, seed=5, seq=30)
    errs = [_rel_err(model, _prune(model, calib, keep=k)[0], held) for k in (0.25, 0.5, 0.75)]
    assert errs[0] > errs[1] > errs[2]


def test_global_scope_keeps_the_average_budget():
    model = models.mlp_model("gelu", blocks=3)
    _, result = _prune(model, models.feeds(model, 8, seq=20), keep=0.5, scope="global")
    assert abs(result.stats["hidden_after"] - 0.5 * 3 * models.H) <= 3 * 8


def test_shared_and_missing_blocks_are_notes_not_errors():
    model = models.shared_weight_model()
    pruned, result = _prune(model, models.feeds(model), keep=0.5)
    assert not result.changed and any("shared" in n for n in result.notes)
    _, result = _prune(models.no_mlp_model(), [], keep=0.5)
    assert not result.changed and "no MLP block to prune" in result.notes


def test_bad_options_are_errors():
    with pytest.raises(PassOptionError, match="keep"):
        _prune(models.mlp_model(), [], keep=0.0)
    with pytest.raises(PassOptionError, match="score"):
        _prune(models.mlp_model(), [], score="vibes")
    with pytest.raises(PassOptionError, match="scope must be one of layer, global, model"):
        _prune(models.mlp_model(), [], scope="everywhere")


def test_floor_search_finds_the_fewest_units_meeting_it():
    model = models.mlp_model("gelu", residual=False, blocks=2)
    feeds = models.feeds(model, 12, seq=20)
    seen = []

    def fidelity(graph):      # a stand-in probe: fidelity falls as units go
        hidden = find_mlps(graph).blocks[0].hidden
        seen.append(hidden)
        return hidden / models.H

    graph = gs.import_onnx(model)
    ctx = PassContext(calibration=OrtCalibration(feeds), fidelity=fidelity, options={"floor": 0.7})
    result = get_pass("prune").run(graph, ctx)
    assert result.changed and 0.7 <= result.stats["keep"] < 0.7 + 1 / 32 + 1e-9
    assert find_mlps(graph).blocks[0].hidden == int(np.ceil(models.H * result.stats["keep"]))
    assert len(seen) <= 6 and "chose" in result.notes[-1]


def test_gated_mlps_lose_the_same_units_from_gate_and_up():
    import onnx

    model = models.gated_mlp_model("silu", blocks=2)
    feeds = models.feeds(model, 48, seq=10)
    pruned, result = _prune(model, feeds, keep=0.5)
    assert result.changed
    onnx.checker.check_model(pruned)
    blocks = find_mlps(gs.import_onnx(pruned)).blocks
    assert len(blocks) == 2
    for block in blocks:
        assert block.hidden == models.H // 2 and block.up.out_features == models.H // 2
    # the units chosen and the least-squares compensation work as for plain MLPs
    calib, held = feeds[:40], feeds[40:]
    errors = {c: _rel_err(model, _prune(model, calib, keep=0.5, compensate=c)[0], held) for c in (False, True)}
    assert errors[True] < errors[False]
    assert _rel_err(model, _prune(model, calib, keep=0.75)[0], held) < errors[True]



@pytest.mark.parametrize("validate", ["off", "resolve", "ridge"])
def test_validation_gets_the_calibration_halves_only_when_asked(validate, monkeypatch):
    from edgec.passes.plans import prune as prune_plan

    seen, plan_block = [], prune_plan.plan_block

    def spy(*args, **kwargs):
        seen.append(args[9])                       # half: the even feeds' Gram, or None
        return plan_block(*args, **kwargs)

    monkeypatch.setattr(prune_plan, "plan_block", spy)
    model = models.mlp_model("gelu", residual=False, blocks=1)
    _prune(model, models.feeds(model, 6, seq=30), keep=0.5, validate=validate)
    assert len(seen) == 1 and (seen[0] is None) == (validate == "off")


def _scope_model(fidelity):
    model = models.mlp_model("gelu", residual=False, blocks=2)
    graph = gs.import_onnx(model)
    ctx = PassContext(calibration=OrtCalibration(models.feeds(model, 12, seq=20)), fidelity=fidelity,
                      options={"keep": 0.5, "scope": "model"})
    result = get_pass("prune").run(graph, ctx)
    return [b.hidden for b in find_mlps(graph).blocks], result


def test_model_scope_gives_units_to_the_block_the_outputs_miss_most():
    def fidelity(graph):      # a stand-in probe: the second block's units are worth four times the first's
        lost = [1 - b.hidden / models.H for b in find_mlps(graph).blocks]
        return 1 - 0.01 * lost[0] ** 2 - 0.04 * lost[1] ** 2

    hidden, result = _scope_model(fidelity)
    assert hidden[1] > models.H // 2 > hidden[0] and abs(sum(hidden) - models.H) <= 8
    assert any("chosen by the model's output fidelity: 0:" in n for n in result.notes)


def test_model_scope_keeps_the_uniform_keep_when_the_probe_prefers_it():
    def fidelity(graph):      # losses that do not add up: an uneven pair of blocks scores badly
        hidden = [b.hidden for b in find_mlps(graph).blocks]
        if max(hidden) < models.H and hidden[0] != hidden[1]:
            return 0.5
        lost = [1 - h / models.H for h in hidden]
        return 1 - 0.01 * lost[0] ** 2 - 0.04 * lost[1] ** 2

    hidden, result = _scope_model(fidelity)
    assert hidden == [models.H // 2] * 2 and any("kept it" in n for n in result.notes)
