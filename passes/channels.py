"""channels: remove output channels of convolutions (and what carries them), re-solving each consumer's weights.

Width reduction for convolutional networks: shapes really shrink, so every execution provider runs fewer
multiply-adds (a middle Conv whose input and output both keep a fraction f runs about f² of its work).
`conv/discovery.py` finds which channels can go, `conv/edit.py` removes them; the scores and the
least-squares re-solve are the MLP pruning's (`plans/prune.py`) on the channel Gram of each consumer's input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np
import onnx_graphsurgeon as gs

from edgec.passes.base import Gram, PassContext, PassOptionError, PassResult, build_options
from edgec.passes.conv.discovery import ChannelGroup, find_channel_groups
from edgec.passes.conv.edit import narrow, terminal_rows
from edgec.passes.plans import prune as prune_plan
from edgec.passes.plans import prune_alloc
from edgec.passes.plans.budget_search import describe, smallest_budget


@dataclass(frozen=True)
class ChannelsOptions:
    keep: float = 0.75         # fraction of each prunable Conv's output channels kept
    score: prune_plan.Score = "obs"    # obs (error after the consumers' re-solve) | energy | frank-wolfe
    compensate: bool = True    # re-solve the consumers' weights and biases by least squares on the kept channels
    damping: float = 1e-3      # ridge of scores and re-solve, relative to the Gram's mean diagonal
    floor: float = 0.0         # > 0: ignore keep and search the fewest channels that keep this calibration score
    multiple: int = 8          # channel counts rounded up to this (ONNX Runtime's CPU convolutions block channels
                               # by 8 with AVX2, by 16 with AVX-512: a count between blocks computes a whole block)
    min_channels: int = 8      # never fewer channels in a layer
    scope: Literal["layer", "model"] = "model"   # layer: the same fraction everywhere | model: fractions by what
                               # each layer alone costs the outputs (one probe per layer at keep 0.5)
    min_keep: float = 0.25     # with scope=model, never less than this fraction of a layer

    def __post_init__(self):
        if not 0.0 < self.keep <= 1.0:
            raise PassOptionError(f"pass 'channels': keep must lie in (0, 1], not {self.keep}")
        if self.multiple < 1 or self.min_channels < 1:
            raise PassOptionError("pass 'channels': multiple and min_channels must be ≥ 1")


class ChannelsPass:
    name = "channels"
    Options = ChannelsOptions
    needs = frozenset({"calibration", "fidelity"})
    lossless = False

    def run(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        opts = build_options(ChannelsOptions, ctx.options, self.name)
        groups, near_misses = find_channel_groups(graph)
        notes = _near_miss_notes(near_misses)
        if not groups:
            return PassResult(False, {"groups": 0}, notes + ["no convolution whose channels can be removed"])
        if opts.keep >= 1.0 and not opts.floor:
            return PassResult(False, {"groups": 0}, notes + ["keep=1: nothing to remove"])
        names = sorted({t.tensor.name for g in groups for t in g.terminals})
        grams = ctx.need_calibration("channels").grams(graph, names, axis=1)
        orders = [_order(g, grams, opts) for g in groups]
        fractions = _allocation(graph, groups, grams, orders, opts, ctx)
        keep = opts.keep
        if opts.floor:
            probe = ctx.need_fidelity("channels: floor")
            keep, trace = smallest_budget(
                lambda k: probe(_pruned_copy(graph, grams, orders, fractions(k), opts)), opts.floor)
            notes.append(describe("keep", opts.floor, trace, keep))
            if keep >= 1.0:
                return PassResult(False, {"groups": 0, "keep": 1.0, "search": [list(p) for p in trace]}, notes)
        stats = _prune(graph, groups, grams, orders, fractions(keep), opts, ctx.lineage)
        stats["keep"] = keep
        notes.append(f"{stats['groups']} of {len(groups)} prunable convolutions narrowed: "
                     f"{stats['channels_after']}/{stats['channels_before']} channels kept")
        return PassResult(stats["groups"] > 0, stats, notes)


def _order(group: ChannelGroup, grams: dict[str, Gram], opts: ChannelsOptions) -> np.ndarray:
    """Channels from most to least important for all of the group's consumers together."""
    by_tensor: dict[str, list[np.ndarray]] = {}
    for t in group.terminals:
        rows = terminal_rows(t)
        by_tensor.setdefault(t.tensor.name, []).append(prune_plan.augmented_weight(rows.weight, rows.bias))
    if len(by_tensor) == 1:           # one input (usually one consumer): the refreshed OBS order
        name, weights = next(iter(by_tensor.items()))
        gram = grams[name]
        return prune_plan.importance_order(gram.matrix, gram.rows, np.hstack(weights), opts.score, opts.damping)
    total = np.zeros(group.channels)
    for name, weights in by_tensor.items():
        gram, w_aug = grams[name], np.hstack(weights)
        energy = float(np.sum(w_aug * (gram.matrix @ w_aug))) or 1.0
        total += prune_plan.unit_scores(gram.matrix, gram.rows, w_aug, opts.score, opts.damping) / energy
    return np.argsort(-total, kind="stable")


