"""ONNX operators as torch functions, for the trainable view of a graph (`view.py`).

Each entry takes (inputs, attrs) — inputs are torch tensors or None for omitted optional inputs — and
returns a tuple of outputs. Shape arithmetic runs on int64 tensors like everything else; values that
must be Python ints (axes, shapes, slice bounds) are read with `.tolist()`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from edgec.passes.training.dtypes import torch_dtype


def _ints(t) -> list[int]:
    return [int(v) for v in (t.tolist() if torch.is_tensor(t) else t)]


def _axes(inputs, attrs, index: int = 1):
    if len(inputs) > index and inputs[index] is not None:
        return _ints(inputs[index])
    return attrs.get("axes")


def _reshape(x, shape, allowzero=0):
    dims = _ints(shape)
    if not allowzero:
        dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return x.reshape(dims)


def _slice(inputs, attrs):
    x = inputs[0]
    starts, ends = _ints(inputs[1]), _ints(inputs[2])
    axes = _ints(inputs[3]) if len(inputs) > 3 and inputs[3] is not None else list(range(len(starts)))
    steps = _ints(inputs[4]) if len(inputs) > 4 and inputs[4] is not None else [1] * len(starts)
    index = [slice(None)] * x.dim()
    for s, e, a, st in zip(starts, ends, axes, steps, strict=True):
        n = x.shape[a]
        if st < 0:   # negative steps (ONNX: start clamped to [0, n-1], end to [-1, n-1]): flip, slice forward
            s = min(max(s + n if s < 0 else s, 0), n - 1)
            e = -1 if e in (2**31 - 1, 2**63 - 1) else min(max(e + n if e < 0 else e, -1), n - 1)  # INT_MAX: "None"
            x = x.flip(a)
            index[a] = slice(n - 1 - s, max(n - 1 - e, n - 1 - s), -st)
            continue
        index[a] = slice(max(min(s + n if s < 0 else s, n), 0), max(min(e + n if e < 0 else e, n), 0), st)
    return x[tuple(index)]


def _reduce(fn):
    def op(inputs, attrs):
        axes = _axes(inputs, attrs)
        keep = bool(attrs.get("keepdims", 1))
        if not axes:
            if attrs.get("noop_with_empty_axes", 0):
                return (inputs[0],)
            axes = list(range(inputs[0].dim()))
        if inputs[0].numel() == 0:
            raise NotImplementedError("reductions over an empty set")
        return (fn(inputs[0], axes, keep),)
    return op


def _gemm(inputs, attrs):
    a, b = inputs[0], inputs[1]
    a = a.t() if attrs.get("transA", 0) else a
    b = b.t() if attrs.get("transB", 0) else b
    y = attrs.get("alpha", 1.0) * (a @ b)
    if len(inputs) > 2 and inputs[2] is not None:
        y = y + attrs.get("beta", 1.0) * inputs[2]
    return (y,)


def _layer_norm(inputs, attrs):
    """Also the optional Mean and InvStdDev outputs (over the normalized axes, kept as size-1 dims)."""
    x = inputs[0]
    axis = attrs.get("axis", -1) % x.dim()
    shape = x.shape[axis:]
    bias = inputs[2] if len(inputs) > 2 else None
    epsilon = attrs.get("epsilon", 1e-5)
    y = F.layer_norm(x, shape, inputs[1], bias, epsilon)
    if attrs.get("_outputs", 1) == 1:      # the usual case: no statistics to compute
        return (y,)
    dims = list(range(axis, x.dim()))
    mean = x.mean(dims, keepdim=True)
    inv_std = torch.rsqrt(x.var(dims, unbiased=False, keepdim=True) + epsilon)
    return y, mean, inv_std


def _instance_norm(inputs, attrs):
    x, scale, bias = inputs
    return (F.instance_norm(x, weight=scale, bias=bias, eps=attrs.get("epsilon", 1e-5)),)


def _group_norm(inputs, attrs):
    """GroupNormalization-21 (scale and bias per channel; opset 18's per-group form is declined)."""
    x, scale, bias = inputs
    groups = attrs["num_groups"]
    if scale.numel() != x.shape[1]:
        raise NotImplementedError("GroupNormalization with per-group scale (opset 18)")
    return (F.group_norm(x, groups, scale, bias, attrs.get("epsilon", 1e-5)),)


def _batch_norm(inputs, attrs):
    if attrs.get("training_mode", 0):
        raise NotImplementedError("BatchNormalization in training mode")
    x, scale, bias, mean, var = inputs
    return (F.batch_norm(x, mean, var, scale, bias, False, 0.0, attrs.get("epsilon", 1e-5)),)


def _pad(inputs, attrs):
    x, pads = inputs[0], _ints(inputs[1])
    value = inputs[2].item() if len(inputs) > 2 and inputs[2] is not None and inputs[2].numel() else 0
    axes = _ints(inputs[3]) if len(inputs) > 3 and inputs[3] is not None else list(range(x.dim()))
    mode = attrs.get("mode", "constant")
    if mode != "constant" or min(pads) < 0:
        raise NotImplementedError(f"Pad mode {mode} or negative pads")
    half = len(pads) // 2
    torch_pads = [0] * (2 * x.dim())
    for k, a in enumerate(axes):        # F.pad wants (last axis begin, end, the one before, …)
        a %= x.dim()
        torch_pads[2 * (x.dim() - 1 - a)], torch_pads[2 * (x.dim() - 1 - a) + 1] = pads[k], pads[k + half]
    return (F.pad(x, torch_pads, value=value),)


def _conv(inputs, attrs):
    x, w = inputs[0], inputs[1]
    b = inputs[2] if len(inputs) > 2 else None
    dims = w.dim() - 2
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise NotImplementedError("Conv auto_pad")
    pads = attrs.get("pads", [0] * 2 * dims)
    if pads[:dims] != pads[dims:]:
        raise NotImplementedError("asymmetric Conv padding")
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[dims]
    return (fn(x, w, b, attrs.get("strides", 1), pads[:dims], attrs.get("dilations", 1), attrs.get("group", 1)),)


def _pool(kind: str):
    """MaxPool / AveragePool over 1 to 3 spatial dims (symmetric pads; ceil_mode; MaxPool's dilations)."""
    def run(inputs, attrs):
        x, kernel = inputs[0], attrs["kernel_shape"]
        dims = len(kernel)
        if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            raise NotImplementedError(f"{kind} auto_pad")
        pads, dilations = attrs.get("pads", [0] * 2 * dims), attrs.get("dilations", [1] * dims)
        if pads[:dims] != pads[dims:] or any(p > k // 2 for p, k in zip(pads[:dims], kernel, strict=True)):
            raise NotImplementedError(f"{kind} padding torch's pooling lacks (asymmetric, or over half the kernel)")
        if attrs.get("_outputs", 1) > 1:
            raise NotImplementedError("MaxPool's indices output")
        strides, ceil = attrs.get("strides", [1] * dims), bool(attrs.get("ceil_mode", 0))
        if kind == "AveragePool" and (any(d != 1 for d in dilations) or ceil):
            raise NotImplementedError("AveragePool with dilations or ceil_mode")     # torch's rules differ
        if kind == "MaxPool":
            fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[dims]
            return (fn(x, kernel, strides, pads[:dims], dilations, ceil),)
        fn = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[dims]
        return (fn(x, kernel, strides, pads[:dims], ceil, bool(attrs.get("count_include_pad", 0))),)
    return run


def _split(inputs, attrs):
    x, axis = inputs[0], attrs.get("axis", 0)
    sizes = _ints(inputs[1]) if len(inputs) > 1 and inputs[1] is not None else attrs.get("split")
    if sizes is None:
        parts = attrs["num_outputs"] if "num_outputs" in attrs else None
        return tuple(torch.chunk(x, parts, axis)) if parts else None
    return tuple(torch.split(x, sizes, axis))


def _clip(inputs, attrs):
    lo = inputs[1] if len(inputs) > 1 and inputs[1] is not None else attrs.get("min")
    hi = inputs[2] if len(inputs) > 2 and inputs[2] is not None else attrs.get("max")
    return (inputs[0] if lo is None and hi is None else torch.clamp(inputs[0], lo, hi),)


def _squeeze(inputs, attrs):
    axes = _axes(inputs, attrs)
    x = inputs[0]
    if axes is None:
        return (x.squeeze(),)
    for a in sorted((a % x.dim() for a in axes), reverse=True):
        x = x.squeeze(a)
    return (x,)


def _unsqueeze(inputs, attrs):
    x = inputs[0]
    axes = _axes(inputs, attrs)
    rank = x.dim() + len(axes)
    for a in sorted(a % rank for a in axes):
        x = x.unsqueeze(a)
    return (x,)


def _cumsum(inputs, attrs):
    x, axis = inputs[0], int(inputs[1].reshape(-1)[0])
    reverse = attrs.get("reverse", 0)
    y = torch.cumsum(x.flip(axis) if reverse else x, axis, dtype=x.dtype)
    if attrs.get("exclusive", 0):
        y = y - (x.flip(axis) if reverse else x)
    return (y.flip(axis) if reverse else y,)


def _gather_nd(inputs, attrs):
    data, indices = inputs
    batch, depth = attrs.get("batch_dims", 0), indices.shape[-1]
    count = int(np.prod(data.shape[:batch], dtype=np.int64))
    flat_data = data.reshape(count, *data.shape[batch:])
    flat_index = indices.reshape(count, -1, depth) % torch.tensor(data.shape[batch:batch + depth], device=indices.device)
    rows = [flat_data[b][tuple(flat_index[b].T)] for b in range(count)]    # negative indices wrapped above
    return (torch.stack(rows).reshape(*indices.shape[:-1], *data.shape[batch + depth:]),)


def _constant(inputs, attrs):
    for key in ("value", "value_float", "value_int", "value_floats", "value_ints"):
        if key in attrs:
            return (torch.as_tensor(np.array(attrs[key])),)
    raise NotImplementedError("Constant without a value")


def _gelu(inputs, attrs):
    approximate = attrs.get("approximate", "none")
    return (F.gelu(inputs[0], approximate=approximate.decode() if isinstance(approximate, bytes) else approximate),)


def _fast_gelu(inputs, attrs):
    """ONNX Runtime's contrib FastGelu: the tanh GELU of x (+ its optional bias)."""
    x = inputs[0] if len(inputs) < 2 or inputs[1] is None else inputs[0] + inputs[1]
    return (F.gelu(x, approximate="tanh"),)


# ONNX Runtime's contrib ops that cleanup writes (`passes.exact.gelu`); its Gelu is ONNX's Gelu without attributes
CONTRIB_OPS = frozenset({"FastGelu", "Gelu"})


OPS = {
    "Add": lambda i, a: (i[0] + i[1],), "Sub": lambda i, a: (i[0] - i[1],), "Mul": lambda i, a: (i[0] * i[1],),
    "Div": lambda i, a: (torch.div(i[0], i[1], rounding_mode="trunc") if not i[0].is_floating_point()
                         else i[0] / i[1],),
    "Pow": lambda i, a: (torch.pow(i[0], i[1]),), "Sqrt": lambda i, a: (torch.sqrt(i[0]),),
    "Erf": lambda i, a: (torch.erf(i[0]),), "Tanh": lambda i, a: (torch.tanh(i[0]),),
    "Sigmoid": lambda i, a: (torch.sigmoid(i[0]),), "Relu": lambda i, a: (F.relu(i[0]),),
    "Exp": lambda i, a: (torch.exp(i[0]),), "Log": lambda i, a: (torch.log(i[0]),),
    "Neg": lambda i, a: (-i[0],), "Abs": lambda i, a: (torch.abs(i[0]),), "Reciprocal": lambda i, a: (1 / i[0],),
    "Max": lambda i, a: (torch.stack(torch.broadcast_tensors(*i)).amax(0),),
    "Min": lambda i, a: (torch.stack(torch.broadcast_tensors(*i)).amin(0),),
    "Gelu": _gelu, "FastGelu": _fast_gelu, "HardSigmoid": lambda i, a: (torch.clamp(a.get("alpha", 0.2) * i[0] + a.get("beta", 0.5), 0, 1),),
    "HardSwish": lambda i, a: (F.hardswish(i[0]),), "Softmax": lambda i, a: (torch.softmax(i[0], a.get("axis", -1)),),
    "MatMul": lambda i, a: (i[0] @ i[1],), "Gemm": _gemm, "Conv": _conv,
    "Transpose": lambda i, a: (i[0].permute(a["perm"]) if "perm" in a else i[0].permute(*reversed(range(i[0].dim()))),),
    "Reshape": lambda i, a: (_reshape(i[0], i[1], a.get("allowzero", 0)),),
    "Flatten": lambda i, a: (i[0].reshape(int(torch.tensor(i[0].shape[:a.get("axis", 1) % max(i[0].dim(), 1)]).prod())
                                          if a.get("axis", 1) else 1, -1),),
    "Unsqueeze": _unsqueeze, "Squeeze": _squeeze, "Concat": lambda i, a: (torch.cat(i, a["axis"]),),
    "Gather": lambda i, a: (torch.index_select(i[0], a.get("axis", 0) % i[0].dim(),
                                               (i[1] % i[0].shape[a.get("axis", 0)]).reshape(-1))
                            .reshape(list(i[0].shape[:a.get("axis", 0) % i[0].dim()]) + list(i[1].shape)
                                     + list(i[0].shape[a.get("axis", 0) % i[0].dim() + 1:])),),
    "Shape": lambda i, a: (torch.tensor(i[0].shape[a.get("start", 0):a.get("end")], dtype=torch.int64),),
    "Cast": lambda i, a: (i[0].to(torch_dtype(a["to"])),), "Slice": lambda i, a: (_slice(i, a),),
    "Where": lambda i, a: (torch.where(i[0], i[1], i[2]),), "Equal": lambda i, a: (i[0] == i[1],),
    "Less": lambda i, a: (i[0] < i[1],), "Greater": lambda i, a: (i[0] > i[1],), "Not": lambda i, a: (~i[0],),
    "And": lambda i, a: (i[0] & i[1],), "Or": lambda i, a: (i[0] | i[1],),
    "Expand": lambda i, a: (i[0] * torch.ones(_ints(i[1]), dtype=i[0].dtype, device=i[0].device),),
    "ReduceMean": _reduce(lambda x, ax, k: x.mean(ax, keepdim=k)),
    "ReduceSum": _reduce(lambda x, ax, k: x.sum(ax, keepdim=k)),
    "ReduceMax": _reduce(lambda x, ax, k: x.amax(ax, keepdim=k)),
    "ReduceL2": _reduce(lambda x, ax, k: torch.sqrt((x * x).sum(ax, keepdim=k))),
    "LayerNormalization": _layer_norm, "Constant": _constant,
    "ConstantOfShape": lambda i, a: (torch.full(_ints(i[0]), float(a["value"].ravel()[0]) if "value" in a else 0.0,
                                                dtype=torch.as_tensor(np.array(a["value"])).dtype if "value" in a
                                                else torch.float32),),
    "Identity": lambda i, a: (i[0],), "Clip": _clip, "Split": _split,
    "Mod": lambda i, a: (torch.fmod(i[0], i[1]) if a.get("fmod", 0) else torch.remainder(i[0], i[1]),),
    "Range": lambda i, a: (torch.arange(i[0].item(), i[1].item(), i[2].item(), dtype=i[0].dtype),),
    "Dropout": lambda i, a: (i[0], torch.ones_like(i[0], dtype=torch.bool)),
    "IsNaN": lambda i, a: (torch.isnan(i[0]),),
    "IsInf": lambda i, a: ((torch.isposinf(i[0]) & bool(a.get("detect_positive", 1)))
                           | (torch.isneginf(i[0]) & bool(a.get("detect_negative", 1))),),
    "Sin": lambda i, a: (torch.sin(i[0]),), "Cos": lambda i, a: (torch.cos(i[0]),),
    "Floor": lambda i, a: (torch.floor(i[0]),), "Ceil": lambda i, a: (torch.ceil(i[0]),),
    "Round": lambda i, a: (torch.round(i[0]),), "Sign": lambda i, a: (torch.sign(i[0]),),
    "LessOrEqual": lambda i, a: (i[0] <= i[1],), "GreaterOrEqual": lambda i, a: (i[0] >= i[1],),
    "ReduceMin": _reduce(lambda x, ax, k: x.amin(ax, keepdim=k)),
    "Softplus": lambda i, a: (F.softplus(i[0]),), "LeakyRelu": lambda i, a: (F.leaky_relu(i[0], a.get("alpha", 0.01)),),
    "Tile": lambda i, a: (i[0].repeat(_ints(i[1])),), "Pad": _pad, "CumSum": _cumsum, "GatherND": _gather_nd,
    "InstanceNormalization": _instance_norm, "GroupNormalization": _group_norm, "BatchNormalization": _batch_norm,
    "MaxPool": _pool("MaxPool"), "AveragePool": _pool("AveragePool"),
    "GlobalAveragePool": lambda i, a: (i[0].mean(tuple(range(2, i[0].dim())), keepdim=True),),
    "GlobalMaxPool": lambda i, a: (i[0].amax(tuple(range(2, i[0].dim())), keepdim=True),),
}
