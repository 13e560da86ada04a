"""recover: distil the compressed model against the original on the user's unlabeled data.

Place it after the compression passes and before `quantize`. Which of recovery's ways runs
(`passes.recovery`): every weight through the torch view (params=full), group affines through the view
(params=grasp), or group affines by forward passes through ONNX Runtime (method=zo, and where torch or the
view is missing); a graph the view cannot run falls back, with a note, to block-wise training of the MLP
blocks. Only constants' values change: the structure is the same.
"""

from __future__ import annotations

import onnx_graphsurgeon as gs

from edgec.passes.base import PassContext, PassResult, build_options
from edgec.passes.recovery.forward_only import recover_zo
from edgec.passes.recovery.options import (
    MATCHES,
    RecoverOptions,
    affine_settings,
    after_blockwise,
    budget,
    zo_settings,
)

__all__ = ["MATCHES", "RecoverOptions", "RecoverPass"]


class RecoverPass:
    name = "recover"
    Options = RecoverOptions
    needs = frozenset({"teacher", "fidelity"})     # fidelity: the forward-only path scores its fold
    lossless = False

    def run(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        opts = build_options(RecoverOptions, ctx.options, self.name)
        if opts.minutes <= 0 and opts.steps <= 0:
            return PassResult(False, {}, ["recover: a budget of 0 minutes trains nothing"])
        ctx.need_teacher("recover")
        if opts.method == "zo":
            return _forward_only(graph, ctx, opts)
        try:
            import torch  # noqa: F401
        except ImportError:
            if opts.params == "grasp":
                return _forward_only(graph, ctx, opts, ["torch is not installed: group affines tuned by forward passes"])
            return PassResult(False, {}, ["recovery skipped: torch is not installed"])
        phase = None
        blocks = _rewritten_blocks(graph, ctx) if opts.blockwise > 0 and opts.params == "full" else []
        if blocks:
            from edgec.passes.recovery.blockwise import fit_blocks

            head, opts = after_blockwise(opts)
            with ctx.progress(f"recover: block-wise phase, {head.describe()}", 0):
                phase = fit_blocks(graph, ctx, head, blocks)
        result = _backprop(graph, ctx, opts)
        if phase is not None:
            result.stats["blockwise"] = {**phase.stats, "budget": head.describe()}
            result.notes[:0] = phase.notes
            result.changed = result.changed or phase.changed
        return result


def _backprop(graph: gs.Graph, ctx: PassContext, opts: RecoverOptions) -> PassResult:
    """Training through the torch view: every weight (params=full) or group affines (grasp)."""
    teacher = ctx.need_teacher("recover")
    from edgec.passes.training.round_trip import checked_round_trip
    from edgec.passes.training.view import TorchView, UnsupportedGraph

    ordered = graph.copy()
    ordered.toposort()      # earlier passes append nodes (e.g. a new fc2 bias); the view runs them in order
    model = gs.export_onnx(ordered, do_type_check=False)
    try:
        view = TorchView(model, trainable=[] if opts.params == "grasp" else None)   # grasp: weights frozen
        error, notes = checked_round_trip(view, model, list(teacher.search_feeds[:2]))
    except UnsupportedGraph as exc:
        if opts.params == "grasp":
            return _forward_only(graph, ctx, opts, [f"whole-model training unavailable ({exc}); group affines "
                                                    "tuned by forward passes through ONNX Runtime instead"])
        from edgec.passes.recovery.blockwise import train_blocks

        return train_blocks(graph, ctx, budget(opts), f"whole-model training unavailable ({exc})")
    view.to_device(ctx.train_device)        # after the round trip, which compares on the CPU
    if opts.params == "grasp":
        from edgec.passes.recovery.group_affines import train_affines

        return train_affines(graph, view, ctx, opts, notes)
    rewritten = teacher.changed_initializers(model)
    trainable = set(view.trainable) if opts.train_rest else rewritten & set(view.trainable)
    if not trainable:
        return PassResult(False, {}, ["recover: no float32 weight to train (float16 and integer weights "
                                      "are left as they are)"])
    from edgec.passes.recovery.full_weights import train_weights

    return train_weights(graph, view, ctx, opts, error, rewritten, notes)


def _rewritten_blocks(graph: gs.Graph, ctx: PassContext) -> list:
    """The MLP blocks the block-wise phase trains: those the original can teach whose weights compression rewrote
    (none: the whole budget trains end to end)."""
    from edgec.passes.recovery.blockwise import teachable_blocks

    teacher = ctx.need_teacher("recover")
    changed = teacher.changed_initializers(gs.export_onnx(graph, do_type_check=False))
    return teachable_blocks(graph, teacher, changed) if changed else []


def _forward_only(graph: gs.Graph, ctx: PassContext, opts: RecoverOptions, notes: list[str] | None = None) -> PassResult:
    result = recover_zo(graph, ctx, affine_settings(opts), zo_settings(opts, ctx.seed))
    result.notes[:0] = notes or []
    return result
