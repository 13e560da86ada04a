"""prune: remove MLP hidden units (fc1 rows, bias entries, fc2 columns) and re-solve fc2 by least squares.

Shapes really shrink, so latency really drops on every execution provider. Scores and the
compensation are in plans/prune.py; this file finds the blocks, gathers statistics and edits the graph.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Any, Callable, Literal

import numpy as np
import onnx_graphsurgeon as gs

from edgec.passes.base import PassContext, PassOptionError, PassResult, build_options
from edgec.passes.mlp.discovery import MLPBlock, editable_blocks, find_mlps
from edgec.passes.mlp.units import remove_units
from edgec.passes.plans import prune as prune_plan
from edgec.passes.plans import prune_alloc
from edgec.passes.plans.budget_search import describe, smallest_budget


@dataclass(frozen=True)
class PruneOptions:
    keep: float = 0.5          # fraction of hidden units kept (per block, or on average with scope=global)
    score: prune_plan.Score = "obs"         # obs (error after compensation) | energy (sqrt E[a²] · ‖W2 row‖) |
                               # frank-wolfe (forward selection with momentum, plans/frank_wolfe.py)
    compensate: bool = True    # re-solve fc2 and its bias by least squares on calibration data
    scope: Literal["layer", "global", "model"] = "layer"       # layer: the same fraction everywhere | global: allocate across blocks by their
                               # layer-local errors | model: by the model's output fidelity (prune_alloc.py)
    min_keep: float = 0.1      # with scope=global or model, never keep less than this fraction of a block
    damping: float = 1e-4      # ridge, relative to the mean diagonal of the Gram matrix (OBS scores, re-solve)
    validate: Literal["resolve", "ridge", "off"] = "off"      # 2-fold validation over the calibration feeds decides: resolve (re-solve or keep
                               # fc2 as it is) | ridge (also the ridge, from a grid; slower) | off
    floor: float = 0.0         # > 0: ignore keep and search the fewest units that keep this calibration score

    def __post_init__(self):
        if not 0.0 < self.keep <= 1.0:
            raise PassOptionError(f"pass 'prune': keep must lie in (0, 1], not {self.keep}")


class PrunePass:
    name = "prune"
    Options = PruneOptions
    needs = frozenset({"calibration", "fidelity"})
    lossless = False

    def run(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        opts = build_options(PruneOptions, ctx.options, self.name)
        found = find_mlps(graph)
        notes = [f"block {b.index} ({b.name}): weights shared with another layer, left alone"
                 for b in found.blocks if b.shared_weights]
        blocks = [b for b in found.blocks if not b.shared_weights]
        if not blocks:
            return PassResult(False, {"blocks": 0}, notes + ["no MLP block to prune"])
        if opts.keep >= 1.0 and not opts.floor:
            return PassResult(False, {"blocks": 0}, notes + ["keep=1: nothing to remove"])
        grams = ctx.need_calibration("prune").grams(graph, [b.act.output.name for b in blocks], halves=opts.validate != "off")
        orders = {b.act.output.name: _order(b, grams, opts) for b in blocks}
        allocation = _allocation(graph, blocks, grams, opts, ctx, orders)
        keep = opts.keep
        if opts.floor:
            keep, trace = _search_keep(graph, grams, opts, ctx, orders, allocation)
            notes.append(describe("keep", opts.floor, trace, keep))
            if keep >= 1.0:
                return PassResult(False, {"blocks": 0, "keep": 1.0, "search": _search_stats(opts, trace)}, notes)
        counts = allocation(keep)
        if opts.scope == "model":
            notes.append(_model_scope_note(counts, _uniform(blocks, keep, ctx.rank_multiple), blocks))
        stats = _prune_blocks(graph, blocks, grams, opts, counts, notes, orders)
        stats["keep"] = keep
        if opts.floor:
            stats["search"] = _search_stats(opts, trace)
        return PassResult(stats["blocks"] > 0, stats, notes)


def _order(block: MLPBlock, grams: dict, opts: PruneOptions) -> np.ndarray:
    gram = grams[block.act.output.name]
    w_aug = prune_plan.augmented_weight(block.fc2.weight, block.fc2.bias)
    return prune_plan.importance_order(gram.matrix, gram.rows, w_aug, opts.score, opts.damping)


def _prune_blocks(graph: gs.Graph, blocks: list[MLPBlock], grams: dict, opts: PruneOptions, counts: list[int],
                  notes: list[str], orders: dict[str, np.ndarray]) -> dict:
    stats: dict[str, Any] = {"blocks": 0, "hidden_before": 0, "hidden_after": 0, "kept": [], "rel_error": [],
                             "ridge": []}
    unsolved: list[str] = []
    for block, count in zip(blocks, counts, strict=True):
        gram = grams[block.act.output.name]
        stats["hidden_before"] += block.hidden
        if count >= block.hidden:
            stats["hidden_after"] += block.hidden
            notes.append(f"block {block.index}: keeps all {block.hidden} units")
            continue
        plan = prune_plan.plan_block(gram.matrix, gram.rows, block.fc2.weight, block.fc2.bias, count,
                                     opts.score, opts.compensate, opts.damping, orders[block.act.output.name],
                                     gram.half if opts.validate != "off" else None, opts.validate == "ridge")
        remove_units(graph, block, plan)
        stats["blocks"] += 1
        stats["hidden_after"] += len(plan.keep)
        stats["kept"].append(f"{block.index}:{len(plan.keep)}/{block.hidden}")
        stats["rel_error"].append(round(plan.rel_error, 5))
        stats["ridge"].append(plan.damping)
        if opts.compensate and plan.damping is None:
            unsolved.append(str(block.index))
    if unsolved:
        notes.append(f"blocks {', '.join(unsolved)}: fc2 kept as it was on the kept units (a least-squares "
                     "re-solve generalized worse between halves of the calibration data: too few rows?)")
    return stats


def _search_keep(graph: gs.Graph, grams: dict, opts: PruneOptions, ctx: PassContext,
                 orders: dict[str, np.ndarray], allocation: Callable[[float], list[int]]) -> tuple[float, list[tuple[float, float]]]:
    """The fewest units whose model keeps cosine ≥ floor on the driver's search feeds."""
    return smallest_budget(lambda keep: _probe(graph, grams, opts, ctx, orders, allocation(keep)), opts.floor)


