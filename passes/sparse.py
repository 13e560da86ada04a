"""sparse: unstructured or N:M (2:4, 4:8) sparsity of the MLP weights, Wanda masks + least-squares re-solve.

ONNX Runtime's CPU kernels have no sparse GEMM: sparse weights are densified at session load, so this
pass saves file size (the compiler stores weights as sparse initializers where COO is smaller, from
about 67 % zeros) and never time. TensorRT can use 2:4 sparsity on GPUs (trt_sparsity_enable).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx_graphsurgeon as gs

from edgec.passes.base import PassContext, PassOptionError, PassResult, build_options
from edgec.passes.mlp.discovery import editable_blocks, layer_name
from edgec.passes.mlp.edit import set_linear
from edgec.passes.plans import sparse as sparse_plan

SPEED_NOTE = ("unstructured/N:M sparsity saves file size only: ONNX Runtime densifies sparse weights at load, "
              "so the model runs no faster on CPU execution providers")


@dataclass(frozen=True)
class SparseOptions:
    pattern: str = "0.5"      # a fraction of zeros (0.5) or N:M (2:4, 4:8) along each output's inputs
    score: sparse_plan.Score = "wanda"      # wanda (|W|·‖x‖) | magnitude
    resolve: bool = True      # least-squares re-fit of the surviving weights and the bias
    validate: bool = False    # pick the re-fit's ridge, or none, by 2-fold validation over the calibration feeds
                              # (layer-local, like prune's: helps with very few rows, unmeasured on real models)

    def __post_init__(self):
        try:
            sparse_plan.parse_pattern(self.pattern)
        except ValueError as exc:
            raise PassOptionError(f"pass 'sparse': {exc}") from None


class SparsePass:
    name = "sparse"
    Options = SparseOptions
    needs = frozenset({"calibration"})
    lossless = False

    def run(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        opts = build_options(SparseOptions, ctx.options, self.name)
        blocks = editable_blocks(graph)
        if not blocks:
            return PassResult(False, {"layers": 0}, ["no MLP block to sparsify"])
        pairs = [(lin, t) for b in blocks for lin, t in ((b.fc1, b.fc1.x.name), (b.fc2, b.act.output.name))]
        need_gram = opts.score == "wanda" or opts.resolve
        grams = ctx.need_calibration("sparse").grams(graph, sorted({t for _, t in pairs}),
                                                     halves=opts.resolve and opts.validate) \
            if need_gram else {}
        notes, zeros, total, layers, ridges = [SPEED_NOTE], 0, 0, [], []
        if "TensorrtExecutionProvider" in ctx.providers:
            notes.append("TensorRT can run 2:4-sparse weights on sparse tensor cores: enable trt_sparsity_enable")
        for lin, tensor in pairs:
            g = grams.get(tensor)
            try:
                keep = sparse_plan.mask(sparse_plan.scores(lin.weight, None if g is None else g.matrix,
                                                           0 if g is None else g.rows, opts.score), opts.pattern)
            except ValueError as exc:
                notes.append(f"{layer_name(lin)}: left dense ({exc})")
                continue
            damping = 1e-6 if opts.resolve else None
            if opts.resolve and opts.validate and g is not None and g.half is not None:
                damping = sparse_plan.validated_damping(lin.weight, lin.bias, g.matrix, g.half, keep)
                ridges.append(damping)
            if damping is not None and g is not None:
                weight, bias = sparse_plan.resolve(lin.weight, lin.bias, g.matrix, keep, damping)
            else:
                weight, bias = np.where(keep, lin.weight, 0), lin.bias   # type: ignore[assignment]
            set_linear(graph, lin, weight, bias)
            zeros += int((~keep).sum())
            total += keep.size
            layers.append(layer_name(lin))
        stats: dict[str, Any] = {"layers": len(layers), "zeros": zeros, "sparsity": round(zeros / total, 4) if total else 0.0}
        if ridges:
            stats["ridge"] = ridges        # per layer, None where the re-fit did not generalize and was skipped
        return PassResult(bool(layers), stats, notes)
