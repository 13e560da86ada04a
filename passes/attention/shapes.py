"""Reading and rewriting the shape operands of Reshape nodes: a constant, or a Concat of constant pieces and
computed one-element pieces (TorchScript's `Concat(Unsqueeze(batch), Unsqueeze(seq), [-1], [64])`)."""

from __future__ import annotations

from typing import Callable

import numpy as np
import onnx_graphsurgeon as gs

from edgec.passes.graph_tools import constant_value, fresh_name

Entries = list[int | None]   # None: computed at run time


def shape_entries(tensor: gs.Tensor) -> Entries | None:
    """The entries of a 1-D shape tensor, None where an entry is computed; None if its layout is unknown."""
    const = constant_value(tensor)
    if const is not None:
        return [int(v) for v in np.asarray(const.value).reshape(-1)]
    node = tensor.inputs[0] if tensor.inputs else None
    if node is None or node.op != "Concat":
        return None
    entries: Entries = []
    for piece in node.inputs:
        value = constant_value(piece)
        if value is not None:
            entries.extend(int(v) for v in np.asarray(value.value).reshape(-1))
        elif _one_element(piece):
            entries.append(None)
        else:
            return None
    return entries


def rewrite_shape(graph: gs.Graph, node: gs.Node, index: int, edit: Callable[[Entries], Entries]) -> bool:
    """Replace the entries of `node.inputs[index]` by `edit(entries)`: None stays computed, a number where a
    computed entry was becomes a constant piece. False if the shape cannot be read or nothing changed."""
    tensor = node.inputs[index]
    entries = shape_entries(tensor)
    if entries is None:
        return False
    new = edit(list(entries))
    if new == entries:
        return False
    const = constant_value(tensor)
    if const is not None:
        node.inputs[index] = _int64(graph, tensor.name, new, np.asarray(const.value).shape)
        return True
    concat = tensor.inputs[0]
    position = 0
    pieces = []
    for piece in concat.inputs:
        value = constant_value(piece)
        size = 1 if value is None else int(np.asarray(value.value).size)
        part = new[position:position + size]
        if value is None and part != [None]:       # a computed entry that must now be a known number
            piece = _int64(graph, piece.name, part, (1,))
        elif value is not None and part != [int(v) for v in np.asarray(value.value).reshape(-1)]:
            piece = _int64(graph, piece.name, part, np.asarray(value.value).shape)
        pieces.append(piece)
        position += size
    fresh = gs.Variable(fresh_name(graph, f"{tensor.name}.heads"), dtype=np.int64)
    graph.nodes.append(gs.Node("Concat", name=fresh_name(graph, f"{concat.name}.heads"), attrs=dict(concat.attrs),
                               inputs=pieces, outputs=[fresh]))
    node.inputs[index] = fresh      # a new Concat: the old one may feed other nodes
    return True


def _int64(graph: gs.Graph, base: str, values: list, shape: tuple) -> gs.Constant:
    array = np.asarray(values, dtype=np.int64).reshape(shape if int(np.prod(shape)) == len(values) else (-1,))
    return gs.Constant(fresh_name(graph, f"{base}.heads"), array)


def _one_element(tensor: gs.Tensor) -> bool:
    node = tensor.inputs[0] if tensor.inputs else None
    if node is None:
        return bool(tensor.shape) and list(tensor.shape) == [1]
    if node.op == "Unsqueeze":        # a scalar (Gather of a Shape) made 1-D
        return True
    if node.op in ("Slice", "Shape") or not tensor.shape:
        return bool(tensor.shape) and list(tensor.shape) == [1]
    return list(tensor.shape) == [1]
