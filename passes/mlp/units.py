"""Removing hidden units from an MLP block: fc1's (and a gated block's up projection's) columns, the
activation's per-channel constants and fc2's rows, with fc2 re-solved by the plan. Shared by `prune` and
`gates`."""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from edgec.passes.graph_tools import constant_value, forget_shapes
from edgec.passes.mlp.discovery import MLPBlock
from edgec.passes.mlp.edit import set_linear
from edgec.passes.plans.prune import BlockPlan


def remove_units(graph: gs.Graph, block: MLPBlock, plan: BlockPlan) -> None:
    """Remove the units the plan drops from fc1 (and the up projection), the activation and fc2."""
    keep = plan.keep
    gated = [block.up] if block.up else []
    forget_shapes(block.fc1.nodes + block.act.nodes + [n for up in gated for n in up.nodes])   # hidden width changes
    for lin in [block.fc1] + gated:      # a gated MLP loses the same units from its gate and up projections
        set_linear(graph, lin, lin.weight[:, keep], None if lin.bias is None else lin.bias[keep])
    _slice_channel_constants(block, keep)
    set_linear(graph, block.fc2, plan.weight, plan.bias)


def _slice_channel_constants(block: MLPBlock, keep: np.ndarray) -> None:
    """Per-channel constants inside the activation (e.g. BiasGelu's bias) lose the pruned entries."""
    targets = {id(t) for t in block.act.channel_constants}
    for node in block.act.nodes:
        for i, inp in enumerate(node.inputs):
            if id(inp) in targets:
                resolved = constant_value(inp)
                assert resolved is not None, "channel constants are constants"
                value = resolved.value
                sliced = value.reshape(-1)[keep].reshape(value.shape[:-1] + (len(keep),))
                node.inputs[i] = gs.Constant(f"{inp.name}.pruned", np.ascontiguousarray(sliced))
