"""Removing whole attention heads, checked: the head statistics (group OBS order and error curves), the
heads kept per block at a fraction, the plans and the edit, and the check that an edit computes what the
unedited graph computes with the removed heads' output-projection rows zeroed. Shared by the `heads` pass and
`gates` (which must leave whole the blocks this check refuses)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Collection, Literal

import numpy as np
import onnx_graphsurgeon as gs

from edgec.passes.attention.discovery import AttentionBlock, find_attention
from edgec.passes.attention.edit import remove_heads
from edgec.passes.base import PassContext
from edgec.passes.mlp.edit import set_linear
from edgec.passes.plans import heads as head_plan
from edgec.passes.plans import prune as prune_plan

EXACT_TOLERANCE = 1e-3   # relative L2 between the edited and the masked model (float32 summation order only)


@dataclass(frozen=True)
class HeadCut:
    """How heads are chosen and re-solved (the `heads` pass's options, less its budget)."""

    scope: Literal["layer", "global"] = "global"
    compensate: bool = True
    damping: float = 1e-4
    min_heads: int = 1


@dataclass
class Statistics:
    grams: dict[str, Any]
    orders: dict[str, np.ndarray]
    curves: dict[str, np.ndarray]


def uneditable_blocks(graph: gs.Graph, blocks: list[AttentionBlock], ctx: PassContext, keep: float) -> list[int]:
    """Blocks whose head removal (at about this keep) does not reproduce the masked original: what other
    passes that cut heads (gates) must leave whole."""
    how = HeadCut(scope="layer", compensate=False)
    stats = statistics(graph, blocks, how, ctx)
    return misread_blocks(graph, blocks, stats, how, heads_kept(blocks, stats, how, keep), ctx)


def statistics(graph: gs.Graph, blocks: list[AttentionBlock], how: HeadCut, ctx: PassContext) -> Statistics:
    grams = ctx.need_calibration("heads").grams(graph, [b.o.x.name for b in blocks])
    orders, curves = {}, {}
    for b in blocks:
        gram = grams[b.o.x.name].matrix
        w_aug = prune_plan.augmented_weight(b.o.weight, b.o.bias)
        orders[b.o.x.name] = head_plan.removal_order(gram, w_aug, b.heads, b.head_dim, how.damping)
        curves[b.o.x.name] = head_plan.error_curve(gram, w_aug, orders[b.o.x.name], b.head_dim, how.damping)
    return Statistics(grams, orders, curves)


def heads_kept(blocks: list[AttentionBlock], stats: Statistics, how: HeadCut, keep: float,
            excluded: Collection[int] = ()) -> list[int]:
    """Heads kept per block at this keep; excluded blocks keep all theirs (the rest share the fraction)."""
    included = [b for b in blocks if b.index not in excluded]
    if how.scope == "layer":
        chosen = [min(b.heads, max(how.min_heads, int(np.ceil(b.heads * keep)))) for b in included]
    else:
        chosen = head_plan.allocate([stats.curves[b.o.x.name] for b in included], keep, how.min_heads)
    by_index = {b.index: c for b, c in zip(included, chosen, strict=True)}
    return [by_index.get(b.index, b.heads) for b in blocks]


def plans(blocks: list[AttentionBlock], stats: Statistics, how: HeadCut, counts: list[int]) -> list:
    return [head_plan.plan(stats.grams[b.o.x.name].matrix, b.o.weight, b.o.bias, stats.orders[b.o.x.name], c,
                           b.head_dim, how.damping, how.compensate) if c < b.heads else None
            for b, c in zip(blocks, counts, strict=True)]


def apply_all(graph: gs.Graph, blocks: list[AttentionBlock], stats: Statistics, how: HeadCut,
               counts: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {"blocks": 0, "heads_before": 0, "heads_after": 0, "kept": [], "rel_error": []}
    for block, plan in zip(blocks, plans(blocks, stats, how, counts), strict=True):
        out["heads_before"] += block.heads
        if plan is None:
            out["heads_after"] += block.heads
            continue
        out["kept"].append(f"{block.index}:{len(plan.keep)}/{block.heads}")
        remove_heads(graph, block, plan.keep, plan.weight, plan.bias)
        out["blocks"] += 1
        out["heads_after"] += len(plan.keep)
        out["rel_error"].append(round(plan.rel_error, 5))
    graph.cleanup()
    return out


def misread_blocks(graph: gs.Graph, blocks: list[AttentionBlock], stats: Statistics, how: HeadCut,
                    counts: list[int], ctx: PassContext) -> list[int]:
    """Blocks whose edit does not compute what the unedited graph computes with the removed heads' rows of
    the output projection zeroed (and the same new weights on the kept rows)."""
    cutting = [i for i, (b, c) in enumerate(zip(blocks, counts, strict=True)) if c < b.heads]
    if _reproduces(graph, stats, how, counts, ctx):
        return []
    if len(cutting) == 1:
        return cutting
    alone = [[c if j == i else b.heads for j, (b, c) in enumerate(zip(blocks, counts, strict=True))] for i in cutting]
    return [i for i, c in zip(cutting, alone, strict=True) if not _reproduces(graph, stats, how, c, ctx)]


def _reproduces(graph: gs.Graph, stats: Statistics, how: HeadCut, counts: list[int], ctx: PassContext) -> bool:
    edited, masked = graph.copy(), graph.copy()
    apply_all(edited, find_attention(edited).blocks, stats, how, counts)
    masked_blocks = find_attention(masked).blocks
    for block, plan in zip(masked_blocks, plans(masked_blocks, stats, how, counts), strict=True):
        if plan is not None:
            weight = np.zeros_like(block.o.weight, dtype=np.float64)
            weight[head_plan.columns(plan.keep, block.head_dim)] = plan.weight
            set_linear(masked, block.o, weight, plan.bias)
    names = [t.name for t in graph.outputs]
    source = ctx.need_calibration("heads")
    try:
        got = source.activations(edited, names, max_rows=4096)
    except Exception:       # ONNX Runtime refuses the edited graph: a shape it cannot satisfy
        return False
    want = source.activations(masked, names, max_rows=4096)
    for name in names:
        if got[name].shape != want[name].shape:
            return False
        diff = float(np.linalg.norm(got[name] - want[name]))
        if not np.isfinite(diff) or diff > EXACT_TOLERANCE * max(float(np.linalg.norm(want[name])), 1e-12):
            return False
    return True
