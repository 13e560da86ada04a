"""GRASP sites: every kind folds exactly what the tuning graph computes, and the graph keeps its ops."""

import collections

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import onnxruntime as ort
import pytest

from edgec.passes.recovery.affines import Affine, fold, trainable_count
from edgec.passes.recovery.forward_only import step_rule
from edgec.passes.recovery.shared import slots_for
from edgec.passes.recovery.sites import find_sites
from edgec.passes.recovery.tuning import tuning_model

import models


def _session(model: onnx.ModelProto):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _random_affines(sites, groups, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for s in sites:
        k = min(groups, s.channels)
        out.append(Affine(1 + rng.normal(0, 0.2, k), rng.normal(0, 0.2, k) if s.shifts else np.zeros(k)))
    return out


def _fold_matches_tuning_graph(model: onnx.ModelProto, norms=False, groups=4, tolerance=1e-5):
    graph = gs.import_onnx(model)
    sites = find_sites(graph, "linear", norms)
    assert sites
    slots = slots_for(sites, groups)
    tuning = _session(tuning_model(gs.export_onnx(graph), slots))
    affines = _random_affines(sites, groups)
    feed = models.feeds(model, 1)[0]
    extra = {}
    for slot, site, affine in zip(slots, sites, affines, strict=True):
        gamma, beta = affine.per_channel(site.channels)
        extra[slot.gamma] = gamma.astype(np.float32).reshape(slot.feed_shape)
        if slot.beta:
            extra[slot.beta] = beta.astype(np.float32).reshape(slot.feed_shape)
    name = model.graph.output[0].name
    expected = tuning.run([name], {**feed, **extra})[0]
    before = models.run(model, feed)[0]
    for site, affine in zip(sites, affines, strict=True):
        fold(site, affine)
    folded = gs.export_onnx(graph)
    got = models.run(folded, feed)[0]
    assert collections.Counter(n.op_type for n in folded.graph.node) == collections.Counter(
        n.op_type for n in model.graph.node)
    assert np.linalg.norm(got - expected) / np.linalg.norm(expected) < tolerance
    assert np.linalg.norm(got - before) / np.linalg.norm(before) > 1e-2     # the affines did change the model
    return sites


@pytest.mark.parametrize("style", ["matmul", "gemm"])
def test_float_linears_fold_exactly(style):
    sites = _fold_matches_tuning_graph(models.mlp_model("gelu", style=style))
    assert [s.kind for s in sites] == ["linear"] * 4 and all(s.shifts for s in sites)


def test_a_linear_without_bias_gets_a_scale_only():
    sites = _fold_matches_tuning_graph(models.mlp_model("relu", bias=False))
    assert sites and not any(s.shifts for s in sites)
    assert trainable_count(sites, 4) == 4 * len(sites)


def test_int8_linears_fold_into_the_weight_scales():
    import tempfile
    from pathlib import Path

    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "f.onnx", Path(tmp) / "q.onnx"
        onnx.save(models.mlp_model("gelu"), str(src))
        quantize_dynamic(str(src), str(dst), per_channel=True, weight_type=QuantType.QInt8)
        quantized = onnx.load(str(dst))
    # the fold rounds in another order than the tuning graph and the next dynamic quantization may flip a step
    sites = _fold_matches_tuning_graph(quantized, tolerance=2e-2)
    assert {s.kind for s in sites} == {"int8"} and len(sites) == 4
    assert step_rule(sites, "auto", 0.0) == ("gauss-newton", 1e-2)      # rounding sites: subspace steps, coarse probes
    assert step_rule(sites, "spsa", 5e-3) == ("spsa", 5e-3)             # what the user asked for stands


def test_float_sites_are_tuned_by_the_pooled_jacobian():
    sites = find_sites(gs.import_onnx(models.mlp_model("gelu")), "linear")
    assert step_rule(sites, "auto", 0.0) == ("jacobian", 1e-3)
    assert step_rule(sites, "gauss-newton", 0.0) == ("gauss-newton", 1e-2)   # the probe it was measured with


def test_norm_and_vector_scale_sites():
    b = models.Builder(0)
    ln = b.op("LayerNormalization", ["x", b.const(1 + b.weight((models.D,), 0.1)), b.const(b.weight((models.D,), 0.1))],
              axis=-1)
    scaled = b.op("Add", [b.op("Mul", [ln, b.const(b.weight((models.D,), 1.0))]), b.const(b.weight((models.D,), 0.1))])
    y = models.linear(b, scaled, models.D, models.D)
    sites = _fold_matches_tuning_graph(b.model("x", y), norms=True)
    assert [s.kind for s in sites] == ["norm", "scale", "linear"]


def test_a_weight_shared_by_two_layers_is_not_a_site():
    sites = find_sites(gs.import_onnx(models.shared_weight_model()), "linear")
    graph = gs.import_onnx(models.shared_weight_model())
    shared = [n for n in graph.nodes if n.op == "MatMul" and len(n.inputs[1].outputs) > 1]
    assert shared and not {s.label for s in sites} & {n.name for n in shared}


def test_qdq_linears_fold_into_the_dequantize_scales(tmp_path):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Feeds(CalibrationDataReader):
        def __init__(self, model):
            self.feeds = iter(models.feeds(model, 8))

        def get_next(self):
            return next(self.feeds, None)

    model = models.mlp_model("relu")
    src, dst = tmp_path / "f.onnx", tmp_path / "qdq.onnx"
    onnx.save(model, str(src))
    quantize_static(str(src), str(dst), Feeds(model), quant_format=QuantFormat.QDQ, per_channel=True)
    sites = _fold_matches_tuning_graph(onnx.load(str(dst)), tolerance=5e-2)
    assert {s.kind for s in sites} == {"qdq"} and len(sites) == 4


def test_conv_channels_sit_on_axis_one():
    sites = _fold_matches_tuning_graph(models.conv_model(), groups=2)
    assert [(s.kind, s.shape, s.shifts) for s in sites] == [("conv", (8, 1, 1), True), ("conv", (4, 1, 1), False)]
