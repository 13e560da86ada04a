"""weights: layer weights stored in 8 bits, computed in float — a smaller file at the original's speed.

Every float weight of a Conv, ConvTranspose, MatMul or Gemm that int8 left float (and that nothing else reads),
and the word and position tables of ONNX Runtime's fused EmbedLayerNormalization, is stored as int8 with one scale
per output channel, behind `Cast` → `Mul` by its scales. Those two nodes read only constants, so ONNX Runtime
folds them while it loads the model (its constant folding, on by default) and runs the original float kernels on
the restored weights: a quarter of the weight bytes on disk and in the download, no cost per run (a ResNet-18
timed 0.999×). A `DequantizeLinear` would store the same bytes, but ONNX Runtime keeps that node to run on every
inference (1.3–1.5× the latency). The error is the weights' rounding alone (no activation is quantized); with a
`floor`, the rewritten graph is scored on the driver's search feeds and, when it falls below, the most sensitive
weights stay float (mixed precision, as int8 does: `passes.int8.mixed`) — one detector head's rounding no longer
keeps a whole network's bytes.

No activation is rounded and no unit removed, so the pass is `data_free`: without real inputs it still runs,
judged on the synthesized feeds at the tighter `SYNTHESIZED_FLOOR` (they show the weights' error, not the
meaning of a model's outputs, hence the larger margin).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import onnx_graphsurgeon as gs

from edgec.passes.base import PassContext, PassOptionError, PassResult, build_options
from edgec.passes.graph_tools import carried_state, fresh_name
from edgec.passes.int8.mixed import fewest_float_layers
from edgec.passes.ort_tools import replace_contents

WEIGHTED = ("Conv", "ConvTranspose", "MatMul", "Gemm")
EMBEDDING_TABLES = (2, 3)     # EmbedLayerNormalization inputs: word_embedding, position_embedding
SYNTHESIZED_FLOOR = 0.999       # the floor on synthesized feeds (with real ones the target's: 0.995)


@dataclass(frozen=True)
class WeightsOptions:
    # values per scale within an output channel (0: one scale per channel). 32: each scale covers fewer outliers —
    # a YOLOX detector's worst output error 6.4 % of its range per channel, see samples/RESULTS.md#weights — for
    # 4 bytes per 32 int8 values (0.28 of the float bytes instead of 0.25); channels whose size it does not
    # divide get one scale
    block: int = 32
    min_elements: int = 1024     # smaller weights (biases, tiny kernels) stay float: their bytes are nothing
    # the layers that read a graph input or write a graph output stay float, as quantizers keep the first and last
    # layers: a rounding error there is not averaged away (an STFT basis, a detector's box regression)
    edges_float: bool = True
    # > 0: the probe scores the result on the search feeds; below this, the most sensitive weights stay float
    # (`passes.int8.mixed`: at most max_float_share of them, found within search_seconds) or else all of them
    floor: float = 0.0
    max_float_share: float = 0.5
    search_seconds: float = 300.0

    def __post_init__(self):
        if self.min_elements < 1:
            raise PassOptionError(f"pass 'weights': min_elements must be ≥ 1, not {self.min_elements}")
        if not 0.0 <= self.max_float_share <= 1.0:
            raise PassOptionError(f"pass 'weights': max_float_share must be in [0, 1], not {self.max_float_share}")
        if self.block < 0:
            raise PassOptionError(f"pass 'weights': block must be ≥ 0, not {self.block}")


class WeightsPass:
    name = "weights"
    Options = WeightsOptions
    needs = frozenset({"fidelity"})
    lossless = False
    data_free = True

    def run(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        opts = build_options(WeightsOptions, ctx.options, self.name)
        if ctx.synthesized:
            opts = replace(opts, floor=max(opts.floor, SYNTHESIZED_FLOOR))
        state = carried_state(graph)
        if state:
            return PassResult(False, {"weights": 0}, [f"the model carries state from run to run ({state}): its weights "
                                                      "stay float (a rounding error would build up over a stream, "
                                                      "which checks of single runs do not see)"])
        weights = {w.name: _quantized(w, axis, opts.block) for w, axis in stored_weights(graph, opts.min_elements,
                                                                                          opts.edges_float)}
        if not weights:
            return PassResult(False, {"weights": 0}, ["no float Conv/MatMul/Gemm weight to store in 8 bits"])
        stats = {"weights": len(weights), "block": opts.block,
                 "bytes_before": sum(w.float_bytes for w in weights.values())}
        if not (opts.floor and ctx.fidelity is not None):
            _store_int8(graph, weights, [])
            return PassResult(True, {**stats, **_stored_stats(weights, [])})
        result = fewest_float_layers(list(weights), lambda kept: _store_int8(graph.copy(), weights, kept),
                                     ctx.need_fidelity("weights floor"), opts.floor,
                                     max_float_share=opts.max_float_share, seconds=opts.search_seconds,
                                     cost=lambda name: float(weights[name].float_bytes))
        if result is None:
            share = f" even with up to {opts.max_float_share:.0%} of them float" if opts.max_float_share else ""
            return PassResult(False, stats, [f"weights kept float: calibration score below the floor {opts.floor}"
                                             f"{share}"])
        replace_contents(graph, result.model)
        stats.update(_stored_stats(weights, result.float_layers), calibration_score=round(result.score, 6),
                     scored=result.scored)
        notes = [] if not result.float_layers else [
            f"mixed precision: {len(result.float_layers)} of {len(weights)} weights kept float to keep the floor "
            f"{opts.floor} (score {result.score:.4f}): {', '.join(result.float_layers[:6])}"
            + (" …" if len(result.float_layers) > 6 else "")]
        return PassResult(True, stats, notes)


def _stored_stats(weights: dict[str, Int8Weight], kept_float: Sequence[str]) -> dict:
    stored = [w for name, w in weights.items() if name not in set(kept_float)]
    return {"kept_float": len(kept_float),
            "bytes_after": sum(w.stored_bytes for w in stored) + sum(weights[n].float_bytes for n in kept_float),
            "worst_rel_error": round(max((w.error for w in stored), default=0.0), 6)}


def stored_weights(graph: gs.Graph, min_elements: int, edges_float: bool = False) -> list[tuple[gs.Constant, int]]:
    """(weight, its output-channel axis) of every large float32 constant read only as the weight input of
    Conv/ConvTranspose/MatMul/Gemm nodes (or as an EmbedLayerNormalization table) that agree on that axis (with
    `edges_float`, none of them reading a graph input or writing a graph output)."""
    found: dict[str, tuple[gs.Constant, int]] = {}
    skip: set[str] = set()
    edges = {id(t) for t in [*graph.inputs, *graph.outputs]}
    for node in graph.nodes:
        if edges_float and any(id(t) in edges for t in [*node.inputs, *node.outputs]):
            skip.update(t.name for t in node.inputs if isinstance(t, gs.Constant))
            continue
        for index, tensor in enumerate(node.inputs):
            if not isinstance(tensor, gs.Constant) or tensor.name in skip:
                continue
            values = np.asarray(tensor.values)
            if values.dtype != np.float32 or values.size < min_elements or values.ndim < 2:
                continue
            axis = _channel_axis(node, index, values.shape)
            previous = found.get(tensor.name)
            if axis is None or any(len(u.inputs) <= index for u in tensor.outputs) \
                    or (previous is not None and previous[1] != axis):
                skip.add(tensor.name)
                found.pop(tensor.name, None)
                continue
            found[tensor.name] = (tensor, axis)
    return list(found.values())


def _channel_axis(node: gs.Node, index: int, shape: tuple[int, ...]) -> int | None:
    """The output-channel axis of the weight (of `shape`) at input `index` of `node`, None when it is not a layer's
    weight."""
    if node.domain == "com.microsoft" and node.op == "EmbedLayerNormalization":
        # `fuse` feeds the word and position tables to ONNX Runtime's fused embedding, where `embed` cannot reach
        # them: stored here instead, one scale per block of each token's row
        return 0 if index in EMBEDDING_TABLES else None
    if (node.domain or "") not in ("", "ai.onnx") or node.op not in WEIGHTED or index != 1:
        return None
    if node.op == "Conv":
        # [M, C/group, k…]; a filterbank over a raw signal (one input channel, ≥ 64 taps: an STFT basis) stays
        # float — its rounding noise floor lifts the quiet bins that a log spectrum then magnifies
        filterbank = len(shape) >= 3 and shape[1] == 1 and int(np.prod(shape[2:])) >= 64
        return None if filterbank else 0
    if node.op == "ConvTranspose":
        return 1                                   # [C, M/group, k…]
    if node.op == "Gemm":
        return 0 if node.attrs.get("transB", 0) else 1
    return len(shape) - 1                          # MatMul: [… K, N]


@dataclass(frozen=True)
class Int8Weight:
    """A weight's int8 values ([output channels, blocks, block]) and their float32 scales."""
    values: np.ndarray
    scales: np.ndarray
    moved_shape: tuple[int, ...]      # the weight's shape with its output-channel axis first
    axis: int
    float_bytes: int
    error: float                      # relative rounding error (Frobenius)

    @property
    def stored_bytes(self) -> int:
        return int(self.values.nbytes + self.scales.nbytes)


