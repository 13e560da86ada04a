"""Per-channel affine ops after a convolution folded into its weights and bias.

Some exports write a batch normalization (or a scale and shift) after a Conv as elementwise ops with per-channel
constants — (conv(x) − μ)·γ + β as Sub, Mul, Add — which ONNX Runtime folds only in part (it has Conv+Add and Conv+Mul
fusions, not Sub or Div, and stops at the first op it cannot take). Each op left is a float pass over the whole
activation, and in static int8 a quantized elementwise op and a quantization point more: open-nsfw exported from
PyTorch has 53 such chains. A chain of Add/Sub/Mul/Div by constants that broadcast per output channel (or scalars),
each read only by the next, is y = conv(x)·s + t: the Conv's weights are scaled by s and its bias becomes b·s + t —
exact up to float rounding. ONNX Runtime's own fusions also stop at constants of another rank than the weight's
(a scalar stored as [1]) and at 1-D convolutions.

A chain before a Conv that pads nothing, x·s + t by per-input-channel constants, folds into it too: each weight of
input channel c is scaled by s_c, and t's contribution, the same at every output position when no tap reads padding,
joins the bias. PP-LCNetV3 (PaddleOCR's v4 detector and recognizer) puts a learnable scalar scale and shift after
every convolution and every hard-swish: 56 elementwise ops, each also a layout change around ONNX Runtime's blocked
convolutions, a third of the recognizer's time.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from edgec.passes.graph_tools import inferred_shapes, protected_names, readers

AFFINE_OPS = ("Add", "Sub", "Mul", "Div")


def affine_folded(model: onnx.ModelProto, beyond_runtime: bool = False) -> tuple[onnx.ModelProto, int]:
    """The model with each Conv's trailing per-channel affine chain folded into it, and how many Convs took one.
    `beyond_runtime`: only chains with a Sub or Div (ONNX Runtime folds Add and Mul chains itself at load)."""
    graph = model.graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    users = readers(model)
    outputs = protected_names(model)
    # the shapes an input-side fold checks, inferred before the output-side folds rename anything
    shapes = inferred_shapes(model) if _affine_before_conv(model, constants) else {}
    dropped: set[int] = set()
    folded = 0
    for conv in graph.node:
        weight = constants.get(conv.input[1]) if conv.op_type == "Conv" and len(conv.input) > 1 else None
        if weight is None or weight.dtype != np.float32 or (len(conv.input) > 2 and conv.input[2] not in constants):
            continue
        chain, scale, shift = _affine_chain(conv.output[0], weight.shape[0], weight.ndim, users, constants, outputs)
        if not chain or (beyond_runtime and _runtime_folds(chain, constants, weight)):
            continue
        bias = constants[conv.input[2]] if len(conv.input) > 2 else np.zeros(weight.shape[0], np.float32)
        new_weight = (weight * scale.reshape(-1, *[1] * (weight.ndim - 1))).astype(np.float32)
        new_bias = (bias.astype(np.float64) * scale + shift).astype(np.float32)
        names = (f"{conv.input[1]}_{conv.output[0]}_folded", f"{conv.output[0]}_bias_folded")
        graph.initializer.extend([numpy_helper.from_array(new_weight, names[0]),
                                  numpy_helper.from_array(new_bias, names[1])])
        constants.update({names[0]: new_weight, names[1]: new_bias})     # an input-side fold may follow
        del conv.input[1:]
        conv.input.extend(names)
        conv.output[0] = chain[-1].output[0]
        dropped.update(id(n) for n in chain)
        folded += 1
    folded += _inputs_folded(model, constants, users, outputs, shapes, dropped)
    if folded:
        kept = [n for n in graph.node if id(n) not in dropped]
        del graph.node[:]
        graph.node.extend(kept)
        read = {i for n in graph.node for i in n.input}     # a weight folded twice leaves its first fold unread
        unread = [t for t in graph.initializer if t.name.endswith("_folded") and t.name not in read]
        for tensor in unread:
            graph.initializer.remove(tensor)
    return model, folded


def _runtime_folds(chain: list[onnx.NodeProto], constants: dict, weight: np.ndarray) -> bool:
    """Whether ONNX Runtime's Conv+Mul / Conv+Add fusions fold the whole chain at load: Add and Mul only, a 2-D or
    wider convolution, each constant a rank-0 scalar or [1, C, 1, …] / [C, 1, …] of the weight's rank."""
    if weight.ndim < 4 or any(n.op_type not in ("Add", "Mul") for n in chain):
        return False
    for node in chain:
        value = next(constants[i] for i in node.input if i in constants)
        per_channel = [weight.shape[0] if axis == (1 if value.ndim == weight.ndim else 0) else 1
                       for axis in range(value.ndim)]
        if value.ndim and (value.ndim not in (weight.ndim, weight.ndim - 1) or list(value.shape) != per_channel):
            return False
    return True


