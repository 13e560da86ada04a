"""--goal parsing and scoring."""

import pytest

from edgec.compiler.errors import InputError
from edgec.compiler.goal.driver import Goal, candidates, parse_goal
from edgec.compiler.report.compile_report import CompileReport, ModelSummary


def _report(ratio, p50, before, after):
    r = CompileReport("m.onnx", None, "x86", [], [])
    r.before, r.after = ModelSummary(1, 1, before, {}), ModelSummary(1, 1, after, {})
    r.latency = {"ratio_p50": ratio, "compiled": {"p50_ms": p50}}
    return r


@pytest.mark.parametrize("text,goal", [("speedup=2", Goal("speedup", 2.0)), ("latency=10ms", Goal("latency", 10.0)),
                                       ("size = 0.5", Goal("size", 0.5)), ("speedup=1.5x", Goal("speedup", 1.5))])
def test_goals_parse(text, goal):
    assert parse_goal(text) == goal


@pytest.mark.parametrize("text", ["faster=yes", "size=2", "speedup=0", "latency=-1ms"])
def test_bad_goals_are_input_errors(text):
    with pytest.raises(InputError):
        parse_goal(text)


def test_each_goal_scores_its_own_quantity():
    report = _report(ratio=0.5, p50=4.0, before=100, after=60)
    assert Goal("speedup", 2).met(report) and not Goal("speedup", 2.5).met(report)
    assert Goal("latency", 5).met(report) and not Goal("latency", 3).met(report)
    assert Goal("size", 0.6).met(report) and not Goal("size", 0.5).met(report)
    assert Goal("speedup", 2).describe(report) == "2.00× faster"


def test_candidates_run_from_conservative_to_aggressive():
    labels = [label for label, _, _ in candidates(0.995)]
    assert labels[0] == "cleanup" and labels[-1] == "heads keep 0.75 + prune keep 0.5 + int8"


def test_user_pass_options_lie_over_every_candidate_that_runs_the_pass():
    from edgec.compiler.goal.trials import merged_options as _merged

    merged = _merged({"prune": {"floor": 0.995}}, {"prune": {"score": "energy"}, "quantize": {"mode": "static"},
                                                   "recover": {"lr": 1e-3}}, ["cleanup", "prune"])
    assert merged == {"prune": {"floor": 0.995, "score": "energy"}, "recover": {"lr": 1e-3}}


def test_the_fused_int8_graph_is_a_candidate_for_transformers_only():
    assert ("fuse + int8", ["cleanup", "fuse", "quantize", "embed", "weights"], {}) in candidates(0.995)
    assert not any("fuse" in passes for _, passes, _ in candidates(0.995, convolutional=True, transformer=False))
    assert not any("fuse" in passes for _, passes, _ in candidates(0.995, fused=False))      # mobile targets


def test_learned_selection_is_a_candidate_only_with_a_training_budget():
    assert not any("gates" in passes for _, passes, _ in candidates(0.995))
    assert any("gates" in passes for _, passes, _ in candidates(0.995, training=True))


def test_a_gates_candidate_splits_its_budget_between_the_gates_and_recovery(tmp_path):
    from types import SimpleNamespace

    from edgec.compiler.driver import CompileOptions
    from edgec.compiler.goal.trials import Trial

    gates = ("gates", ["cleanup", "gates"], {"gates": {"keep": 0.5}})
    trial = SimpleNamespace(options=CompileOptions(recover_minutes=10), steps=False, target=None)
    job = Trial._job(trial, gates, 6.0)
    assert job.options.recover_minutes == 3.0 and job.options.pass_options["gates"] == {"keep": 0.5, "minutes": 3.0}
    trial = SimpleNamespace(options=CompileOptions(recover_steps=100), steps=True, target=None)
    job = Trial._job(trial, gates, 50.0)
    assert job.options.recover_steps == 25 and job.options.pass_options["gates"] == {"keep": 0.5, "steps": 25}


def test_the_most_faithful_candidate_meeting_the_goal_wins_and_else_the_closest():
    from types import SimpleNamespace

    from edgec.compiler.goal.driver import choose

    def result(name, cosine, ratio):
        return SimpleNamespace(point={"pipeline": name, "cosine": cosine},
                               report=SimpleNamespace(latency={"ratio_p50": ratio}))

    goal = Goal("speedup", 1.25)                                  # ratio ≤ 0.8
    near_equal = [result("int8", 0.995, 0.74), result("prune + int8", 0.993, 0.72), result("more", 0.991, 0.60)]
    assert choose(near_equal, goal).point["pipeline"] == "int8"
    tie = [result("a", 0.99, 0.7), result("b", 0.99, 0.5)]
    assert choose(tie, goal).point["pipeline"] == "a"            # the earlier, more conservative one
    none = [result("a", 0.999, 0.95), result("b", 0.995, 0.85)]
    assert choose(none, goal).point["pipeline"] == "b"           # closest to the goal


def test_convolution_width_is_a_candidate_only_for_models_with_convolutions(tmp_path):
    import onnx

    from edgec.compiler.goal.driver import has_convolutions

    import models

    assert not any("channels" in passes for _, passes, _ in candidates(0.995))
    widths = [(label, passes) for label, passes, _ in candidates(0.995, convolutional=True) if "channels" in passes]
    assert len(widths) == 4 and any("quantize" in passes for _, passes in widths)   # 5 with training
    onnx.save(models.wide_cnn_model(), str(tmp_path / "cnn.onnx"))
    onnx.save(models.mlp_model("gelu"), str(tmp_path / "mlp.onnx"))
    assert has_convolutions(tmp_path / "cnn.onnx") and not has_convolutions(tmp_path / "mlp.onnx")


def test_a_model_without_mlp_or_attention_blocks_gets_no_unit_or_head_candidates(tmp_path):
    import onnx

    from edgec.compiler.goal.driver import has_transformer_blocks

    import models

    onnx.save(models.wide_cnn_model(), str(tmp_path / "cnn.onnx"))
    onnx.save(models.mlp_model("gelu"), str(tmp_path / "mlp.onnx"))
    assert has_transformer_blocks(tmp_path / "mlp.onnx") and not has_transformer_blocks(tmp_path / "cnn.onnx")
    labels = [label for label, _, _ in candidates(0.995, training=True, convolutional=True, transformer=False)]
    assert labels[:2] == ["cleanup", "int8"] and all(label.startswith("channels") for label in labels[2:])
    assert "channels keep 0.35 + int8" in labels          # a deeper cut, only with training
    assert "channels keep 0.35 + int8" not in [label for label, _, _ in candidates(0.995, convolutional=True)]
