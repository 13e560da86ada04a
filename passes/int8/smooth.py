"""Activation smoothing for dynamic int8: SmoothQuant's scale migration, exact in float.

Dynamic int8 quantizes a MatMul's input with one scale per tensor and run, set by its largest value. The
LayerNorm outputs and MLP activations of a transformer carry a few outlier channels, so every other channel
gets a handful of levels. Dividing channel j of the input by s_j and multiplying row j of every weight that
reads it by s_j computes the same product in float and moves the outliers into the weights, whose scales are
per output channel: s_j = max|x_j|^α / max|w_j|^(1−α) (Xiao et al., SmoothQuant). α is chosen per input among
ALPHAS by the product's error under the recipe's own rounding (uint8 per-tensor activations, int8 weights of 7
or 8 bits) on calibration rows, and an input is left alone where no α halves it. The division folds into the
LayerNorm that makes the input when nothing else reads it (a pre-LayerNorm transformer: free); otherwise it is one
Mul in front of the MatMuls that read the input (a post-LayerNorm one such as BERT, whose LayerNorm output is also
the residual). On all-MiniLM-L6-v2 (samples/RESULTS.md#int8, 15 Muls): held-out cosine 0.9933 → 0.9977 with
7-bit weights, 0.9986 with 8-bit, at 1.03× the latency.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from edgec.passes.base import Feed

ALPHAS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9)
MAX_FEEDS = 64             # feeds each channel's largest magnitude is taken over (evenly spaced)
ERROR_FEEDS = 16           # of those, the feeds the rounding error is estimated on
ERROR_ROWS = 1024          # rows of each input the rounding error is estimated on, over those feeds
GAIN = 0.5                 # an α must halve the estimated error (each smoothed input costs a Mul per run)


@dataclass
class Reader:
    """A MatMul/Gemm that reads the smoothed input: its weight's input channels are rows, or columns (Gemm transB)."""
    node: onnx.NodeProto
    weight: str
    transposed: bool

    def matrix(self, weights: dict[str, np.ndarray]) -> np.ndarray:
        w = weights[self.weight]
        return w.T if self.transposed else w          # [in, out]


@dataclass
class Statistics:
    magnitude: np.ndarray      # [channels] each channel's largest |x| over MAX_FEEDS feeds
    low: np.ndarray            # [feeds, channels] minimum of each channel on each of ERROR_FEEDS feeds
    high: np.ndarray           # [feeds, channels] maximum
    rows: list[np.ndarray]     # per feed of those, a sample of rows


def smoothed(model: onnx.ModelProto, feeds: Sequence[Feed], bits: int, per_channel: bool, free_only: bool = False) \
        -> tuple[onnx.ModelProto, int, list[str]]:
    """A copy of `model` with the inputs of its MatMul/Gemm layers smoothed where that lowers their int8 error,
    how many inputs were smoothed, and a note. `free_only`: only inputs whose division folds into the LayerNorm
    that makes them (no Mul: no cost per run)."""
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in model.graph.node
           for a in n.attribute):
        return model, 0, ["activation smoothing not tried: the graph has subgraphs (If/Loop bodies may read the "
                          "tensors it would rescale)"]
    groups = readers_by_input(model)
    if free_only:
        groups = {name: readers for name, readers in groups.items() if _foldable_norm(model, name, readers)}
    if not groups or not feeds:
        return model, 0, []
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer if t.name in
               {r.weight for rs in groups.values() for r in rs}}
    stats = statistics(model, list(groups), spread(feeds, MAX_FEEDS))
    out = onnx.ModelProto()
    out.CopyFrom(model)
    chosen, folded = [], 0
    for name, readers in groups.items():
        matrices = [r.matrix(weights) for r in readers]
        alpha = best_alpha(stats[name], matrices, bits, per_channel)
        if alpha is not None:
            folded += _apply(out, name, readers, scales(stats[name], matrices, alpha))
            chosen.append(alpha)
    if not chosen:
        return model, 0, ["activation smoothing: no MatMul input's int8 error halved with it"]
    return out, len(chosen), [f"activation smoothing (SmoothQuant, exact in float) on {len(chosen)} of {len(groups)} "
                              f"MatMul inputs ({folded} folded into their LayerNorm, {len(chosen) - folded} by a Mul), "
                              f"α {min(chosen):g}–{max(chosen):g} by their int8 error on calibration rows"]


def readers_by_input(model: onnx.ModelProto) -> dict[str, list[Reader]]:
    """Activations read by MatMul/Gemm/Attention layers with a float 2-D constant weight, when every reader of the
    activation's weights is among them (a weight used elsewhere cannot be rescaled)."""
    constants = {t.name: t for t in model.graph.initializer}
    uses = _uses(model)
    groups: dict[str, list[Reader]] = {}
    for node in model.graph.node:
        reader = _reader(node, constants)
        if reader is not None and node.input[0] not in constants:
            groups.setdefault(node.input[0], []).append(reader)
    return {a: rs for a, rs in groups.items() if all(uses[r.weight] == 1 for r in rs)}


