"""heads: remove whole attention heads (Q/K/V columns, output-projection rows, head counts in Reshapes) and
re-solve the output projection by least squares on calibration data.

Which heads go is in plans/heads.py (group OBS); discovery and the graph edit are in passes/attention/.
Every rewrite is checked against the unedited graph with the same output projection and the removed heads'
rows zeroed, which must compute the same function: a shape constant the edit misread shows up there, and
its block is left alone (with the reason) instead of damaging the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Collection, Literal

import numpy as np
import onnx_graphsurgeon as gs

from edgec.passes.attention.discovery import AttentionBlock, find_attention
from edgec.passes.attention.edit import remove_heads
from edgec.passes.base import PassContext, PassOptionError, PassResult, build_options
from edgec.passes.mlp.edit import set_linear
from edgec.passes.plans import heads as head_plan
from edgec.passes.plans import prune as prune_plan
from edgec.passes.plans.budget_search import STEPS, describe, smallest_budget

EXACT_TOLERANCE = 1e-3   # relative L2 between the edited and the masked model (float32 summation order only)


@dataclass(frozen=True)
class HeadsOptions:
    keep: float = 0.75         # fraction of all heads kept
    scope: Literal["layer", "global"] = "global"   # layer: the same fraction in every block | global: where the
                               # block output's relative error grows least
    compensate: bool = True    # re-solve the output projection and its bias by least squares
    damping: float = 1e-4      # ridge, relative to the mean diagonal of the context's Gram matrix
    min_heads: int = 1         # never fewer heads in a block
    floor: float = 0.0         # > 0: ignore keep and search the fewest heads that keep this calibration score

    def __post_init__(self):
        if not 0.0 < self.keep <= 1.0:
            raise PassOptionError(f"pass 'heads': keep must lie in (0, 1], not {self.keep}")
        if self.min_heads < 1:
            raise PassOptionError(f"pass 'heads': min_heads must be at least 1, not {self.min_heads}")


@dataclass
class _Statistics:
    grams: dict[str, Any]
    orders: dict[str, np.ndarray]
    curves: dict[str, np.ndarray]


class HeadsPass:
    name = "heads"
    Options = HeadsOptions
    needs = frozenset({"calibration", "fidelity"})
    lossless = False

    def run(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        opts = build_options(HeadsOptions, ctx.options, self.name)
        found = find_attention(graph)
        notes = [f"{m.node} ({m.op}): {m.reason}" for m in found.near_misses]
        blocks = found.blocks
        if not blocks:
            return PassResult(False, {"blocks": 0}, notes + ["no attention block to remove heads from"])
        if opts.keep >= 1.0 and not opts.floor:
            return PassResult(False, {"blocks": 0}, notes + ["keep=1: nothing to remove"])
        stats_in = _statistics(graph, blocks, opts, ctx)
        # the edit is checked before any search probes it: at the fewest heads the search may try, then at the
        # counts chosen (a block that fails either is left whole)
        excluded = _left_alone(graph, blocks, stats_in, opts, 1 / STEPS if opts.floor else opts.keep, set(), ctx, notes)
        keep, trace = opts.keep, list[tuple[float, float]]()
        if opts.floor:
            keep, trace = smallest_budget(lambda k: _probe(graph, stats_in, opts, ctx, k, excluded), opts.floor)
            notes.append(describe("keep", opts.floor, trace, keep))
            excluded = _left_alone(graph, blocks, stats_in, opts, keep, excluded, ctx, notes)
        stats: dict[str, Any] = {"blocks": 0, "keep": keep}
        if trace:
            stats["search"] = {"knob": "keep", "floor": opts.floor, "points": [list(p) for p in trace]}
        counts = _counts(blocks, stats_in, opts, keep, excluded)
        if all(c >= b.heads for b, c in zip(blocks, counts, strict=True)):
            return PassResult(False, stats, notes + ["every block keeps all its heads"])
        stats.update(_apply_all(graph, blocks, stats_in, opts, counts))
        return PassResult(stats["blocks"] > 0, stats, notes)


def uneditable_blocks(graph: gs.Graph, blocks: list[AttentionBlock], ctx: PassContext, keep: float) -> list[int]:
    """Blocks whose head removal (at about this keep) does not reproduce the masked original: what other
    passes that cut heads (gates) must leave whole."""
    opts = HeadsOptions(keep=keep, compensate=False, scope="layer")
    stats = _statistics(graph, blocks, opts, ctx)
    return _misread_blocks(graph, blocks, stats, opts, _counts(blocks, stats, opts, keep), ctx)


def _left_alone(graph: gs.Graph, blocks: list[AttentionBlock], stats: _Statistics, opts: HeadsOptions, keep: float,
                excluded: set[int], ctx: PassContext, notes: list[str]) -> set[int]:
    """`excluded` and the blocks whose edit at this keep does not reproduce the masked original (with a note)."""
    counts = _counts(blocks, stats, opts, keep, excluded)
    bad = _misread_blocks(graph, blocks, stats, opts, counts, ctx)
    for index in bad:
        notes.append(f"block {index} ({blocks[index].name}): removing heads did not reproduce the block with "
                     "those heads zeroed (a shape constant edgec cannot read, or a per-head term); left alone")
    return excluded | set(bad)


def _statistics(graph: gs.Graph, blocks: list[AttentionBlock], opts: HeadsOptions, ctx: PassContext) -> _Statistics:
    grams = ctx.need_calibration("heads").grams(graph, [b.o.x.name for b in blocks])
    orders, curves = {}, {}
    for b in blocks:
        gram = grams[b.o.x.name].matrix
        w_aug = prune_plan.augmented_weight(b.o.weight, b.o.bias)
        orders[b.o.x.name] = head_plan.removal_order(gram, w_aug, b.heads, b.head_dim, opts.damping)
        curves[b.o.x.name] = head_plan.error_curve(gram, w_aug, orders[b.o.x.name], b.head_dim, opts.damping)
    return _Statistics(grams, orders, curves)


def _counts(blocks: list[AttentionBlock], stats: _Statistics, opts: HeadsOptions, keep: float,
            excluded: Collection[int] = ()) -> list[int]:
    """Heads kept per block at this keep; excluded blocks keep all theirs (the rest share the fraction)."""
    included = [b for b in blocks if b.index not in excluded]
    if opts.scope == "layer":
        chosen = [min(b.heads, max(opts.min_heads, int(np.ceil(b.heads * keep)))) for b in included]
    else:
        chosen = head_plan.allocate([stats.curves[b.o.x.name] for b in included], keep, opts.min_heads)
    by_index = {b.index: c for b, c in zip(included, chosen, strict=True)}
    return [by_index.get(b.index, b.heads) for b in blocks]


def _plans(blocks: list[AttentionBlock], stats: _Statistics, opts: HeadsOptions, counts: list[int]) -> list:
    return [head_plan.plan(stats.grams[b.o.x.name].matrix, b.o.weight, b.o.bias, stats.orders[b.o.x.name], c,
                           b.head_dim, opts.damping, opts.compensate) if c < b.heads else None
            for b, c in zip(blocks, counts, strict=True)]


def _apply_all(graph: gs.Graph, blocks: list[AttentionBlock], stats: _Statistics, opts: HeadsOptions,
               counts: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {"blocks": 0, "heads_before": 0, "heads_after": 0, "kept": [], "rel_error": []}
    for block, plan in zip(blocks, _plans(blocks, stats, opts, counts), strict=True):
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


def _probe(graph: gs.Graph, stats: _Statistics, opts: HeadsOptions, ctx: PassContext, keep: float,
           excluded: set[int]) -> float:
    """The fidelity probe's score of the graph with heads removed at this keep (the graph is left alone);
    -1 when ONNX Runtime refuses it."""
    probe = ctx.need_fidelity("heads: floor")
    trial = graph.copy()
    blocks = find_attention(trial).blocks
    _apply_all(trial, blocks, stats, opts, _counts(blocks, stats, opts, keep, excluded))
    try:
        return probe(trial)
    except Exception:  # noqa: BLE001 - a rewrite ONNX Runtime cannot run scores lowest, it never ends the pass
        return -1.0


def _misread_blocks(graph: gs.Graph, blocks: list[AttentionBlock], stats: _Statistics, opts: HeadsOptions,
                    counts: list[int], ctx: PassContext) -> list[int]:
    """Blocks whose edit does not compute what the unedited graph computes with the removed heads' rows of
    the output projection zeroed (and the same new weights on the kept rows)."""
    cutting = [i for i, (b, c) in enumerate(zip(blocks, counts, strict=True)) if c < b.heads]
    if _reproduces(graph, stats, opts, counts, ctx):
        return []
    if len(cutting) == 1:
        return cutting
    alone = [[c if j == i else b.heads for j, (b, c) in enumerate(zip(blocks, counts, strict=True))] for i in cutting]
    return [i for i, c in zip(cutting, alone, strict=True) if not _reproduces(graph, stats, opts, c, ctx)]


def _reproduces(graph: gs.Graph, stats: _Statistics, opts: HeadsOptions, counts: list[int], ctx: PassContext) -> bool:
    edited, masked = graph.copy(), graph.copy()
    _apply_all(edited, find_attention(edited).blocks, stats, opts, counts)
    masked_blocks = find_attention(masked).blocks
    for block, plan in zip(masked_blocks, _plans(masked_blocks, stats, opts, counts), strict=True):
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
