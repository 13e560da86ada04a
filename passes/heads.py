"""heads: remove whole attention heads (Q/K/V columns, output-projection rows, head counts in Reshapes) and
re-solve the output projection by least squares on calibration data.

Which heads go is in plans/heads.py (group OBS); discovery and the graph edit are in passes/attention/.
Every rewrite is checked against the unedited graph with the same output projection and the removed heads'
rows zeroed, which must compute the same function: a shape constant the edit misread shows up there, and
its block is left alone (with the reason) instead of damaging the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import onnx_graphsurgeon as gs

from edgec.passes.attention import head_cut
from edgec.passes.attention.discovery import AttentionBlock, find_attention
from edgec.passes.base import PassContext, PassOptionError, PassResult, build_options
from edgec.passes.plans.budget_search import STEPS, describe, smallest_budget


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
        stats_in = head_cut.statistics(graph, blocks, _how(opts), ctx)
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
        counts = head_cut.heads_kept(blocks, stats_in, _how(opts), keep, excluded)
        if all(c >= b.heads for b, c in zip(blocks, counts, strict=True)):
            return PassResult(False, stats, notes + ["every block keeps all its heads"])
        stats.update(head_cut.apply_all(graph, blocks, stats_in, _how(opts), counts))
        return PassResult(stats["blocks"] > 0, stats, notes)


def _left_alone(graph: gs.Graph, blocks: list[AttentionBlock], stats: head_cut.Statistics, opts: HeadsOptions, keep: float,
                excluded: set[int], ctx: PassContext, notes: list[str]) -> set[int]:
    """`excluded` and the blocks whose edit at this keep does not reproduce the masked original (with a note)."""
    counts = head_cut.heads_kept(blocks, stats, _how(opts), keep, excluded)
    bad = head_cut.misread_blocks(graph, blocks, stats, _how(opts), counts, ctx)
    for index in bad:
        notes.append(f"block {index} ({blocks[index].name}): removing heads did not reproduce the block with "
                     "those heads zeroed (a shape constant edgec cannot read, or a per-head term); left alone")
    return excluded | set(bad)


def _probe(graph: gs.Graph, stats: head_cut.Statistics, opts: HeadsOptions, ctx: PassContext, keep: float,
           excluded: set[int]) -> float:
    """The fidelity probe's score of the graph with heads removed at this keep (the graph is left alone);
    -1 when ONNX Runtime refuses it."""
    probe = ctx.need_fidelity("heads: floor")
    trial = graph.copy()
    blocks = find_attention(trial).blocks
    how = _how(opts)
    head_cut.apply_all(trial, blocks, stats, how, head_cut.heads_kept(blocks, stats, how, keep, excluded))
    try:
        return probe(trial)
    except Exception:  # noqa: BLE001 - a rewrite ONNX Runtime cannot run scores lowest, it never ends the pass
        return -1.0


def _how(opts: HeadsOptions) -> head_cut.HeadCut:
    return head_cut.HeadCut(opts.scope, opts.compensate, opts.damping, opts.min_heads)