def _reader(node: onnx.NodeProto, constants: dict[str, onnx.TensorProto]) -> Reader | None:
    """A layer whose input channels are its weight's rows: MatMul, Gemm (columns with transB) and ONNX Runtime's
    fused Attention (the packed Q/K/V weight; quantize_dynamic makes it QAttention, whose input it rounds alike)."""
    fused = node.op_type == "Attention" and node.domain == "com.microsoft"
    if not (node.op_type in ("MatMul", "Gemm") or fused) or len(node.input) < 2 or node.input[1] not in constants:
        return None
    weight = constants[node.input[1]]
    if len(weight.dims) != 2 or weight.data_type != onnx.TensorProto.FLOAT:
        return None
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    # dynamic int8 takes a Gemm only as MatMul (+ Add): alpha = beta = 1, A not transposed (ONNX Runtime's rule)
    if node.op_type == "Gemm" and (attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0
                                   or attrs.get("beta", 1.0) != 1.0):
        return None
    return Reader(node, node.input[1], bool(attrs.get("transB", 0)) if node.op_type == "Gemm" else False)


def best_alpha(stats: Statistics, matrices: list[np.ndarray], bits: int, per_channel: bool) -> float | None:
    """The α whose smoothing rounds the readers' products closest to float, or None when none beats no smoothing
    by GAIN."""
    exact = [[rows @ w for w in matrices] for rows in stats.rows]       # the float products, the same for every α
    plain = rounding_error(stats, matrices, np.ones(matrices[0].shape[0], np.float32), bits, per_channel, exact)
    errors = {a: rounding_error(stats, matrices, scales(stats, matrices, a), bits, per_channel, exact) for a in ALPHAS}
    alpha = min(errors, key=errors.__getitem__)
    return alpha if errors[alpha] < GAIN * plain else None


def scales(stats: Statistics, matrices: list[np.ndarray], alpha: float) -> np.ndarray:
    x_max = np.maximum(stats.magnitude, 1e-5)
    w_max = np.maximum(np.max([np.abs(w).max(axis=1) for w in matrices], axis=0), 1e-5)
    return (x_max ** alpha / w_max ** (1 - alpha)).astype(np.float32)


def rounding_error(stats: Statistics, matrices: list[np.ndarray], scale: np.ndarray, bits: int,
                   per_channel: bool, exact: list[list[np.ndarray]] | None = None) -> float:
    """‖XW − q(X/s)·q(sW)‖² / ‖XW‖² over the sampled rows, each feed's activations rounded with the range of that
    whole feed (as DynamicQuantizeLinear does at run time)."""
    rounded = [round_weight(w * scale[:, None], bits, per_channel) for w in matrices]
    error = total = 0.0
    exact = exact or [[rows @ w for w in matrices] for rows in stats.rows]
    for low, high, rows, products in zip(stats.low, stats.high, stats.rows, exact, strict=True):
        lo, hi = min(float((low / scale).min()), 0.0), max(float((high / scale).max()), 0.0)
        x = round_activation(rows / scale, lo, hi)
        for product, wq in zip(products, rounded, strict=True):
            error += float(((product - x @ wq) ** 2).sum())
            total += float((product ** 2).sum())
    return error / max(total, 1e-30)


