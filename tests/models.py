"""ONNX models built in code from fixed seeds: one per MLP pattern the exporters write, and a few non-MLPs."""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

D, H = 16, 48  # width of the residual stream and of the MLP hidden layer


class Builder:
    """A tiny graph builder: adds nodes and initializers with unique names."""

    def __init__(self, seed: int = 0, opset: int = 17):
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.opset = opset
        self.count = 0

    def name(self, base: str) -> str:
        self.count += 1
        return f"{base}_{self.count}"

    def const(self, value, base: str = "c") -> str:
        name = self.name(base)
        self.inits.append(nh.from_array(np.asarray(value, np.float32), name))
        return name

    def const_node(self, value, base: str = "k") -> str:
        name = self.name(base)
        self.nodes.append(h.make_node("Constant", [], [name], value=nh.from_array(np.asarray(value, np.float32))))
        return name

    def op(self, op: str, inputs: list[str], domain: str = "", **attrs) -> str:
        out = self.name(op.lower())
        self.nodes.append(h.make_node(op, inputs, [out], name=self.name(op), domain=domain, **attrs))
        return out

    def weight(self, shape, scale=None) -> np.ndarray:
        scale = scale or 1.0 / math.sqrt(shape[0])
        return (self.rng.standard_normal(shape) * scale).astype(np.float32)

    def model(self, x: str, y: str, in_shape=("batch", "seq", D), out_shape=("batch", "seq", D)) -> onnx.ModelProto:
        graph = h.make_graph(self.nodes, "test", [h.make_tensor_value_info(x, T.FLOAT, list(in_shape))],
                             [h.make_tensor_value_info(y, T.FLOAT, list(out_shape))], self.inits)
        opsets = [h.make_opsetid("", self.opset)]
        if any(n.domain == "com.microsoft" for n in self.nodes):
            opsets.append(h.make_opsetid("com.microsoft", 1))
        model = h.make_model(graph, opset_imports=opsets)
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model


def linear(b: Builder, x: str, n_in: int, n_out: int, style: str = "matmul", bias: bool = True) -> str:
    w = b.weight((n_in, n_out))
    if style == "gemm":
        return b.op("Gemm", [x, b.const(w.T), b.const(b.weight((n_out,), 0.1))] if bias else [x, b.const(w.T)],
                    transB=1)
    if style == "constant_node":
        y = b.op("MatMul", [x, b.const_node(w)])
    elif style == "identity":
        y = b.op("MatMul", [x, b.op("Identity", [b.const(w)])])
    else:
        y = b.op("MatMul", [x, b.const(w)])
    return b.op("Add", [b.const(b.weight((n_out,), 0.1)), y]) if bias else y


def activation(b: Builder, x: str, kind: str) -> str:
    if kind == "gelu":
        return b.op("Gelu", [x])
    if kind == "erf_old":   # torch.onnx legacy: Div(√2) → Erf → Add(1) → Mul(x) → Mul(0.5)
        e = b.op("Erf", [b.op("Div", [x, b.const(math.sqrt(2.0))])])
        return b.op("Mul", [b.op("Mul", [x, b.op("Add", [e, b.const(1.0)])]), b.const(0.5)])
    if kind == "erf_new":   # dynamo: 0.5·x first, then times (1 + erf(x·1/√2))
        half = b.op("Mul", [x, b.const(0.5)])
        e = b.op("Erf", [b.op("Mul", [x, b.const(1 / math.sqrt(2.0))])])
        return b.op("Mul", [half, b.op("Add", [e, b.const(1.0)])])
    if kind == "tanh":
        cube = b.op("Mul", [b.op("Pow", [x, b.const(3.0)]), b.const(0.044715)])
        t = b.op("Tanh", [b.op("Mul", [b.op("Add", [x, cube]), b.const(math.sqrt(2 / math.pi))])])
        return b.op("Mul", [b.op("Mul", [x, b.const(0.5)]), b.op("Add", [t, b.const(1.0)])])
    if kind == "fastgelu":
        return b.op("FastGelu", [x], domain="com.microsoft")
    if kind == "relu":
        return b.op("Relu", [x])
    if kind == "silu":
        return b.op("Mul", [x, b.op("Sigmoid", [x])])
    if kind == "hardswish":
        return b.op("HardSwish", [x])
    raise ValueError(kind)


