"""A network's first convolutions kept float: an int8 candidate that can run faster than every layer int8.

A convolution on the raw input (an image's 3 channels, a spectrogram's 1) has a reduction of a few dozen values per
output: ONNX Runtime's int8 convolution gains little there and pays a quantization of the whole input first. On the
sweep's openWakeWord embedding (first conv: 1 channel, 3×3), static int8 of every layer timed 0.97× the float graph,
and with that one layer float 0.81×. So where a candidate quantizes such a layer, the same candidate with it float
is built and scored too, and both are timed (`int8.choice.fastest`): the faster that meets the floor wins.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import onnx

from edgec.passes.base import PassContext
from edgec.passes.int8.choice import Candidate
from edgec.passes.int8.dynamic import model_score
from edgec.passes.int8.mixed import MixedResult
from edgec.passes.int8.recipes import Int8Builder

MAX_INPUT_CHANNELS = 4       # a convolution reading at most this many channels of a graph input is an entry layer
SHAPE_ONLY = ("Shape", "Size")          # read an input's shape, not its values
DATA_FIRST = ("Reshape", "Resize", "Slice", "Expand", "Pad", "Tile", "Upsample")   # the rest of their inputs: shapes


def entry_convolutions(model: onnx.ModelProto, layers: list[str]) -> list[str]:
    """The Conv layers (of `layers`, node names) that read a graph input through unweighted nodes only and whose
    weight has at most MAX_INPUT_CHANNELS input channels per group."""
    constants = {t.name: t for t in model.graph.initializer}
    wanted, found = set(layers), []
    producers = {out: node for node in model.graph.node for out in node.output}
    inputs = {i.name for i in model.graph.input} - set(constants)
    for node in model.graph.node:
        weight = constants.get(node.input[1]) if node.op_type == "Conv" and len(node.input) > 1 else None
        if node.name in wanted and weight is not None and len(weight.dims) > 2 \
                and weight.dims[1] <= MAX_INPUT_CHANNELS and _reads_input(node, producers, inputs, constants):
            found.append(node.name)
    return found


def _reads_input(node: onnx.NodeProto, producers: dict, inputs: set[str], constants: dict) -> bool:
    """Whether the node's data input comes from a graph input with no weighted node (a constant-weight Conv,
    MatMul, Gemm) on the way, following values, not shapes."""
    queue, seen = deque([node.input[0]]), set()
    while queue:
        name = queue.popleft()
        if name in seen or name in constants:
            continue
        seen.add(name)
        if name in inputs:
            return True
        source = producers.get(name)
        if source is None or source.op_type in SHAPE_ONLY or _weighted(source, constants) or len(seen) > 64:
            continue
        queue.extend(source.input[:1] if source.op_type in DATA_FIRST else source.input)
    return False


def _weighted(node: onnx.NodeProto, constants: dict) -> bool:
    return len(node.input) > 1 and node.input[1] in constants and node.op_type in (
        "Conv", "ConvTranspose", "MatMul", "Gemm") and int(np.prod(constants[node.input[1]].dims)) > 1


def with_entries_float(builder: Int8Builder, candidate: Candidate, floor: float, ctx: PassContext
                       ) -> Candidate | None:
    """The candidate with its entry convolutions float too, where it has int8 ones and that model meets `floor`."""
    entries = [n for n in entry_convolutions(builder.model, builder.layers) if n not in candidate.result.float_layers]
    if not entries:
        return None
    float_layers = [*candidate.result.float_layers, *entries]
    model = builder.build(float_layers)
    score = model_score(ctx, model)
    if ctx.fidelity is not None and score < floor:
        return None
    return Candidate(candidate.recipe, MixedResult(model, score, float_layers, 1), candidate.layers,
                     list(candidate.notes), tag="input layers float")
