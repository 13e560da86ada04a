"""Each weighted layer's input second moments H = Σ x xᵀ over calibration inputs: what error-compensated rounding
(`int8.rounding`) weighs a weight's rounding error by.

A MatMul or Gemm sees its input's rows; a Conv sees the patches its kernel covers (im2col), one H per group (a
depthwise convolution has one small H per channel). One probe run per feed gives every layer's input at once (the
memory of one feed's activations, as static calibration holds); beyond ROWS_PER_FEED rows or kernel positions per
feed, a random sample of them (drawn before the patches are gathered) keeps H's estimate and bounds the cost and
memory on large images.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgec.passes.base import Feed

ROWS_PER_FEED = 4096     # input rows (tokens, kernel positions) per feed and layer that enter H
MAX_COLUMNS = 2304       # a layer whose H would be wider keeps plain rounding: GPTQ's factorizations hold a few
                         # copies of H (2304² doubles: 42 MB; a ResNet's 512·3·3 = 4608: 170 MB each)


@dataclass(frozen=True)
class Layer:
    """A weighted node of the float model: its activation input, its constant weight, and how it reads them."""
    node: onnx.NodeProto
    weight: np.ndarray       # as stored: Conv [out, in / groups, *kernel]; MatMul [in, out]; Gemm by transB

    @property
    def groups(self) -> int:
        return attribute(self.node, "group", 1) if self.node.op_type == "Conv" else 1

    @property
    def columns(self) -> int:
        """The width of one group's H: inputs per output (Conv: in / groups × kernel size)."""
        if self.node.op_type == "Conv":
            return int(np.prod(self.weight.shape[1:]))
        return self.weight.shape[1] if self.node.op_type == "Gemm" and attribute(self.node, "transB", 0) \
            else self.weight.shape[0]


def weighted_layers(model: onnx.ModelProto) -> dict[str, Layer]:
    """The uniquely named Conv (1-D, 2-D kernels), MatMul (2-D weight) and Gemm (no transA) nodes whose weight is a
    constant that no other node reads: node name → Layer."""
    constants = {t.name: t for t in model.graph.initializer}
    uses = Counter(i for n in model.graph.node for i in n.input)
    names = Counter(n.name for n in model.graph.node)
    found = {}
    for node in model.graph.node:
        tensor = constants.get(node.input[1]) if len(node.input) > 1 else None
        if tensor is None or not node.name or names[node.name] > 1 or uses[node.input[1]] > 1:
            continue
        rank = len(tensor.dims)
        fits = {"Conv": rank in (3, 4), "MatMul": rank == 2 and len(node.input) == 2,
                "Gemm": rank == 2 and not attribute(node, "transA", 0)}.get(node.op_type, False)
        if fits and node.input[0] not in constants:
            layer = Layer(node, numpy_helper.to_array(tensor))
            if layer.columns <= MAX_COLUMNS:
                found[node.name] = layer
    return found


@dataclass(frozen=True)
class Moments:
    """A layer's H per group (float32 sums) and how many input rows it sums."""
    groups: list[np.ndarray]
    rows: int


def input_hessians(model: onnx.ModelProto, layers: dict[str, Layer], feeds: Sequence[Feed]) -> dict[str, Moments]:
    """Each layer's H per group over `feeds`, from one probe run per feed."""
    import onnxruntime as ort

    if not layers or not feeds:
        return {}
    names = list(dict.fromkeys(layer.node.input[0] for layer in layers.values()))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL     # the tensors as named
    options.log_severity_level = 3         # errors only: ONNX Runtime warns of each unused initializer
    options.enable_cpu_mem_arena = False   # the probe's many outputs would grow the arena for the whole compile
    # the probe is the model with the layers' inputs as outputs too, added for the serialization and taken off
    # again: a copy of a large model (ViT-S: 88 MB) would be held beside it through the whole probe
    outputs = len(model.graph.output)
    known = {o.name for o in model.graph.output}
    model.graph.output.extend(helper.make_empty_tensor_value_info(n) for n in names if n not in known)
    try:
        serialized = model.SerializeToString()
    finally:
        del model.graph.output[outputs:]
    session = ort.InferenceSession(serialized, options, providers=["CPUExecutionProvider"])
    del serialized
    sums: dict[str, list[np.ndarray]] = {}
    counts: dict[str, int] = {}
    rng = np.random.default_rng(0)
    for feed in feeds:
        values = dict(zip(names, session.run(names, dict(feed)), strict=True))
        for name, layer in layers.items():
            groups = _rows(layer, np.asarray(values[layer.node.input[0]], dtype=np.float32), rng)
            if groups is None:
                continue
            moments = [g.T @ g for g in groups]        # float32: H of every layer is held at once
            sums[name] = [a + b for a, b in zip(sums[name], moments, strict=True)] if name in sums else moments
            counts[name] = counts.get(name, 0) + len(groups[0])
    return {name: Moments(groups, counts[name]) for name, groups in sums.items()}