def _allocation(graph: gs.Graph, groups: list[ChannelGroup], grams: dict[str, Gram], orders: list[np.ndarray],
                opts: ChannelsOptions, ctx: PassContext) -> Callable[[float], list[float]]:
    """keep → the fraction of each group's channels kept. scope=model: each group pruned alone to half its
    channels is scored by the fidelity probe, and the fractions follow the square-root rule of the MLP pruning
    (plans/prune_alloc.py) for the same total number of channels."""
    if opts.scope == "layer" or len(groups) < 2:
        return lambda keep: [keep] * len(groups)
    probe = ctx.need_fidelity("channels: scope=model")

    def alone(index: int) -> float:
        return probe(_pruned_copy(graph, grams, orders, [0.5 if i == index else 1.0 for i in range(len(groups))],
                                  opts))

    losses = prune_alloc.measure_losses(alone, len(groups))
    widths = [g.channels for g in groups]
    return lambda keep: prune_alloc.allocate(losses, widths, keep, min(opts.min_keep, keep))


def _prune(graph: gs.Graph, groups: list[ChannelGroup], grams: dict[str, Gram], orders: list[np.ndarray],
           fractions: list[float], opts: ChannelsOptions, lineage: dict[str, np.ndarray] | None = None) -> dict:
    """`lineage` (PassContext.lineage) learns which original channels each narrowed tensor keeps."""
    stats: dict = {"groups": 0, "channels_before": 0, "channels_after": 0, "kept": []}
    for group, order, keep in zip(groups, orders, fractions, strict=True):
        count = prune_plan.keep_count(group.channels, keep, opts.multiple, opts.min_channels)
        stats["channels_before"] += group.channels
        stats["channels_after"] += count
        if count >= group.channels:
            continue
        kept = np.sort(order[:count])

        def resolve(terminal, w_aug, kept=kept):
            return prune_plan.compensate(grams[terminal.tensor.name].matrix, w_aug, kept, opts.damping)

        narrow(group, kept, resolve if opts.compensate else None, lineage)
        stats["groups"] += 1
        stats["kept"].append(f"{group.name}:{count}/{group.channels}")
    graph.cleanup()
    return stats


def _pruned_copy(graph: gs.Graph, grams: dict[str, Gram], orders: list[np.ndarray], fractions: list[float],
                 opts: ChannelsOptions) -> gs.Graph:
    """The graph with each group pruned to its fraction (the graph itself is left as it is)."""
    trial = graph.copy()
    groups, _ = find_channel_groups(trial)
    _prune(trial, groups, grams, orders, fractions, opts)
    return trial


def _near_miss_notes(near_misses: list[str], shown: int = 5) -> list[str]:
    """One note per reason (a large CNN repeats a few reasons many times), the most frequent first."""
    by_reason: dict[str, list[str]] = {}
    for miss in near_misses:
        name, _, reason = miss.partition(": ")
        by_reason.setdefault(reason, []).append(name)
    ordered = sorted(by_reason.items(), key=lambda item: -len(item[1]))
    notes = [f"left alone: {', '.join(names[:3])}{f' and {len(names) - 3} more' if len(names) > 3 else ''}: {reason}"
             for reason, names in ordered[:shown]]
    rest = sum(len(names) for _, names in ordered[shown:])
    return notes + ([f"left alone: {rest} more Convs for other reasons"] if rest else [])