def _affine_before_conv(model: onnx.ModelProto, constants: dict) -> bool:
    """Whether any Conv reads the output of an Add/Sub/Mul/Div by a constant (an input-side fold may apply)."""
    made_by_affine = {n.output[0] for n in model.graph.node
                      if n.op_type in AFFINE_OPS and any(i in constants for i in n.input)}
    return any(n.op_type == "Conv" and n.input[0] in made_by_affine for n in model.graph.node)


def _inputs_folded(model: onnx.ModelProto, constants: dict, users: dict, outputs: set[str],
                   shapes: dict[str, list[int | None]], dropped: set[int]) -> int:
    """Fold each affine chain that only feeds a padding-free Conv into it (x·s + t: weights scaled per input channel,
    Σ W·t into the bias), where the chain's input is known to have the Conv's input shape (a constant could broadcast
    a narrower one up to it); how many Convs took one. Nodes folded are added to `dropped`."""
    producers = {out: n for n in model.graph.node for out in n.output}
    folded = 0
    for conv in model.graph.node:
        weight = constants.get(conv.input[1]) if conv.op_type == "Conv" and len(conv.input) > 1 else None
        if weight is None or weight.dtype != np.float32 or (len(conv.input) > 2 and conv.input[2] not in constants) \
                or not _pads_nothing(conv):
            continue
        groups = int(next((a.i for a in conv.attribute if a.name == "group"), 1))
        chain, source = _chain_before(conv.input[0], weight.shape[1] * groups, weight.ndim, producers, users,
                                      constants, outputs, dropped)
        shape = shapes.get(source)
        if not chain or (groups > 1 and not _uniform(chain, constants)) or shape is None \
                or len(shape) != weight.ndim or shape[1] != weight.shape[1] * groups:
            continue
        scale, shift = np.ones(weight.shape[1] * groups), np.zeros(weight.shape[1] * groups)
        for node in chain:
            value = _per_channel(constants[next(i for i in node.input if i in constants)], len(scale), weight.ndim)
            assert value is not None                # `_chain_before` took only per-channel constants
            scale, shift = _applied(node.op_type, value, scale, shift)
        in_scale = scale[_input_index(weight.shape, groups)]          # [M, C/g]: each weight's input channel
        in_shift = shift[_input_index(weight.shape, groups)]
        taps = weight.reshape(weight.shape[0], weight.shape[1], -1)
        bias = constants[conv.input[2]] if len(conv.input) > 2 else np.zeros(weight.shape[0], np.float32)
        new_bias = bias.astype(np.float64) + np.einsum("mck,mc->m", taps.astype(np.float64), in_shift)
        new_weight = weight * in_scale.reshape(*in_scale.shape, *[1] * (weight.ndim - 2))
        names = (f"{conv.input[1]}_{conv.output[0]}_input_folded", f"{conv.output[0]}_bias_input_folded")
        model.graph.initializer.extend([numpy_helper.from_array(new_weight.astype(np.float32), names[0]),
                                        numpy_helper.from_array(new_bias.astype(np.float32), names[1])])
        conv.input[0] = source
        del conv.input[1:]
        conv.input.extend(names)
        dropped.update(id(n) for n in chain)
        folded += 1
    return folded


