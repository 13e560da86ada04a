"""Zeroth-order tuning of group affines (numpy + onnxruntime): it undoes a known per-group distortion."""

import numpy as np
import onnx_graphsurgeon as gs
import onnxruntime as ort
import pytest

from edgec.passes.recovery.shared import slots_for
from edgec.passes.recovery.sites import find_sites
from edgec.passes.recovery.tuning import tuning_model
from edgec.runtime.zo.steps import residual
from edgec.runtime.zo.tuner import SiteSlot, ZOSettings, group_index, tune

import models


def _pairs(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    name = model.graph.output[0].name
    return [(f, {name: sess.run([name], f)[0]}) for f in feeds]


def _problem(teacher, student, training_feeds: int):
    """The student's tuning graph (4 groups per site) in a session, training and held-out pairs, the output."""
    graph = gs.import_onnx(student)
    slots = slots_for(find_sites(graph, "linear"), 4)
    session = ort.InferenceSession(tuning_model(gs.export_onnx(graph), slots).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    train = _pairs(teacher, models.feeds(teacher, training_feeds, seed=1))
    return slots, session, train, _pairs(teacher, models.feeds(teacher, 4, seed=2)), teacher.graph.output[0].name


@pytest.mark.parametrize("optimizer, steps, model", [("gauss-newton", 150, "mlp"), ("spsa", 400, "mlp"),
                                                     ("gauss-newton", 150, "conv"), ("jacobian", 24, "mlp"),
                                                     ("jacobian", 24, "conv")])
def test_tuning_undoes_a_group_distortion(optimizer, steps, model):
    teacher, student = models.distorted_student(4, teacher=models.conv_model() if model == "conv" else None)
    slots, session, train, held, name = _problem(teacher, student, 8)
    settings = ZOSettings(minutes=5, optimizer=optimizer, max_steps=steps, eval_every=10, patience=1000,
                          lr=2e-3, epsilon=1e-3)
    result = tune(session, slots, train, held, [name], [name], settings)
    per_step = result.trainable + 1 if optimizer == "jacobian" else 2 * settings.queries
    assert result.forward_passes >= per_step * result.steps
    assert result.held_out_best > result.held_out_before + 0.2 * (1 - result.held_out_before)
    assert len(result.gammas) == len(slots) and all(len(g) == 4 for g in result.gammas)


def test_the_tuning_graph_at_identity_computes_the_model():
    model = models.mlp_model("relu")
    graph = gs.import_onnx(model)
    slots = slots_for(find_sites(graph, "linear"), 3)
    tuned = tuning_model(gs.export_onnx(graph), slots)
    feed = models.feeds(model, 1)[0]
    extra = {s.gamma: np.ones(s.channels, np.float32) for s in slots}
    extra.update({s.beta: np.zeros(s.channels, np.float32) for s in slots if s.beta})
    sess = ort.InferenceSession(tuned.SerializeToString(), providers=["CPUExecutionProvider"])
    name = model.graph.output[0].name
    np.testing.assert_array_equal(sess.run([name], {**feed, **extra})[0], models.run(model, feed)[0])
    assert len(sess.get_outputs()) == 1 + len(slots)       # the unmodulated site tensors, for their scale


def test_groups_are_contiguous_and_capped_at_the_channels():
    assert group_index(8, 4).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert group_index(3, 8).tolist() == [0, 1, 2]
    slot = SiteSlot("t", 16, 4, "g", None, "t/raw", "layer")
    assert SiteSlot.from_dict(slot.as_dict()) == slot


def test_the_residual_counts_real_tokens_only():
    target = np.ones((1, 3, 4))
    got = target.copy()
    got[0, 2] = 7.0                                   # a padding position
    feed = {"input_ids": np.zeros((1, 3), np.int64), "attention_mask": np.array([[1, 1, 0]])}
    assert not residual({"y": got}, (feed, {"y": target}), ["y"]).any()


def test_the_pooled_jacobian_rule_takes_no_step_that_lowers_the_search_score():
    teacher = models.mlp_model("relu")
    slots, session, train, held, name = _problem(teacher, teacher, 4)    # nothing to gain: θ must stay at 0
    result = tune(session, slots, train, held, [name], [name],
                  ZOSettings(minutes=0, optimizer="jacobian", max_steps=8, epsilon=1e-3))
    assert result.held_out_best == result.held_out_before
    assert all(g == 1.0 for gs_ in result.gammas for g in gs_) and all(b == 0.0 for bs in result.betas for b in bs)



def test_a_job_and_its_result_cross_the_device_boundary_as_json_unchanged():
    import json

    from edgec.runtime.zo.job import JobResult, ZOJob
    from edgec.runtime.zo.tuner import ZOResult

    slots = [SiteSlot(output="h", channels=6, groups=3, gamma="grasp/0/gamma", beta=None, raw="h/grasp_in",
                      label="fc1", shape=(1, 4, 6))]
    job = ZOJob(slots, ["y"], ZOSettings(minutes=0.0, max_steps=7, optimizer="spsa", seed=3), judged=["y"], batch=2,
                units=["y"])
    assert ZOJob.from_json(json.loads(json.dumps(job.to_json()))) == job
    assert ZOJob.from_json({"slots": [], "outputs": ["y"]}).batch == ZOJob.batch    # old jobs: the defaults
    result = JobResult(ZOResult(steps=7, forward_passes=28, gammas=[[1.0, 0.5, 2.0]], betas=[[0.0, 0.1, 0.0]]), 5, 3)
    assert JobResult.from_json(json.loads(json.dumps(result.to_json()))) == result


def test_the_tuner_scores_a_probability_by_construction_on_the_unit_interval():
    from edgec.runtime.zo.tuner import score

    rng = np.random.default_rng(0)
    refs = [rng.uniform(0.0, 1e-3, (1, 4)).astype(np.float32) for _ in range(3)]   # a quiet spotter's scores
    held = [({"x": np.zeros(1)}, {"p": r}) for r in refs]
    gots = [{"p": r + 2e-4} for r in refs]
    assert score(gots, held, ["p"], ["p"]) < 0.9                  # 2e-4 is a fifth of the range the feeds show
    assert score(gots, held, ["p"], ["p"], frozenset({"p"})) > 0.999   # … and nothing on the unit interval