def _probe(graph: gs.Graph, grams: dict, opts: PruneOptions, ctx: PassContext, orders: dict[str, np.ndarray],
           counts: list[int]) -> float:
    """The fidelity probe's score of the graph pruned to these units per block (the graph is left as it is)."""
    probe = ctx.need_fidelity("prune: floor and scope=model")
    trial = graph.copy()
    _prune_blocks(trial, editable_blocks(trial), grams, opts, counts, [], orders)
    return probe(trial)


def _allocation(graph: gs.Graph, blocks: list[MLPBlock], grams: dict, opts: PruneOptions, ctx: PassContext,
                orders: dict[str, np.ndarray]) -> Callable[[float], list[int]]:
    """keep → units per block, as the scope says (scope=model: one probe per block and keep, two more to
    compare the split with the uniform one)."""
    multiple = ctx.rank_multiple
    if opts.scope != "model":
        return lambda keep: _allocate(blocks, grams, replace(opts, keep=keep), multiple)
    hidden = [b.hidden for b in blocks]

    def counts(keep: float) -> list[int]:
        uniform = _uniform(blocks, keep, multiple)

        def alone(index: int) -> float:       # only this block pruned to the keep
            return _probe(graph, grams, opts, ctx, orders, hidden[:index] + uniform[index:index + 1] + hidden[index + 1:])

        losses = prune_alloc.measure_losses(alone, len(blocks))
        chosen = [prune_plan.keep_count(h, f, multiple, 8)
                  for h, f in zip(hidden, prune_alloc.allocate(losses, hidden, keep, opts.min_keep), strict=True)]
        # the losses need not add up: the probe has the last word between this and the uniform allocation
        if chosen != uniform and _probe(graph, grams, opts, ctx, orders, uniform) > \
                _probe(graph, grams, opts, ctx, orders, chosen):
            return uniform
        return chosen

    return functools.lru_cache(maxsize=None)(counts)     # the floor search asks again for the keep it chose


def _search_stats(opts, trace) -> dict:
    return {"knob": "keep", "floor": opts.floor, "points": [list(p) for p in trace]}


def _model_scope_note(counts: list[int], uniform: list[int], blocks: list[MLPBlock]) -> str:
    if counts == uniform:
        return "scope=model: the same fraction in every block scored at least as high on the probe; kept it"
    return ("units per block chosen by the model's output fidelity: "
            + ", ".join(f"{b.index}:{c}/{b.hidden}" for b, c in zip(blocks, counts, strict=True)))


def _uniform(blocks: list[MLPBlock], keep: float, multiple: int) -> list[int]:
    """The same fraction of every block's units."""
    return [prune_plan.keep_count(b.hidden, keep, multiple, 8) for b in blocks]


def _allocate(blocks: list[MLPBlock], grams: dict, opts: PruneOptions, multiple: int) -> list[int]:
    """Units to keep per block: the same fraction, or a global ranking of relative error scores."""
    if opts.scope == "layer":
        return _uniform(blocks, opts.keep, multiple)
    pooled: list[tuple[float, int]] = []
    for i, b in enumerate(blocks):
        g = grams[b.act.output.name]
        w_aug = prune_plan.augmented_weight(b.fc2.weight, b.fc2.bias)
        energy = float(np.trace(w_aug.T @ g.matrix @ w_aug)) or 1.0
        scores = prune_plan.unit_scores(g.matrix, g.rows, w_aug, opts.score, opts.damping) / energy
        pooled.extend((s, i) for s in scores)
    total = int(round(opts.keep * sum(b.hidden for b in blocks)))
    pooled.sort(key=lambda t: -t[0])
    chosen = np.bincount([i for _, i in pooled[:total]], minlength=len(blocks))
    return [prune_plan.keep_count(b.hidden, max(c / b.hidden, opts.min_keep), multiple, 8)
            for b, c in zip(blocks, chosen, strict=True)]
