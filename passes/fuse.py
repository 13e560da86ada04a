"""fuse: ONNX Runtime's transformer optimizer (attention, SkipLayerNormalization, BiasGelu fusions).

Runs after the compression passes (the fused ops hide the MLP patterns that the other passes match).
Fusion only rewrites the graph with python (opt_level 0): no session is opened here.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections import Counter
from dataclasses import dataclass

import onnx_graphsurgeon as gs

from edgec.passes.base import PassContext, PassResult, build_options
from edgec.passes.ort_tools import opset18_reduction_shapes, quiet_root_logger, replace_contents


@dataclass(frozen=True)
class FuseOptions:
    model_type: str = "bert"     # the optimizer's family: bert, gpt2, vit, clip, …
    num_heads: int = 0           # 0: detected from the graph
    hidden_size: int = 0         # 0: detected from the graph


class FusePass:
    name = "fuse"
    needs: frozenset[str] = frozenset()
    lossless = True        # runs on synthesized inputs too: it cannot change what the model computes
    Options = FuseOptions

    def run(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        from onnxruntime.transformers.optimizer import optimize_model

        opts = build_options(FuseOptions, ctx.options, self.name)
        model = gs.export_onnx(graph, do_type_check=False)
        before = Counter(n.op for n in graph.nodes)
        with quiet_root_logger(), contextlib.redirect_stdout(io.StringIO()), opset18_reduction_shapes():
            logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
            optimized = optimize_model(model, model_type=opts.model_type, num_heads=opts.num_heads,
                                       hidden_size=opts.hidden_size, opt_level=0)
        fused = gs.import_onnx(optimized.model)
        after = Counter(n.op for n in fused.nodes)
        new_ops = {op: n for op, n in after.items() if n > before.get(op, 0) and op not in before}
        if not new_ops:
            return PassResult(False, {"fused": {}}, ["the transformer optimizer found nothing to fuse"])
        replace_contents(graph, fused)
        return PassResult(True, {"fused": new_ops, "nodes_before": sum(before.values()),
                                 "nodes_after": sum(after.values())})
