"""Deliberately wrong passes: what the compile's gate and step-back must catch."""

import numpy as np
import onnx_graphsurgeon as gs

from edgec.passes import PassResult
from edgec.passes.mlp.discovery import find_mlps


class ZeroFirstFc2:
    """Zeroes fc2 of the first MLP block: the numbers break, as a search that chose a bad point would."""

    name = "zero_fc2"
    needs: frozenset[str] = frozenset()
    lossless = False

    def run(self, graph, ctx):
        fc2 = find_mlps(graph).blocks[0].fc2
        fc2.matmul.inputs[1] = gs.Constant("zeros", np.zeros_like(fc2.weight))
        return PassResult(changed=True)
