"""Outlier channels computed apart, in float, for dynamic int8 (LLM.int8()'s decomposition, Dettmers et al.).

Dynamic int8 rounds a MatMul's input with one scale per tensor and run, set by its largest value; a transformer's
LayerNorm outputs and MLP activations carry a few channels tens of times larger than the rest, so every other
channel gets a handful of levels. Here those few channels leave the int8 product: the input is multiplied by a
0/1 mask before it is quantized (the int8 MatMul sees the rest, its weight's outlier rows zeroed), and a small
float MatMul computes the outlier channels with their weight rows (Gather of K channels, [.., K] × [K, out]),
added back. Exact in float; int8 then rounds only well-behaved channels. K (top channels by largest magnitude on
calibration feeds) is chosen per input among COUNTS by the product's error under the recipe's own rounding, as
smoothing chooses α (`passes.int8.smooth`), and an input is split only where that quarters the error. Unlike
smoothing, a post-LayerNorm model pays no division (a Mul by a mask, a Gather and a K-wide MatMul per input).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgec.passes.base import Feed
from edgec.passes.graph_tools import default_opset
from edgec.passes.int8.smooth import (
    MAX_FEEDS,
    Reader,
    Statistics,
    readers_by_input,
    round_activation,
    round_weight,
    rounding_error,
    spread,
    statistics,
    unique_name,
)

COUNTS = (1, 2, 4, 8)    # outlier channels per input tried
MAX_SHARE = 1 / 16                 # at most this share of an input's channels (or 2) computed in float
# a split must quarter the estimated error: it costs a Mul, a Gather and per reader a MatMul and an Add per run
# (on MiniLM, 16 inputs split at GAIN 0.5 took 15 % more time than plain int8)
GAIN = 0.25


def split_outliers(model: onnx.ModelProto, feeds: Sequence[Feed], bits: int, per_channel: bool) \
        -> tuple[onnx.ModelProto, list[str], list[str]]:
    """A copy of `model` whose MatMul/Gemm inputs have their outlier channels computed apart where that lowers the
    int8 error, the names of the float MatMuls that compute them (they must stay float), and a note."""
    if default_opset(model) < 11 or any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                                 for n in model.graph.node for a in n.attribute):
        return model, [], ["outlier channels not split: the graph has subgraphs or an opset before 11"]
    groups = {name: readers for name, readers in readers_by_input(model).items()
              if all(r.node.op_type in ("MatMul", "Gemm") for r in readers)}
    if not groups or not feeds:
        return model, [], []
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer if t.name in
               {r.weight for rs in groups.values() for r in rs}}
    stats = statistics(model, list(groups), spread(feeds, MAX_FEEDS))
    out = onnx.ModelProto()
    out.CopyFrom(model)
    float_nodes: list[str] = []
    counts = []
    for name, readers in groups.items():
        channels = best_outliers(stats[name], [r.matrix(weights) for r in readers], bits, per_channel)
        if channels is not None:
            float_nodes += _apply(out, name, readers, channels)
            counts.append(len(channels))
    if not counts:
        return model, [], ["outlier channels: no MatMul input's int8 error quartered by computing them apart"]
    return out, float_nodes, [f"outlier channels computed apart in float (LLM.int8()-style) on {len(counts)} of "
                              f"{len(groups)} MatMul inputs, {min(counts)}–{max(counts)} channels each, chosen by "
                              "their int8 error on calibration rows"]


def best_outliers(stats: Statistics, matrices: list[np.ndarray], bits: int, per_channel: bool) -> np.ndarray | None:
    """The input channels (sorted indices) whose removal from the int8 product rounds it closest to float, or None
    when no count beats the plain int8 by GAIN."""
    channels = len(stats.magnitude)
    exact = [[rows @ w for w in matrices] for rows in stats.rows]
    plain = rounding_error(stats, matrices, np.ones(channels, np.float32), bits, per_channel, exact)
    order = np.argsort(-stats.magnitude, kind="stable")
    errors = {k: split_error(stats, matrices, order[:k], bits, per_channel, exact)
              for k in COUNTS if k <= max(2, int(channels * MAX_SHARE)) and 4 * k <= channels}
    if not errors:
        return None
    k = min(errors, key=errors.__getitem__)
    return np.sort(order[:k]) if errors[k] < GAIN * plain else None


def split_error(stats: Statistics, matrices: list[np.ndarray], outliers: np.ndarray, bits: int, per_channel: bool,
                exact: list[list[np.ndarray]]) -> float:
    """‖XW − (q(X·m)·q(m·W) + X[:, o]·W[o])‖² / ‖XW‖² over the sampled rows (m: the 0/1 mask of the other channels,
    each feed's inliers rounded with their own range, as DynamicQuantizeLinear does at run time)."""
    keep = np.ones(len(stats.magnitude), bool)
    keep[outliers] = False
    rounded = [round_weight(w * keep[:, None], bits, per_channel) for w in matrices]
    error = total = 0.0
    for low, high, rows, products in zip(stats.low, stats.high, stats.rows, exact, strict=True):
        lo, hi = min(float(low[keep].min()), 0.0), max(float(high[keep].max()), 0.0)
        x = round_activation(rows * keep, lo, hi)
        for product, w, wq in zip(products, matrices, rounded, strict=True):
            approx = x @ wq + rows[:, outliers] @ w[outliers]
            error += float(((product - approx) ** 2).sum())
            total += float((product ** 2).sum())
    return error / max(total, 1e-30)


def _apply(model: onnx.ModelProto, name: str, readers: list[Reader], outliers: np.ndarray) -> list[str]:
    """The rewrite for one input: Mul by the inlier mask and Gather of the outliers before its first reader; each
    reader reads the masked input with its outlier weight rows zeroed, and a float MatMul of the gathered channels
    by those rows is added to its output. Returns the float MatMuls' names."""
    graph = model.graph
    tensors = {t.name: t for t in graph.initializer}
    taken = {t.name for t in graph.initializer} | {i.name for i in graph.input} | \
        {o for n in graph.node for o in n.output} | {n.name for n in graph.node}

    def fresh(base: str) -> str:
        chosen = unique_name(base, taken)
        taken.add(chosen)
        return chosen

    shape = list(tensors[readers[0].weight].dims)
    width = shape[1] if readers[0].transposed else shape[0]
    mask, index = fresh(f"{name}_inlier_mask"), fresh(f"{name}_outlier_channels")
    inliers, picked = fresh(f"{name}_inliers"), fresh(f"{name}_outliers")
    keep = np.ones(width, np.float32)
    keep[outliers] = 0.0
    graph.initializer.extend([numpy_helper.from_array(keep, mask),
                              numpy_helper.from_array(outliers.astype(np.int64), index)])
    prelude = [helper.make_node("Mul", [name, mask], [inliers], name=fresh(f"{name}_mask_outliers")),
               helper.make_node("Gather", [name, index], [picked], axis=-1, name=fresh(f"{name}_gather_outliers"))]
    after: dict[str, list[onnx.NodeProto]] = {}
    float_nodes = []
    for reader in readers:
        joined = _join_point(graph, reader.node.output[0], tensors)     # readers come from the original model
        output = joined.output[0]
        w_out = _split_weight(tensors[reader.weight], reader, outliers)
        w_name, part, product = fresh(f"{reader.weight}_outlier_rows"), fresh(f"{name}_outlier_part"), \
            fresh(f"{output}_inliers")
        graph.initializer.append(numpy_helper.from_array(w_out, w_name))
        matmul = fresh(f"{reader.node.name or output}_outliers")
        after[product] = [helper.make_node("MatMul", [picked, w_name], [part], name=matmul),
                          helper.make_node("Add", [product, part], [output], name=fresh(f"{matmul}_add"))]
        next(n for n in graph.node if n.output[:1] == [reader.node.output[0]]).input[0] = inliers
        joined.output[0] = product
        float_nodes.append(matmul)
    nodes: list[onnx.NodeProto] = []
    for node in list(graph.node):
        if prelude and inliers in node.input:
            nodes += prelude
            prelude = []
        nodes.append(node)
        nodes += after.get(node.output[0] if node.output else "", [])
    del graph.node[:]
    graph.node.extend(nodes)
    return float_nodes


def _join_point(graph: onnx.GraphProto, output: str, constants: dict) -> onnx.NodeProto:
    """Where the outlier part is added back: after the reader's bias Add when that is its only consumer (so ONNX
    Runtime still fuses the bias into the int8 MatMul), else after the reader itself."""
    consumers = [n for n in graph.node if output in n.input]
    reader = next(n for n in graph.node if n.output[:1] == [output])
    if output in {o.name for o in graph.output} or len(consumers) != 1:
        return reader
    bias = consumers[0]
    others = [i for i in bias.input if i != output]
    return bias if bias.op_type == "Add" and len(others) == 1 and others[0] in constants else reader


def _split_weight(tensor: onnx.TensorProto, reader: Reader, outliers: np.ndarray) -> np.ndarray:
    """Zero the outlier input channels of the reader's weight in place; return their rows as a float [K, out]
    weight (a Gemm's alpha folded in)."""
    w = numpy_helper.to_array(tensor).copy()
    matrix = w.T if reader.transposed else w               # a view: [in, out]
    rows = matrix[outliers].copy()
    matrix[outliers] = 0.0
    tensor.CopyFrom(numpy_helper.from_array(w.astype(np.float32), tensor.name))
    if reader.node.op_type == "Gemm":
        alpha = next((helper.get_attribute_value(a) for a in reader.node.attribute if a.name == "alpha"), 1.0)
        rows = rows * np.float32(alpha)
    return rows.astype(np.float32)