PATTERNS = {  # activation kind → pattern name discovery must report
    "gelu": "gelu", "erf_old": "erf-gelu", "erf_new": "erf-gelu", "tanh": "tanh-gelu", "fastgelu": "fast-gelu",
    "relu": "relu", "silu": "silu", "hardswish": "hardswish",
}


def mlp_model(act: str = "gelu", style: str = "matmul", blocks: int = 2, seed: int = 0, residual: bool = True,
              bias: bool = True) -> onnx.ModelProto:
    """`blocks` residual MLP blocks with LayerNorm-free skip connections: x + fc2(act(fc1(x)))."""
    b = Builder(seed, opset=20 if act == "gelu" else 17)
    x = "x"
    for _ in range(blocks):
        flat = b.op("Reshape", [x, b.const(np.array([-1, D]), "shape")]) if style == "gemm" else x
        y = linear(b, activation(b, linear(b, flat, D, H, style, bias), act), H, D, style, bias)
        if style == "gemm":
            y = b.op("Reshape", [y, b.op("Shape", [x])])
        x = b.op("Add", [x, y]) if residual else y
    _fix_int_shapes(b)
    return b.model("x", x)


def gated_mlp_model(act: str = "silu", blocks: int = 2, seed: int = 0, bias: bool = False) -> onnx.ModelProto:
    """LLaMA / T5-v1.1-style gated MLPs: x + down(act(gate(x)) * up(x))."""
    b = Builder(seed, opset=20 if act == "gelu" else 17)
    x = "x"
    for _ in range(blocks):
        hidden = b.op("Mul", [activation(b, linear(b, x, D, H, bias=bias), act), linear(b, x, D, H, bias=bias)])
        x = b.op("Add", [x, linear(b, hidden, H, D, bias=bias)])
    return b.model("x", x)


def shared_weight_model(seed: int = 0) -> onnx.ModelProto:
    """Two MLP blocks that use the very same fc1 and fc2 initializers (tied layers)."""
    b = Builder(seed)
    w1, w2 = b.const(b.weight((D, H))), b.const(b.weight((H, D)))
    x = "x"
    for _ in range(2):
        x = b.op("Add", [x, b.op("MatMul", [b.op("Relu", [b.op("MatMul", [x, w1])]), w2])])
    return b.model("x", x)


def no_mlp_model(seed: int = 0) -> onnx.ModelProto:
    """A single linear layer, a softmax and a residual: nothing an MLP pass can rewrite."""
    b = Builder(seed)
    y = b.op("Softmax", [linear(b, "x", D, D)], axis=-1)
    return b.model("x", b.op("Add", ["x", y]))


def conv_mlp_model(seed: int = 0) -> onnx.ModelProto:
    """A 1×1-conv MLP (CNN style): reported as a near-miss, not rewritten."""
    b = Builder(seed)
    w1 = b.const(b.weight((H, D, 1, 1)))
    w2 = b.const(b.weight((D, H, 1, 1)))
    y = b.op("Conv", [b.op("Gelu", [b.op("Conv", ["x", w1])]), w2])
    b.opset = 20
    return b.model("x", y, ("batch", D, 8, 8), ("batch", D, 8, 8))


