"""Bias correction: the mean shift that rounding a layer's weights to int8 adds to its outputs, taken out of its bias.

Rounding W to W_q moves each output channel by (W_q − W)·x. Its mean over the data, (W_q − W)·E[x], is not zero
where the inputs' mean is not (every input after a ReLU): a systematic shift per channel, which the next layers carry
and add up. Subtracting it from the layer's bias is exact in expectation and costs nothing at run time (Nagel et al.,
"Data-Free Quantization Through Weight Equalization and Bias Correction", 2019, §4.2: the empirical form, with E[x]
measured on the calibration inputs). It is applied to the quantized model itself, from the int8 weights ONNX Runtime
wrote, so layers kept float are left alone. Measured on open-nsfw (ResNet-50, 7-bit per-channel weights, every layer
int8): score 0.9947 → 0.9971 on unseen inputs; on other networks it can lower the score a little, so the static
recipe keeps it only where it scores higher (`passes.int8.static`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from edgec.passes.base import Feed

CORRECTED_OPS = ("Conv", "Gemm")


def corrects_bias(model: onnx.ModelProto) -> bool:
    """Whether the model has a layer whose bias correction can move: a Conv/Gemm with a constant weight and a bias."""
    constants = {t.name for t in model.graph.initializer}
    return any(n.op_type in CORRECTED_OPS and len(n.input) > 2 and n.input[1] in constants for n in model.graph.node)


def input_means(model: onnx.ModelProto, feeds: Sequence[Feed]) -> dict[str, np.ndarray]:
    """Each Conv/Gemm node's (by name) mean activation input per channel (Conv: axis 1; Gemm: its last axis) over
    `feeds`, from one run per feed of `model` with those inputs as extra outputs."""
    import onnxruntime as ort

    layers = {n.name: n.input[0] for n in model.graph.node if n.op_type in CORRECTED_OPS and len(n.input) > 2}
    if not layers or not feeds:         # (a run asked for no outputs returns every one)
        return {}
    wanted = sorted(set(layers.values()) - {o.name for o in model.graph.output})
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name) for name in wanted)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL     # the tensors as named
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = sorted(set(layers.values()))
    sums: dict[str, np.ndarray] = {}
    for feed in feeds:
        for name, value in zip(names, session.run(names, dict(feed)), strict=True):
            sums[name] = sums.get(name, 0.0) + _channel_mean(np.asarray(value, dtype=np.float64))
    return {layer: sums[tensor] / max(len(feeds), 1) for layer, tensor in layers.items() if tensor in sums}


def bias_corrected(quantized: onnx.ModelProto, original: onnx.ModelProto,
                   means: dict[str, np.ndarray]) -> tuple[onnx.ModelProto, int]:
    """`quantized` (QDQ) with each int8 Conv/Gemm's int32 bias shifted by −(W_q − W)·E[x], and how many layers were
    corrected. A layer is left as it is where its weight or bias is not a DequantizeLinear of a constant or the shapes
    do not match."""
    constants = {t.name: t for t in quantized.graph.initializer}
    floats = {t.name: t for t in original.graph.initializer}
    weights = {n.name: n.input[1] for n in original.graph.node if n.op_type in CORRECTED_OPS and len(n.input) > 2}
    producers = {out: n for n in quantized.graph.node for out in n.output}
    corrected = 0
    for node in quantized.graph.node:
        if node.op_type not in CORRECTED_OPS or len(node.input) < 3 or node.name not in means \
                or weights.get(node.name) not in floats:
            continue
        weight_dq, bias_dq = producers.get(node.input[1]), producers.get(node.input[2])
        if not (_constant_dq(weight_dq, constants) and _constant_dq(bias_dq, constants)):
            continue
        w = numpy_helper.to_array(floats[weights[node.name]]).astype(np.float64)
        shift = _output_shift(node, _dequantized(weight_dq, constants) - w, means[node.name])
        if shift is None:
            continue
        bias = constants[bias_dq.input[0]]
        q_bias = numpy_helper.to_array(bias).astype(np.float64)
        scale = numpy_helper.to_array(constants[bias_dq.input[1]]).astype(np.float64)
        if q_bias.shape != shift.shape or scale.size not in (1, shift.size):
            continue
        moved = np.clip(np.round(q_bias - shift / np.where(scale == 0, 1.0, scale)), -2**31, 2**31 - 1)
        bias.CopyFrom(numpy_helper.from_array(moved.astype(np.int32), bias.name))
        corrected += 1
    return quantized, corrected


def _channel_mean(value: np.ndarray) -> np.ndarray:
    """Per-channel mean of a layer input: axis 1 of an N-D activation (Conv), the last axis of a 2-D one (Gemm)."""
    if value.ndim == 2:
        return value.mean(axis=0)
    return value.mean(axis=tuple(i for i in range(value.ndim) if i != 1))


def _constant_dq(node: onnx.NodeProto | None, constants: dict) -> bool:
    return node is not None and node.op_type == "DequantizeLinear" and all(i in constants for i in node.input[:2])


def _dequantized(node: onnx.NodeProto, constants: dict) -> np.ndarray:
    q = numpy_helper.to_array(constants[node.input[0]]).astype(np.float64)
    scale = numpy_helper.to_array(constants[node.input[1]]).astype(np.float64)
    zero = numpy_helper.to_array(constants[node.input[2]]).astype(np.float64) \
        if len(node.input) > 2 and node.input[2] in constants else np.zeros_like(scale)
    if scale.size > 1:
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1) % q.ndim
        shape = [1] * q.ndim
        shape[axis] = scale.size
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return (q - zero) * scale


def _output_shift(node: onnx.NodeProto, delta: np.ndarray, mean: np.ndarray) -> np.ndarray | None:
    """(W_q − W)·E[x] per output channel, or None where the shapes do not fit."""
    if node.op_type == "Gemm":
        attrs = {a.name: a.i for a in node.attribute}
        if attrs.get("transA", 0) or delta.ndim != 2:
            return None
        delta = delta if attrs.get("transB", 0) else delta.T          # [out, in]
        return delta @ mean if delta.shape[1] == mean.size else None
    groups = next((a.i for a in node.attribute if a.name == "group"), 1)
    if delta.ndim < 3 or delta.shape[0] % groups:
        return None
    per_group_in, per_group_out = delta.shape[1], delta.shape[0] // groups
    if per_group_in * groups != mean.size:
        return None
    summed = delta.sum(axis=tuple(range(2, delta.ndim)))                 # [out, in / groups]
    group_means = mean.reshape(groups, per_group_in)[np.arange(delta.shape[0]) // per_group_out]
    return (summed * group_means).sum(axis=1)