def _chain_before(tensor: str, channels: int, rank: int, producers: dict, users: dict, constants: dict,
                  outputs: set[str], dropped: set[int]) -> tuple[list[onnx.NodeProto], str]:
    """The affine nodes that end in `tensor`, each read only by the next (the last only by the Conv), in graph
    order, and the value they start from."""
    chain: list[onnx.NodeProto] = []
    while tensor not in outputs and len(users.get(tensor, [])) == 1:
        node = producers.get(tensor)
        if node is None or id(node) in dropped or node.op_type not in AFFINE_OPS or len(node.input) != 2:
            break
        variable = [i for i in node.input if i not in constants]
        value = _per_channel(constants[next(i for i in node.input if i in constants)], channels, rank) \
            if len(variable) == 1 else None
        if value is None or (node.op_type in ("Sub", "Div") and node.input[0] != variable[0]) \
                or (node.op_type == "Div" and not np.all(value)):
            break
        chain.insert(0, node)
        tensor = variable[0]
    return chain, tensor


def _pads_nothing(conv: onnx.NodeProto) -> bool:
    """No tap of the Conv reads padding, so a shift of its input adds the same Σ W·t at every output position."""
    attrs = {a.name: a for a in conv.attribute}
    auto_pad = attrs["auto_pad"].s.decode() if "auto_pad" in attrs else "NOTSET"
    return auto_pad in ("NOTSET", "VALID") and not any(attrs["pads"].ints if "pads" in attrs else [])


def _uniform(chain: list[onnx.NodeProto], constants: dict) -> bool:
    """Every constant of the chain a single value (a grouped Conv then needs no per-group bookkeeping)."""
    return all(constants[i].size == 1 for n in chain for i in n.input if i in constants)


def _input_index(shape: tuple[int, ...], groups: int) -> np.ndarray:
    """[M, C/g]: the input channel each weight column reads in a Conv of `groups` groups."""
    per_group_out, per_group_in = shape[0] // groups, shape[1]
    group = np.arange(shape[0]) // per_group_out
    return group[:, None] * per_group_in + np.arange(per_group_in)[None, :]


def _affine_chain(tensor: str, channels: int, rank: int, users: dict, constants: dict,
                  outputs: set[str]) -> tuple[list[onnx.NodeProto], np.ndarray, np.ndarray]:
    """The Add/Sub/Mul/Div nodes that follow `tensor`, each the only reader of the last, by per-channel constants;
    with the scale s and shift t they apply together (y = x·s + t)."""
    chain: list[onnx.NodeProto] = []
    scale, shift = np.ones(channels), np.zeros(channels)
    while tensor not in outputs and len(users.get(tensor, [])) == 1:
        node = users[tensor][0]
        if node.op_type not in AFFINE_OPS or len(node.input) != 2 or list(node.input).count(tensor) != 1:
            break
        other = node.input[1] if node.input[0] == tensor else node.input[0]
        value = _per_channel(constants.get(other), channels, rank)
        if value is None or (node.op_type in ("Sub", "Div") and node.input[0] != tensor) \
                or (node.op_type == "Div" and not np.all(value)):
            break
        scale, shift = _applied(node.op_type, value, scale, shift)
        chain.append(node)
        tensor = node.output[0]
    return chain, scale, shift


def _applied(op: str, value: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(scale, shift) of x·scale + shift after one more affine op by `value`."""
    if op == "Add":
        return scale, shift + value
    if op == "Sub":
        return scale, shift - value
    if op == "Mul":
        return scale * value, shift * value
    return scale / value, shift / value


def _per_channel(value: np.ndarray | None, channels: int, rank: int) -> np.ndarray | None:
    """A float constant as one value per output channel: a scalar, or a shape that broadcasts along axis 1 alone
    ([C, 1, …] or [1, C, 1, …] for a Conv output of `rank` dims) and changes no output shape."""
    if value is None or not np.issubdtype(value.dtype, np.floating) or value.ndim > rank:
        return None
    if value.size == 1:
        return np.full(channels, float(value.reshape(-1)[0]))
    shape = [1] * (rank - value.ndim) + list(value.shape)
    if shape != [1, channels, *([1] * (rank - 2))]:
        return None
    return value.reshape(-1).astype(np.float64)