def attention_model(blocks: int = 2, heads: int = 4, seed: int = 0, head_bias: bool = False) -> onnx.ModelProto:
    """Residual multi-head self-attention blocks as TorchScript writes them (Reshape to [0, 0, heads, dh],
    Transpose, scaled Q·Kᵀ, Softmax, ·V, back to [0, 0, D], output projection). `head_bias` adds a constant
    per-head term to the scores (as T5's relative-position bias), which head removal cannot slice."""
    b = Builder(seed)
    dh = D // heads
    x = "x"
    for _ in range(blocks):
        q, k, v = (linear(b, x, D, D) for _ in range(3))
        split = b.const(np.array([0, 0, heads, dh]), "shape")
        qh = b.op("Transpose", [b.op("Reshape", [q, split])], perm=[0, 2, 1, 3])
        kt = b.op("Transpose", [b.op("Reshape", [k, split])], perm=[0, 2, 3, 1])
        vh = b.op("Transpose", [b.op("Reshape", [v, split])], perm=[0, 2, 1, 3])
        scores = b.op("Div", [b.op("MatMul", [qh, kt]), b.const(np.array(np.sqrt(dh)))])
        if head_bias:
            scores = b.op("Add", [scores, b.const(b.weight((1, heads, 1, 1), 1.0))])
        context = b.op("MatMul", [b.op("Softmax", [scores], axis=-1), vh])
        merged = b.op("Reshape", [b.op("Transpose", [context], perm=[0, 2, 1, 3]), b.const(np.array([0, 0, D]), "shape")])
        x = b.op("Add", [x, linear(b, merged, D, D)])
    _fix_int_shapes(b)
    return b.model("x", x)


def _fix_int_shapes(b: Builder) -> None:
    """Reshape shape constants must be int64 (Builder.const makes float32)."""
    for i, init in enumerate(b.inits):
        if init.name.startswith("shape"):
            b.inits[i] = nh.from_array(nh.to_array(init).astype(np.int64), init.name)


def feeds(model: onnx.ModelProto, count: int = 4, seed: int = 1, seq: int = 5) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    x = model.graph.input[0]
    dims = [d.dim_value or 2 for d in x.type.tensor_type.shape.dim]
    if len(dims) == 3:
        dims[1] = seq
    return [{x.name: rng.standard_normal(dims).astype(np.float32)} for _ in range(count)]


def run(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feed)


def conv_model(seed: int = 0) -> onnx.ModelProto:
    """Conv 3×3 (+bias) → Relu → Conv 1×1 (no bias), NCHW."""
    b = Builder(seed)
    h = b.op("Relu", [b.op("Conv", ["x", b.const(b.weight((8, 3, 3, 3))), b.const(b.weight((8,), 0.1))],
                           pads=[1, 1, 1, 1])])
    y = b.op("Conv", [h, b.const(b.weight((4, 8, 1, 1)))])
    return b.model("x", y, in_shape=("batch", 3, 6, 6), out_shape=("batch", 4, 6, 6))


def distorted_student(groups: int = 4, seed: int = 3, teacher: onnx.ModelProto | None = None
                      ) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """(teacher, student): the student is the teacher (an MLP model by default) with every linear's output scaled
    and shifted per group of channels — exactly what GRASP group affines can undo."""
    import onnx_graphsurgeon as gs

    from edgec.passes.recovery.affines import Affine, fold
    from edgec.passes.recovery.sites import find_sites

    teacher = teacher or mlp_model("gelu")
    graph = gs.import_onnx(teacher)
    rng = np.random.default_rng(seed)
    for site in find_sites(graph, "linear"):
        fold(site, Affine(1 + rng.normal(0, 0.15, groups), rng.normal(0, 0.1, groups) * site.shifts))
    return teacher, gs.export_onnx(graph)


def cnn_classifier_model(seed: int = 0) -> onnx.ModelProto:
    """A small image classifier as exporters write it: Conv → BatchNormalization → Relu (twice), global average
    pooling, Flatten, a Gemm head. NCHW, 3×16×16 input, 10 logits."""
    b = Builder(seed)
    x = "x"
    for c_in, c_out in ((3, 16), (16, 32)):
        conv = b.op("Conv", [x, b.const(b.weight((c_out, c_in, 3, 3), 0.3)), b.const(b.weight((c_out,), 0.1))],
                    pads=[1, 1, 1, 1])
        bn = b.op("BatchNormalization", [conv, b.const(1 + 0.1 * b.rng.random(c_out)), b.const(b.weight((c_out,), 0.1)),
                                         b.const(b.weight((c_out,), 0.1)), b.const(1 + b.rng.random(c_out))])
        x = b.op("Relu", [bn])
    flat = b.op("Flatten", [b.op("GlobalAveragePool", [x])], axis=1)
    logits = b.op("Gemm", [flat, b.const(b.weight((10, 32))), b.const(b.weight((10,), 0.1))], transB=1)
    return b.model("x", logits, in_shape=("batch", 3, 16, 16), out_shape=("batch", 10))


