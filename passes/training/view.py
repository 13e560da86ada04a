"""A trainable view of an ONNX graph: the same nodes executed with torch, its float weights as parameters.

Used by recovery distillation. The view never changes the graph's structure: after training,
`write_back` returns the model with only the trained initializers' values replaced. Operators it cannot
execute are reported by `unsupported_ops` so the caller can fall back (block-wise training) with a note.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from edgec.passes.training.ops import CONTRIB_OPS, OPS

TRAINABLE_CONSUMERS = {"MatMul", "Gemm", "Add", "Mul", "LayerNormalization", "Conv"}


class UnsupportedGraph(Exception):
    pass


def unsupported_ops(model: onnx.ModelProto) -> list[str]:
    ops = {n.op_type for n in model.graph.node if n.domain in ("", "ai.onnx")}
    foreign = {f"{n.domain}.{n.op_type}" for n in model.graph.node if n.domain not in ("", "ai.onnx")
               and not (n.domain == "com.microsoft" and n.op_type in CONTRIB_OPS)}
    return sorted((ops - set(OPS)) | foreign)


def trainable_names(model: onnx.ModelProto) -> list[str]:
    """Float initializers with more than one element that feed a weight-bearing op (not shape arithmetic)."""
    inits = {i.name: i for i in model.graph.initializer}
    names = []
    for node in model.graph.node:
        if node.op_type not in TRAINABLE_CONSUMERS:
            continue
        for name in node.input:
            init = inits.get(name)
            if init is None or name in names or init.data_type != onnx.TensorProto.FLOAT:
                continue
            if int(np.prod(init.dims)) > 1:
                names.append(name)
    return names


class TorchView(torch.nn.Module):
    def __init__(self, model: onnx.ModelProto, trainable: list[str] | None = None):
        super().__init__()
        missing = unsupported_ops(model)
        if missing:
            raise UnsupportedGraph(f"operators the torch view cannot run: {', '.join(missing)}")
        if any(a.type == onnx.AttributeProto.GRAPH for n in model.graph.node for a in n.attribute):
            raise UnsupportedGraph("control flow (subgraphs) is not supported by the torch view")
        self.model = model
        self.trainable = list(trainable if trainable is not None else trainable_names(model))
        self.weights = torch.nn.ParameterDict()
        self.constants: dict[str, torch.Tensor] = {}
        self._keys = {name: f"w{i}" for i, name in enumerate(self.trainable)}
        wanted = set(self.trainable)
        for init in model.graph.initializer:
            value = torch.from_numpy(numpy_helper.to_array(init).copy())
            if init.name in wanted:
                self.weights[self._keys[init.name]] = torch.nn.Parameter(value)
            else:
                self.constants[init.name] = value
        self.nodes = [(n.op_type, list(n.input), list(n.output), _attrs(n, len(n.output))) for n in model.graph.node]
        self.output_names = [o.name for o in model.graph.output]
        self.int8: bool | None = None     # None: float; else fake int8 MatMuls, True meaning 7-bit weights
        self.int8_weights = self._matmul_weights()    # fixed by the graph: found once, not on every forward
        self.hooks: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}   # tensor name → rewrite (gates' masks)
        self.device = torch.device("cpu")

    def to_device(self, device: str) -> "TorchView":
        """Move the weights and constants to `device` ('cpu' or 'cuda'); feeds follow in `forward`. Build the
        optimizer after: torch may replace the Parameter objects."""
        self.device = torch.device(device)
        self.to(self.device)
        self.constants = {name: value.to(self.device) for name, value in self.constants.items()}
        return self

    def _matmul_weights(self) -> frozenset[str]:
        """The 2-D float initializers a MatMul or Gemm multiplies by (what dynamic int8 quantizes)."""
        values = {**self.constants, **{name: self.weights[key] for name, key in self._keys.items()}}
        return frozenset(inputs[1] for op, inputs, _, _ in self.nodes if op in ("MatMul", "Gemm") and len(inputs) > 1
                         and inputs[1] in values and values[inputs[1]].dim() == 2
                         and values[inputs[1]].is_floating_point())

    def forward(self, feed: dict[str, torch.Tensor], extra: Sequence[str] = ()) -> dict[str, torch.Tensor]:
        env: dict[str, torch.Tensor] = dict(self.constants)
        env.update({name: self.weights[key] for name, key in self._keys.items()})
        env.update({name: value.to(self.device) for name, value in feed.items()})
        elsewhere = self.device.type != "cpu"     # ops build shape tensors and constants on the CPU
        int8 = self.int8_weights if self.int8 is not None else frozenset()
        for op, inputs, outputs, attrs in self.nodes:
            args = [env[name] if name else None for name in inputs]
            if len(inputs) > 1 and inputs[1] in int8 and args[0] is not None and args[1] is not None:
                args[0], args[1] = _int8_operands(args[0], args[1], bool(self.int8), op, attrs)
            results = OPS[op](args, attrs)
            for name, value in zip(outputs, results, strict=False):
                if name:
                    if elsewhere and isinstance(value, torch.Tensor):
                        value = value.to(self.device)
                    env[name] = self.hooks[name](value) if name in self.hooks else value
        return {name: env[name] for name in list(self.output_names) + list(extra)}

    def named_weights(self) -> list[tuple[str, torch.nn.Parameter]]:
        """(initializer name, parameter) for every trainable initializer."""
        return [(name, self.weights[key]) for name, key in self._keys.items()]

    def write_back(self) -> onnx.ModelProto:
        """The model with every trained initializer replaced by its current value (structure unchanged)."""
        out = onnx.ModelProto()
        out.CopyFrom(self.model)
        for init in out.graph.initializer:
            if init.name in self._keys:
                value = self.weights[self._keys[init.name]].detach().cpu().numpy().astype(np.float32)
                init.CopyFrom(numpy_helper.from_array(value, init.name))
        return out


def _int8_operands(x: torch.Tensor, w: torch.Tensor, reduce_range: bool, op: str, attrs: dict):
    from edgec.passes.training.fake_quant import activation_uint8, weight_int8

    columns = 0 if op == "Gemm" and attrs.get("transB", 0) else 1      # the output channels of B
    return activation_uint8(x), weight_int8(w, reduce_range, axis=columns)


def _attrs(node: onnx.NodeProto, outputs: int) -> dict:
    out = {"_outputs": outputs}            # how many outputs the node uses (LayerNormalization's are optional)
    if node.op_type == "Split":
        out["num_outputs"] = outputs       # opset < 18: as many equal parts as outputs
    for a in node.attribute:
        value = onnx.helper.get_attribute_value(a)
        if isinstance(value, onnx.TensorProto):
            value = numpy_helper.to_array(value)
        elif isinstance(value, bytes):
            value = value.decode()
        out[a.name] = value
    return out


def to_torch_feed(feed: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    try:
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in feed.items()}
    except TypeError as exc:    # strings, bfloat16 and other types torch has no array form of
        raise NotImplementedError(f"an input type torch cannot hold ({exc})") from exc
