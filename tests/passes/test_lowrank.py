import numpy as np
import onnx_graphsurgeon as gs
import pytest

from edgec.passes import PassContext, get_pass
from edgec.passes.mlp.discovery import find_mlps
from edgec.passes.plans import lowrank as plan

import models
from calib import OrtCalibration, apply_pass, rel_err


def _lowrank(model, feeds, **options):
    return apply_pass("lowrank", model, feeds, **options)


_rel_err = rel_err


@pytest.mark.parametrize("style", ["matmul", "gemm"])
def test_full_rank_is_exact(style):
    model = models.mlp_model("gelu", style)
    feeds = models.feeds(model, 6, seq=20)
    out, result = _lowrank(model, feeds, rank=10**6)
    assert result.stats["factorized"] == 4
    for f in feeds:
        np.testing.assert_allclose(models.run(out, f)[0], models.run(model, f)[0], atol=1e-5)


def test_factorization_is_activation_first():
    model = models.mlp_model("relu", blocks=1)
    out, result = _lowrank(model, models.feeds(model, 6, seq=20), params=0.5, max_rank_ratio=1.0)
    matmuls = [n for n in out.graph.node if n.op_type == "MatMul"]
    initializers = {i.name for i in out.graph.initializer}
    assert len(matmuls) == 4 and result.stats["factorized"] == 2
    assert all(n.input[0] not in initializers for n in matmuls)   # never MatMul(U, V) of two constants


def test_data_aware_beats_plain_svd_at_equal_rank():
    model = models.mlp_model("gelu", residual=False, blocks=1)
    calib, held = models.feeds(model, 20, seq=30), models.feeds(model, 8, seed=9, seq=30)
    errs = {m: _rel_err(model, _lowrank(model, calib, params=0.4, method=m, max_rank_ratio=1.0)[0], held)
            for m in ("svd", "whitened")}
    assert errs["whitened"] < errs["svd"]


def test_whitened_factors_are_the_layer_output_optimum():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 12)) @ rng.standard_normal((12, 12)) + 0.5
    w, b = rng.standard_normal((12, 8)), rng.standard_normal(8)
    aug = np.concatenate([x, np.ones((500, 1))], axis=1)
    spec = plan.spectrum(w, aug.T @ aug, 500, "whitened")
    a, bb, bias = plan.factors(w, b, spec, 3, plan.centered_covariance(aug.T @ aug, 500)[1])
    err = np.linalg.norm(x @ a @ bb + bias - (x @ w + b))
    xc = x - x.mean(0)                                  # Eckart–Young on the centered outputs
    u, s, vt = np.linalg.svd(xc @ w, full_matrices=False)
    assert err == pytest.approx(np.sqrt((s[3:] ** 2).sum()), rel=1e-6)
    assert spec.rel_error(3) == pytest.approx(np.sqrt((s[3:] ** 2).sum() / (s ** 2).sum()), rel=1e-6)


def test_allocation_respects_budget_multiple_and_break_even():
    rng = np.random.default_rng(1)
    specs = [plan.spectrum(rng.standard_normal((64, 256)), None, 0, "svd") for _ in range(3)]
    ranks = plan.allocate(specs, 0.3, 8)
    assert all(r % 8 == 0 for r in ranks)
    assert sum(r * (64 + 256) for r in ranks) <= 0.3 * 3 * 64 * 256        # never over the budget
    assert all(r <= plan.break_even(s) for r, s in zip(ranks, specs, strict=True))
    assert 0 < plan.effective_rank(specs[0]) < 64


def test_speed_mode_keeps_large_ranks_dense():
    model = models.mlp_model("gelu", blocks=1)
    _, result = _lowrank(model, models.feeds(model, 6, seq=20), params=0.9)
    assert result.stats["dense"] == 2 and not result.changed
    assert all("saves too little time" in n for n in result.notes)


def test_no_mlp_is_a_note():
    _, result = _lowrank(models.no_mlp_model(), [], params=0.5)
    assert not result.changed and result.notes == ["no MLP block to factorize"]
    assert not find_mlps(gs.import_onnx(models.no_mlp_model())).blocks


def test_refinement_lowers_block_error_and_keeps_structure():
    pytest.importorskip("torch")
    model = models.mlp_model("gelu", residual=False, blocks=1)
    calib = models.feeds(model, 12, seq=30)
    graph = gs.import_onnx(model)

    class Capture(OrtCalibration):
        def activations(self, graph, names, max_rows=None):
            import onnx
            import onnxruntime as ort

            m = gs.export_onnx(graph)
            m.ir_version = 8
            have = {o.name for o in m.graph.output}
            m.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in have)
            sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
            return {n: np.concatenate([sess.run([n], f)[0].reshape(-1, sess.run([n], f)[0].shape[-1])
                                       for f in self.feeds]).astype(float) for n in names}

    ctx = PassContext(calibration=Capture(calib), options={"rank": 4, "refine_steps": 200})
    result = get_pass("lowrank").run(graph, ctx)
    refined = result.stats["refined"][0]
    assert refined["rel_error_after"] < refined["rel_error_before"]
    assert sum(n.op == "MatMul" for n in graph.nodes) == 4