def _quantized(weight: gs.Constant, axis: int, block: int) -> Int8Weight:
    """Symmetric int8 of `weight` with one scale per `block` values of an output channel (per channel where the
    block does not divide the channel)."""
    values = np.asarray(weight.values, dtype=np.float32)
    moved = np.moveaxis(values, axis, 0)                       # output channels first
    rows = moved.reshape(moved.shape[0], -1)
    size = block if 0 < block < rows.shape[1] and rows.shape[1] % block == 0 else rows.shape[1]
    grouped = rows.reshape(rows.shape[0], -1, size)
    scale = (np.abs(grouped).max(axis=-1, keepdims=True) / 127.0).astype(np.float32)
    scale[scale == 0] = 1.0
    quantized = np.clip(np.round(grouped / scale), -127, 127).astype(np.int8)
    error = np.linalg.norm((quantized * scale).reshape(moved.shape) - moved) / max(float(np.linalg.norm(values)), 1e-30)
    return Int8Weight(quantized, scale, moved.shape, axis, int(values.nbytes), float(error))


def _store_int8(graph: gs.Graph, weights: dict[str, Int8Weight], kept_float: Sequence[str]) -> gs.Graph:
    """`graph` with every weight named in `weights` but those in `kept_float` read as its int8 values times their
    scales, put back into the weight's shape (Cast → Mul → Reshape → Transpose, all of constants)."""
    tensors = graph.tensors()
    for name, weight in weights.items():
        if name in set(kept_float):
            continue
        original = tensors[name]
        restored = _restored(graph, name, weight)
        for reader in list(original.outputs):
            for i, tensor in enumerate(reader.inputs):
                if tensor is original:
                    reader.inputs[i] = restored
    return graph.cleanup().toposort()


def _restored(graph: gs.Graph, base: str, weight: Int8Weight) -> gs.Tensor:
    """The float weight, as nodes of constants only: ONNX Runtime's constant folding computes it once, at load."""
    moved, axis = weight.moved_shape, weight.axis
    steps: list[tuple[str, dict[str, object], list[gs.Tensor]]] = [
        ("Cast", {"to": 1}, []),
        ("Mul", {}, [gs.Constant(fresh_name(graph, f"{base}.scales"), weight.scales)]),
        ("Reshape", {}, [gs.Constant(fresh_name(graph, f"{base}.shape"), np.array(moved, np.int64))])]
    if axis:
        perm = list(range(1, axis + 1)) + [0] + list(range(axis + 1, len(moved)))
        steps.append(("Transpose", {"perm": perm}, []))
    tensor: gs.Tensor = gs.Constant(fresh_name(graph, f"{base}.int8"), weight.values)
    for op, attrs, extra in steps:
        out = gs.Variable(fresh_name(graph, f"{base}.{op.lower()}"), dtype=np.float32)
        graph.nodes.append(gs.Node(op, fresh_name(graph, f"{base}.{op}"), attrs, [tensor, *extra], [out]))
        tensor = out
    return tensor