def _rows(layer: Layer, x: np.ndarray, rng: np.random.Generator) -> list[np.ndarray] | None:
    """The layer's input as rows of what each output reads ([rows, columns] per group), at most ROWS_PER_FEED."""
    if layer.node.op_type != "Conv":
        if x.ndim < 1 or x.shape[-1] != layer.columns:
            return None
        return [_sampled(x.reshape(-1, x.shape[-1]), rng)]
    groups = layer.groups
    if x.ndim != layer.weight.ndim or x.shape[1] != layer.weight.shape[1] * groups:
        return None
    if x.ndim == 3:                                  # 1-D: a height of one
        x = x[:, :, None, :]
    per_group = x.shape[1] // groups
    patches = _patches(x, layer.node, tuple(layer.weight.shape[2:]), rng)      # [rows, C, kh·kw]
    if patches is None:
        return None
    return [patches[:, g * per_group:(g + 1) * per_group].reshape(len(patches), -1) for g in range(groups)]


def _patches(x: np.ndarray, node: onnx.NodeProto, kernel: tuple[int, ...], rng: np.random.Generator
             ) -> np.ndarray | None:
    """im2col of a [N, C, H, W] input at up to ROWS_PER_FEED output positions (sampled first, so a large image's
    full im2col is never held): [rows, C, kh·kw], the order of a Conv weight's [in, *kernel] axes."""
    kh, kw = (1, *kernel) if len(kernel) == 1 else kernel
    strides = _pair(attribute(node, "strides", None), len(kernel), 1)
    dilations = _pair(attribute(node, "dilations", None), len(kernel), 1)
    pads = _pads(node, x.shape[2:], (kh, kw), strides, dilations, len(kernel))
    x = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    oh = (x.shape[2] - (kh - 1) * dilations[0] - 1) // strides[0] + 1
    ow = (x.shape[3] - (kw - 1) * dilations[1] - 1) // strides[1] + 1
    if oh <= 0 or ow <= 0:
        return None
    positions = x.shape[0] * oh * ow
    chosen = np.arange(positions) if positions <= ROWS_PER_FEED else \
        np.sort(rng.choice(positions, ROWS_PER_FEED, replace=False))
    n, rest = np.divmod(chosen, oh * ow)
    top, left = np.divmod(rest, ow)
    top, left = top * strides[0], left * strides[1]
    cols = np.empty((len(chosen), x.shape[1], kh, kw), dtype=np.float32)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = x[n, :, top + i * dilations[0], left + j * dilations[1]]
    return cols.reshape(len(chosen), x.shape[1], kh * kw)


def _pads(node, size, kernel, strides, dilations, rank) -> list[int]:
    """[top, left, bottom, right] from `pads` or `auto_pad` (SAME_UPPER puts the odd one at the end)."""
    auto = attribute(node, "auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        total = [max(0, (-(-s // st) - 1) * st + (k - 1) * d + 1 - s)
                 for s, k, st, d in zip(size, kernel, strides, dilations, strict=True)]
        first = [t // 2 if auto == "SAME_UPPER" else t - t // 2 for t in total]
        return [first[0], first[1], total[0] - first[0], total[1] - first[1]]
    pads = list(attribute(node, "pads", None) or [0] * (2 * rank)) if auto != "VALID" else [0] * (2 * rank)
    return [0, pads[0], 0, pads[1]] if rank == 1 else pads


def _pair(value, rank: int, default: int) -> list[int]:
    value = list(value) if value else [default] * rank
    return [default, *value] if rank == 1 else value


def _sampled(rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if len(rows) <= ROWS_PER_FEED:
        return rows
    return rows[np.sort(rng.choice(len(rows), ROWS_PER_FEED, replace=False))]


def attribute(node: onnx.NodeProto, name: str, default):
    """A node attribute's value, or `default`."""
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)
