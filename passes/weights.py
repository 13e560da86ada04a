"""weights: layer weights stored in 8 bits, computed in float — a smaller file at the original's speed.

Every float weight of a Conv, ConvTranspose, MatMul or Gemm that int8 left float (and that nothing else reads)
is stored as int8 with one scale per output channel, behind `Cast` → `Mul` by its scales. Those two nodes read
only constants, so ONNX Runtime folds them while it loads the model (its constant folding, on by default) and
runs the original float kernels on the restored weights: a quarter of the weight bytes on disk and in the
download, no cost per run (a ResNet-18 timed 0.999×). A `DequantizeLinear` would store the same bytes, but
ONNX Runtime keeps that node to run on every inference (1.3–1.5× the latency). The error is the weights'
rounding alone (no activation is quantized); with a `floor`, the rewritten graph is scored on the driver's
search feeds and the float weights kept when it falls below.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_graphsurgeon as gs

from edgec.passes.base import PassContext, PassOptionError, PassResult, build_options
from edgec.passes.graph_tools import fresh_name
from edgec.passes.ort_tools import replace_contents

WEIGHTED = ("Conv", "ConvTranspose", "MatMul", "Gemm")


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
    floor: float = 0.0           # > 0: keep the float weights if the probe scores the result below this

    def __post_init__(self):
        if self.min_elements < 1:
            raise PassOptionError(f"pass 'weights': min_elements must be ≥ 1, not {self.min_elements}")
        if self.block < 0:
            raise PassOptionError(f"pass 'weights': block must be ≥ 0, not {self.block}")


class WeightsPass:
    name = "weights"
    Options = WeightsOptions
    needs = frozenset({"fidelity"})
    lossless = False

    def run(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        opts = build_options(WeightsOptions, ctx.options, self.name)
        state = carried_state(graph)
        if state:
            return PassResult(False, {"weights": 0}, [f"the model carries state from run to run ({state}): its weights "
                                                      "stay float (a rounding error would build up over a stream, "
                                                      "which checks of single runs do not see)"])
        trial = graph.copy() if opts.floor and ctx.fidelity is not None else graph
        weights = stored_weights(trial, opts.min_elements, opts.edges_float)
        if not weights:
            return PassResult(False, {"weights": 0}, ["no float Conv/MatMul/Gemm weight to store in 8 bits"])
        before = sum(int(np.asarray(w.values).nbytes) for w, _ in weights)
        stored = [_store_int8(trial, weight, axis, opts.block) for weight, axis in weights]
        trial.cleanup().toposort()
        stats = {"weights": len(weights), "block": opts.block, "bytes_before": before,
                 "bytes_after": sum(size for size, _ in stored),
                 "worst_rel_error": round(max(error for _, error in stored), 6)}
        if trial is not graph:
            stats["calibration_score"] = score = round(float(ctx.need_fidelity("weights floor")(trial)), 6)
            if score < opts.floor:
                return PassResult(False, stats, [f"weights kept float: calibration score {score:.4f} < floor "
                                                 f"{opts.floor}"])
            replace_contents(graph, trial)
        return PassResult(True, stats)


def carried_state(graph: gs.Graph) -> str:
    """'input → output' for a float input that an output of the same rank hands on to the next run, as recurrent
    exports name them (state → stateN, h → hn, c → cn, h0 → hN); '' when there is none."""
    for x in graph.inputs:
        stem = x.name.rstrip("0123456789_.").lower()
        for y in graph.outputs:
            same_rank = x.shape is not None and y.shape is not None and len(x.shape) == len(y.shape)
            if stem and same_rank and y.name != x.name and y.name.lower().startswith(stem) \
                    and len(y.name) <= len(stem) + 2 and x.dtype == y.dtype == np.float32:
                return f"{x.name} → {y.name}"
    return ""


def stored_weights(graph: gs.Graph, min_elements: int, edges_float: bool = False) -> list[tuple[gs.Constant, int]]:
    """(weight, its output-channel axis) of every large float32 constant read only as the weight input of
    Conv/ConvTranspose/MatMul/Gemm nodes that agree on that axis (with `edges_float`, none of them reading a graph
    input or writing a graph output)."""
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


def _store_int8(graph: gs.Graph, weight: gs.Constant, axis: int, block: int) -> tuple[int, float]:
    """Rewire every reader of `weight` to its int8 values times their scales, put back into the weight's shape
    (Cast → Mul → Reshape → Transpose, all of constants); the bytes stored and the relative rounding error."""
    values = np.asarray(weight.values, dtype=np.float32)
    moved = np.moveaxis(values, axis, 0)                       # output channels first
    rows = moved.reshape(moved.shape[0], -1)
    size = block if 0 < block < rows.shape[1] and rows.shape[1] % block == 0 else rows.shape[1]
    grouped = rows.reshape(rows.shape[0], -1, size)
    scale = (np.abs(grouped).max(axis=-1, keepdims=True) / 127.0).astype(np.float32)
    scale[scale == 0] = 1.0
    quantized = np.clip(np.round(grouped / scale), -127, 127).astype(np.int8)
    restored = _restored(graph, weight.name, quantized, scale, moved.shape, axis)
    for reader in list(weight.outputs):
        for i, tensor in enumerate(reader.inputs):
            if tensor is weight:
                reader.inputs[i] = restored
    error = np.linalg.norm((quantized * scale).reshape(moved.shape) - moved) / max(float(np.linalg.norm(values)), 1e-30)
    return int(quantized.nbytes + scale.nbytes), float(error)


def _restored(graph: gs.Graph, base: str, quantized: np.ndarray, scale: np.ndarray, moved: tuple, axis: int):
    """The float weight, as nodes of constants only: ONNX Runtime's constant folding computes it once, at load."""
    steps: list[tuple[str, dict[str, object], list[gs.Tensor]]] = [
        ("Cast", {"to": 1}, []),
        ("Mul", {}, [gs.Constant(fresh_name(graph, f"{base}.scales"), scale)]),
        ("Reshape", {}, [gs.Constant(fresh_name(graph, f"{base}.shape"), np.array(moved, np.int64))])]
    if axis:
        perm = list(range(1, axis + 1)) + [0] + list(range(axis + 1, len(moved)))
        steps.append(("Transpose", {"perm": perm}, []))
    tensor: gs.Tensor = gs.Constant(fresh_name(graph, f"{base}.int8"), quantized)
    for op, attrs, extra in steps:
        out = gs.Variable(fresh_name(graph, f"{base}.{op.lower()}"), dtype=np.float32)
        graph.nodes.append(gs.Node(op, fresh_name(graph, f"{base}.{op}"), attrs, [tensor, *extra], [out]))
        tensor = out
    return tensor