def low_rank_mlp_model(blocks: int = 4, d: int = 64, hidden: int = 256, rank: int = 16, noise: float = 1e-3,
                       seed: int = 0) -> onnx.ModelProto:
    """Residual GELU MLP blocks whose weights have rank `rank` plus `noise`: the easiest case for a factorizing
    pass (x + fc2(gelu(fc1(x))), d → hidden → d)."""
    b = Builder(seed, opset=20)

    def low_rank(n_in: int, n_out: int) -> str:
        w = b.rng.standard_normal((n_in, rank)) @ b.rng.standard_normal((rank, n_out)) / math.sqrt(n_in * rank)
        return b.const(w + noise * b.rng.standard_normal((n_in, n_out)))

    x = "x"
    for _ in range(blocks):
        h = b.op("Gelu", [b.op("Add", [b.op("MatMul", [x, low_rank(d, hidden)]), b.const(b.weight((hidden,), 0.1))])])
        y = b.op("Add", [b.op("MatMul", [h, low_rank(hidden, d)]), b.const(b.weight((d,), 0.1))])
        x = b.op("Add", [x, y])
    return b.model("x", x, in_shape=("batch", "seq", d), out_shape=("batch", "seq", d))


def wide_cnn_model(seed: int = 0, rank: int = 6) -> onnx.ModelProto:
    """A CNN whose layers are wider than they need to be (each Conv's output channels span `rank` directions plus
    noise), through what exporters put between convolutions: Conv → BatchNormalization → Relu; Conv (stride 2) →
    SiLU as x·sigmoid(x); a depthwise Conv → Clip; a 1×1 Conv → Relu; a residual block (its Add joins two
    branches); MaxPool; Flatten of 4×4 maps into a Gemm. NCHW, 3×16×16 input, 10 logits."""
    b = Builder(seed)

    def redundant(c_out: int, c_in: int, k: int, scale: float = 1.0) -> str:
        basis = b.rng.standard_normal((rank, c_in * k * k)) / math.sqrt(c_in * k * k)
        mix = b.rng.standard_normal((c_out, rank))
        w = mix @ basis + 0.02 * b.rng.standard_normal((c_out, c_in * k * k)) / math.sqrt(c_in * k * k)
        return b.const(scale * w.reshape(c_out, c_in, k, k))

    conv = b.op("Conv", ["x", redundant(24, 3, 3), b.const(b.weight((24,), 0.1))], pads=[1, 1, 1, 1])
    bn = b.op("BatchNormalization", [conv, b.const(1 + 0.1 * b.rng.random(24)), b.const(b.weight((24,), 0.1)),
                                     b.const(b.weight((24,), 0.1)), b.const(1 + b.rng.random(24))])
    x = b.op("Relu", [bn])
    conv = b.op("Conv", [x, redundant(32, 24, 3), b.const(b.weight((32,), 0.1))], pads=[1, 1, 1, 1], strides=[2, 2])
    x = b.op("Mul", [conv, b.op("Sigmoid", [conv])])
    depthwise = b.op("Conv", [x, b.const(b.weight((32, 1, 3, 3), 0.3)), b.const(b.weight((32,), 0.1))],
                     pads=[1, 1, 1, 1], group=32)
    x = b.op("Clip", [depthwise, b.const(0.0), b.const(6.0)])
    x = b.op("Relu", [b.op("Conv", [x, redundant(32, 32, 1)])])
    branch = b.op("Relu", [b.op("Conv", [x, redundant(32, 32, 3, 0.5), b.const(b.weight((32,), 0.1))],
                                pads=[1, 1, 1, 1])])
    x = b.op("Add", [x, branch])
    x = b.op("Relu", [b.op("Conv", [x, redundant(32, 32, 3), b.const(b.weight((32,), 0.1))], pads=[1, 1, 1, 1])])
    x = b.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
    flat = b.op("Flatten", [x], axis=1)
    logits = b.op("Gemm", [flat, b.const(b.weight((32 * 16, 10))), b.const(b.weight((10,), 0.1))])
    return b.model("x", logits, in_shape=("batch", 3, 16, 16), out_shape=("batch", 10))