def round_activation(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    step = (hi - lo) / 255 or 1.0
    zero = np.round(-lo / step)
    return (np.clip(np.round(x / step) + zero, 0, 255) - zero) * step


def round_weight(w: np.ndarray, bits: int, per_channel: bool) -> np.ndarray:
    top = 2 ** (bits - 1) - 1
    step = (np.abs(w).max(axis=0) if per_channel else np.full(w.shape[1], np.abs(w).max())) / top
    step[step == 0] = 1.0
    return np.clip(np.round(w / step), -top, top) * step


def statistics(model: onnx.ModelProto, names: list[str], feeds: Sequence[Feed]) -> dict[str, Statistics]:
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    present = {o.name for o in probe.graph.output}
    probe.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in present)
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    sampled = {int(i) for i in np.linspace(0, len(feeds) - 1, min(ERROR_FEEDS, len(feeds))).round()}
    per_feed_rows = max(1, ERROR_ROWS // len(sampled))
    magnitude: dict[str, np.ndarray] = {}
    lows: dict[str, list] = {n: [] for n in names}
    highs: dict[str, list] = {n: [] for n in names}
    rows: dict[str, list] = {n: [] for n in names}
    for index, feed in enumerate(feeds):
        for name, value in zip(names, session.run(names, dict(feed)), strict=True):
            flat = np.asarray(value, np.float32).reshape(-1, np.shape(value)[-1])
            low, high = flat.min(axis=0), flat.max(axis=0)
            magnitude[name] = np.maximum(magnitude.get(name, 0.0), np.maximum(-low, high))
            if index in sampled:
                lows[name].append(low)
                highs[name].append(high)
                pick = rng.choice(len(flat), min(per_feed_rows, len(flat)), replace=False)
                rows[name].append(flat[np.sort(pick)])
    return {n: Statistics(magnitude[n], np.array(lows[n]), np.array(highs[n]), rows[n]) for n in names}


def _apply(model: onnx.ModelProto, name: str, readers: list[Reader], scale: np.ndarray) -> bool:
    """s into the readers' weights' input channels, and x → x / s: folded into the LayerNorm that makes x when
    nothing else reads it (True), else a Mul in front of the readers (placed before the first of them)."""
    graph = model.graph
    tensors = {t.name: t for t in graph.initializer}
    for reader in readers:
        tensor = tensors[reader.weight]
        w = numpy_helper.to_array(tensor) * (scale[None, :] if reader.transposed else scale[:, None])
        tensor.CopyFrom(numpy_helper.from_array(w.astype(np.float32), reader.weight))
    affine = _foldable_norm(model, name, readers)
    if affine is not None:
        for constant in affine:                  # the normalization's per-channel scale and bias
            tensor = tensors[constant]
            value = numpy_helper.to_array(tensor)
            tensor.CopyFrom(numpy_helper.from_array((value / scale.reshape(value.shape)).astype(np.float32), constant))
        return True
    taken = {t.name for t in graph.initializer} | {i.name for i in graph.input} | \
        {o for n in graph.node for o in n.output}
    inverse, smoothed_name = unique_name(f"{name}_smooth_inverse", taken), unique_name(f"{name}_smoothed", taken)
    graph.initializer.append(numpy_helper.from_array((1.0 / scale).astype(np.float32), inverse))
    outputs = [list(r.node.output) for r in readers]
    nodes = list(graph.node)
    for node in nodes:
        if list(node.output) in outputs:
            node.input[0] = smoothed_name
    first = next(i for i, n in enumerate(nodes) if smoothed_name in n.input)
    nodes.insert(first, helper.make_node("Mul", [name, inverse], [smoothed_name], name=f"{name}_smooth"))
    del graph.node[:]
    graph.node.extend(nodes)
    return False


def unique_name(name: str, taken: set[str]) -> str:
    candidate, k = name, 1
    while candidate in taken:
        candidate, k = f"{name}_{k}", k + 1
    return candidate


def _foldable_norm(model: onnx.ModelProto, name: str, readers: list[Reader]) -> list[str] | None:
    """The constants of the normalization that makes `name` — a LayerNormalization's scale and bias (last axis), or
    the Mul·Add by per-channel constants that ends a decomposed one — when only the readers (and Shape) read it and
    nothing else reads those constants: a pre-LayerNorm transformer's attention and MLP inputs, not a post-LayerNorm
    one's (there the output is also the residual)."""
    graph = model.graph
    producers = {o: n for n in graph.node for o in n.output}
    reader_outputs = {tuple(r.node.output) for r in readers}
    readers_only = all(tuple(n.output) in reader_outputs or n.op_type == "Shape" for n in graph.node if name in n.input)
    if not readers_only or name in {o.name for o in graph.output}:
        return None
    uses = _uses(model)
    dims = next(list(t.dims) for t in graph.initializer if t.name == readers[0].weight)
    constants = _channel_constants(model, dims[1] if readers[0].transposed else dims[0], uses)
    producer = producers.get(name)
    if producer is None:
        return None
    if producer.op_type == "LayerNormalization":
        axis = next((helper.get_attribute_value(a) for a in producer.attribute if a.name == "axis"), -1)
        affine = list(producer.input[1:3])
        return affine if axis == -1 and len(affine) == 2 and all(a in constants for a in affine) else None
    if producer.op_type != "Add":                          # decomposed: … → Mul(γ) → Add(β)
        return None
    bias = [i for i in producer.input if i in constants]
    scaled = [producers.get(i) for i in producer.input if i not in constants]
    if len(bias) != 1 or len(scaled) != 1 or scaled[0] is None or scaled[0].op_type != "Mul":
        return None
    gain = [i for i in scaled[0].input if i in constants]
    only_the_add = uses.get(scaled[0].output[0]) == 1                  # the Add, not another node or an output
    return [gain[0], bias[0]] if len(gain) == 1 and only_the_add else None


def _uses(model: onnx.ModelProto) -> dict[str, int]:
    """How many times each tensor is read: by a node, or as a graph output."""
    uses: dict[str, int] = {}
    for name in [i for node in model.graph.node for i in node.input] + [o.name for o in model.graph.output]:
        uses[name] = uses.get(name, 0) + 1
    return uses


def _channel_constants(model: onnx.ModelProto, channels: int, uses: dict[str, int]) -> set[str]:
    """Float initializers of `channels` values (any leading 1s) read once (`uses`: by nodes and graph outputs)."""
    return {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT and uses.get(t.name) == 1
            and list(t.dims)[-1:] == [channels] and int(np.prod(t.dims)) == channels}


def spread(feeds: Sequence[Feed], most: int) -> list[Feed]:
    if len(feeds) <= most:
        return list(feeds)
    return [feeds[int(i)] for i in np.linspace(0, len(feeds) - 1, most).round()]
