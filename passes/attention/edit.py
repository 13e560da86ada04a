"""Removing whole heads from an attention block: Q/K/V lose the heads' output columns, the output projection
their input rows, and the Reshape constants that hold the head count (or heads × head_dim) are rewritten."""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from edgec.passes.attention.discovery import AttentionBlock
from edgec.passes.attention.shapes import Entries, rewrite_shape
from edgec.passes.graph_tools import forget_shapes
from edgec.passes.mlp.edit import set_linear
from edgec.passes.plans.heads import columns


def remove_heads(graph: gs.Graph, block: AttentionBlock, keep: np.ndarray, o_weight: np.ndarray,
                 o_bias: np.ndarray | None) -> int:
    """Keep the heads `keep` (sorted indices); `o_weight` is the output projection on their columns
    ([len(keep) · head_dim, out]). Returns how many shape operands were rewritten."""
    cols = columns(keep, block.head_dim)
    for lin in (block.q, block.k, block.v):
        set_linear(graph, lin, lin.weight[:, cols], None if lin.bias is None else lin.bias[cols])
    set_linear(graph, block.o, o_weight, o_bias)
    forget_shapes(block.region + [n for lin in (block.q, block.k, block.v) for n in lin.nodes])
    edit = _head_count_edit(block.heads, len(keep), block.head_dim)
    merge = _merge_reshape(block)
    rewritten = sum(rewrite_shape(graph, node, 1, _merged_width(edit, len(keep) * block.head_dim) if node is merge
                                  else edit) for node in block.region if node.op == "Reshape")
    block.heads = len(keep)
    return rewritten


def _head_count_edit(heads: int, kept: int, head_dim: int):
    """A head count followed by the head size becomes the kept count; heads × head_dim as the last entry
    (the merged context) becomes kept × head_dim. Computed entries and -1 stay as they are."""
    def edit(entries: Entries) -> Entries:
        out = list(entries)
        for i, e in enumerate(entries):
            if e == heads and i + 1 < len(entries) and entries[i + 1] == head_dim:
                out[i] = kept
            elif e == heads * head_dim and i == len(entries) - 1:
                out[i] = kept * head_dim
        return out
    return edit


def _merge_reshape(block: AttentionBlock) -> gs.Node | None:
    """The Reshape that joins the heads back into one feature axis for the output projection."""
    tensor = block.o.x
    while tensor.inputs and tensor.inputs[0].op in ("Cast", "Identity"):
        tensor = tensor.inputs[0].inputs[0]
    node = tensor.inputs[0] if tensor.inputs else None
    return node if node is not None and node.op == "Reshape" else None


def _merged_width(edit, width: int):
    """The joining Reshape's last entry is the output projection's input width, whatever computed it (CLIP
    reads it from the block input's shape, which keeps all heads' width)."""
    def merged(entries: Entries) -> Entries:
        out = edit(entries)
        if out and out[-1] not in (-1, 0):
            out[-1] = width
        return out
    return merged
