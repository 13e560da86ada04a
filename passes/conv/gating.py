"""Convolution channels for the `gates` pass: one retention gate per channel group, and the cut of what it dropped.

A group's gate multiplies every consumer input that carries the group's channels (the terminals' tensors, the
channel axis), so a channel the gates drop reaches no consumer: removing it from the producers and its rows from
the consumers (no re-solve) computes exactly what the trained, masked network computed.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from edgec.passes.conv.discovery import find_channel_groups
from edgec.passes.conv.edit import narrow


def channel_gate_specs(graph: gs.Graph) -> list[tuple[str, tuple[str, ...], int]]:
    """(key tensor, the other tensors carrying the same channels, channel count) per prunable group, in
    discovery order (the key is how `cut_channels` finds the group again)."""
    specs = []
    for group in find_channel_groups(graph)[0]:
        names = list(dict.fromkeys(t.tensor.name for t in group.terminals))
        if names:
            specs.append((names[0], tuple(names[1:]), group.channels))
    return specs


def cut_channels(graph: gs.Graph, kept: dict[str, np.ndarray], lineage: dict[str, np.ndarray] | None = None) -> int:
    """Remove the channels outside `kept` (key tensor → sorted channels) from their groups; the groups cut."""
    cut = 0
    for group in find_channel_groups(graph)[0]:
        # by any of its consumer inputs: discovery may start a group at another of its producers on another graph
        keep = next((kept[t.tensor.name] for t in group.terminals if t.tensor.name in kept), None)
        if keep is not None and len(keep) < group.channels:
            narrow(group, np.asarray(keep), None, lineage)
            cut += 1
    if cut:
        graph.cleanup()
    return cut