def constant_channels_cnn_model(seed: int = 0, flatten: bool = False) -> onnx.ModelProto:
    """Conv 3→16 whose last 8 output channels have zero weights (constant after BatchNormalization and Relu) →
    Conv 16→8 (3×3, no padding) → Relu → GlobalAveragePool (or, with `flatten`, the 4×4 maps) → Flatten → Gemm.
    Removing the 8 constant channels and moving their share into the next layer's bias is exact."""
    b = Builder(seed)
    w = b.weight((16, 3, 3, 3), 0.3)
    w[8:] = 0.0
    conv = b.op("Conv", ["x", b.const(w), b.const(b.weight((16,), 0.5))], pads=[1, 1, 1, 1])
    bn = b.op("BatchNormalization", [conv, b.const(1 + 0.1 * b.rng.random(16)), b.const(b.weight((16,), 0.1)),
                                     b.const(b.weight((16,), 0.1)), b.const(1 + b.rng.random(16))])
    x = b.op("Relu", [bn])
    x = b.op("Relu", [b.op("Conv", [x, b.const(b.weight((8, 16, 3, 3), 0.3)), b.const(b.weight((8,), 0.1))])])
    x = b.op("Flatten", [x if flatten else b.op("GlobalAveragePool", [x])], axis=1)
    rows = 8 * 36 if flatten else 8
    logits = b.op("Gemm", [x, b.const(b.weight((rows, 10))), b.const(b.weight((10,), 0.1))])
    return b.model("x", logits, in_shape=("batch", 3, 8, 8), out_shape=("batch", 10))


def stateful_model(seed: int = 0) -> onnx.ModelProto:
    """A stream's step: the state it is given goes through a 64×64 MatMul to the state it hands to the next run
    (state → stateN), the output reads it."""
    w = nh.from_array(np.random.default_rng(seed).standard_normal((64, 64)).astype(np.float32), "w")
    graph = h.make_graph([h.make_node("Add", ["x", "state"], ["s"]), h.make_node("MatMul", ["s", "w"], ["stateN"]),
                          h.make_node("Relu", ["stateN"], ["output"])], "g",
                         [h.make_tensor_value_info("x", T.FLOAT, [1, 64]), h.make_tensor_value_info("state", T.FLOAT, [1, 64])],
                         [h.make_tensor_value_info("output", T.FLOAT, [1, 64]),
                          h.make_tensor_value_info("stateN", T.FLOAT, [1, 64])], [w])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])


def relu_cnn_model(groups: int = 1, seed: int = 0) -> onnx.ModelProto:
    """conv → relu → conv (grouped as asked) → relu → 1×1 conv: inputs after a ReLU have a positive mean, so each
    layer's weight rounding shifts its outputs."""
    rng = np.random.default_rng(seed)
    init = [nh.from_array(rng.normal(0, 0.4, (8, 3, 3, 3)).astype(np.float32), "w0"),
            nh.from_array(rng.normal(0, 0.4, (8, 8 // groups, 3, 3)).astype(np.float32), "w1"),
            nh.from_array(rng.normal(0, 0.4, (4, 8, 1, 1)).astype(np.float32), "w2")]
    init += [nh.from_array(rng.normal(0, 0.1, (c,)).astype(np.float32), f"b{i}") for i, c in enumerate((8, 8, 4))]
    nodes = [h.make_node("Conv", ["x", "w0", "b0"], ["a"], name="conv0", pads=[1] * 4),
             h.make_node("Relu", ["a"], ["ra"], name="relu0"),
             h.make_node("Conv", ["ra", "w1", "b1"], ["c"], name="conv1", pads=[1] * 4, group=groups),
             h.make_node("Relu", ["c"], ["rc"], name="relu1"),
             h.make_node("Conv", ["rc", "w2", "b2"], ["y"], name="conv2")]
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, [1, 3, 16, 16])],
                              [h.make_tensor_value_info("y", T.FLOAT, [1, 4, 16, 16])], init)
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 13)])


def relu_cnn_feeds(count: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"x": rng.normal(0.5, 1.0, (1, 3, 16, 16)).astype(np.float32)} for _ in range(count)]
