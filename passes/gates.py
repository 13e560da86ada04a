"""gates: learn which MLP units (and, with heads < 1, which attention heads) to remove by training retention
gates with the model (adaptive dropout; passes/training/gates.py), then remove them from the graph.

Where `prune` and `heads` decide from calibration statistics, layer by layer, this pass lets the distillation
loss decide, over the whole model: a block whose units the outputs need keeps more. The last part of the
budget trains the network with exactly the chosen units, so cutting them changes nothing; that is checked
(the cut graph in ONNX Runtime against the trained, masked torch view) before the graph is replaced.
Needs torch and training data (the teacher), like `recover`; `--recover` afterwards trains on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_graphsurgeon as gs

from edgec.passes.attention.discovery import find_attention
from edgec.passes.attention.edit import remove_heads
from edgec.passes.base import PassContext, PassOptionError, PassResult, build_options
from edgec.passes.conv.gating import channel_gate_specs, cut_channels
from edgec.passes.mlp.discovery import editable_blocks
from edgec.passes.mlp.units import remove_units
from edgec.passes.plans.heads import columns
from edgec.passes.plans.prune import BlockPlan

CUT_TOLERANCE = 1e-3     # relative L2 between the cut graph and the masked view (float32 summation order)


@dataclass(frozen=True)
class GatesOptions:
    keep: float = 0.5          # fraction of all MLP units kept (where, the gates learn)
    heads: float = 1.0         # fraction of all attention heads kept (1: heads are not gated)
    channels: float = 1.0      # fraction of all prunable convolution channels kept (1: channels are not gated)
    channel_min_keep: float = 0.25   # never fewer than this fraction of a channel group (nor 8 channels)
    multiple: int = 8          # channel counts rounded up to this (ONNX Runtime's CPU convolutions block by 8)
    minutes: float = 5.0       # training budget (wall clock)
    steps: int = 0             # > 0: a budget of optimizer steps instead (reproducible; minutes ignored)
    min_keep: float = 0.1      # never fewer than this fraction of a block's units or heads
    lr: float = 1e-4           # weights
    gate_lr: float = 0.05      # retention logits
    temperature: float = 0.5   # Gumbel-sigmoid
    alpha: float = 0.01        # pull of the logits toward the falling target
    soft: float = 0.7          # fraction of the budget with learned masks; the rest trains the chosen units
    batch: int = 8

    def __post_init__(self):
        if not 0 < self.keep <= 1 or not 0 < self.heads <= 1 or not 0 < self.channels <= 1:
            raise PassOptionError(f"pass 'gates': keep, heads and channels must lie in (0, 1], not {self.keep}, "
                                  f"{self.heads}, {self.channels}")
        if (self.minutes <= 0 and self.steps <= 0) or self.steps < 0 or not 0 < self.soft < 1:
            raise PassOptionError("pass 'gates': minutes must be > 0 and soft in (0, 1)")


class GatesPass:
    name = "gates"
    Options = GatesOptions
    needs = frozenset({"teacher", "calibration"})
    lossless = False

    def run(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        opts = build_options(GatesOptions, ctx.options, self.name)
        mlps = editable_blocks(graph) if opts.keep < 1 else []
        heads, notes = _gateable_heads(graph, ctx, opts)
        ordered = graph.copy()
        ordered.toposort()        # the graph the view runs: channel groups are found on it, as the cut finds them
        channels = channel_gate_specs(ordered) if opts.channels < 1 else []
        if not mlps and not heads and not channels:
            return PassResult(False, {}, notes + ["gates: no MLP block, attention head or convolution channel group to "
                                                  "gate (or keep, heads and channels all 1)"])
        try:
            import torch  # noqa: F401
        except ImportError:
            return PassResult(False, {}, ["gates skipped: torch is not installed"])
        from edgec.passes.training.device import describe
        from edgec.passes.training.gates import train_gates
        from edgec.passes.training.view import TorchView, UnsupportedGraph

        model = gs.export_onnx(ordered, do_type_check=False)
        try:
            view = TorchView(model).to_device(ctx.train_device)
        except UnsupportedGraph as exc:
            return PassResult(False, {}, notes + [f"gates need the torch view of the graph: {exc}"])
        gates = _gates(mlps, heads, channels)
        teacher = ctx.need_teacher("gates")
        settings = _settings(opts, _batch(opts, model, teacher), ctx.seed)
        with ctx.progress(f"gates: training for {f'{opts.steps} steps' if opts.steps else f'{opts.minutes:g} min'}",
                          opts.steps or int(opts.minutes * 60)):
            result = train_gates(view, teacher, [t.name for t in graph.outputs], gates, settings)
        view.to_device("cpu")        # the cut is checked against the masked view as ONNX Runtime computes it
        cut = _cut(gs.import_onnx(view.write_back()), result.kept, opts)
        lineage = dict(ctx.lineage)
        if channels and cut_channels(cut, result.kept, lineage):
            cut.toposort()
        error = _cut_error(cut, view, gates, result.kept, list(teacher.search_feeds[:2]))
        stats = {"steps": result.steps, "seconds": result.seconds, "device": describe(ctx.train_device),
                 "cut_rel_error": float(f"{error:.2e}"),
                 "kept": {t: f"{len(k)}/{g.units}" for g in gates for t, k in result.kept.items() if t == g.tensor},
                 "retention": result.retention}
        if error > CUT_TOLERANCE:
            return PassResult(False, stats, notes + [f"gates: the cut graph differs from the trained, masked model by "
                                             f"{error:.1e}; left the graph as it was"])
        from edgec.passes.ort_tools import replace_contents

        replace_contents(graph, cut)
        ctx.lineage.update(lineage)
        return PassResult(True, stats, notes + [_summary(gates, result.kept, result.steps)])


def _gateable_heads(graph: gs.Graph, ctx: PassContext, opts: GatesOptions) -> tuple[list, list[str]]:
    """The attention blocks whose heads can be cut exactly (checked like the heads pass does, before any
    training is spent), and notes for the others."""
    if opts.heads >= 1:
        return [], []
    found = find_attention(graph)
    if not found.blocks:
        return [], []
    from edgec.passes.attention.head_cut import uneditable_blocks

    bad = set(uneditable_blocks(graph, found.blocks, ctx, opts.heads))
    notes = [f"block {b.index} ({b.name}): its heads cannot be removed exactly; not gated" for b in found.blocks
             if b.index in bad]
    return [b for b in found.blocks if b.index not in bad], notes


def _cut(graph: gs.Graph, kept: dict[str, np.ndarray], opts: GatesOptions) -> gs.Graph:
    """Remove the units the gates dropped; fc2 / the output projection keep their trained rows."""
    for block in editable_blocks(graph) if opts.keep < 1 else []:
        keep = kept[block.act.output.name]
        if len(keep) < block.hidden:
            remove_units(graph, block, BlockPlan(keep, block.fc2.weight[keep], block.fc2.bias, 0.0))
    for attention in find_attention(graph).blocks if opts.heads < 1 else []:
        chosen = kept.get(attention.o.x.name)
        if chosen is not None and len(chosen) < attention.heads:
            remove_heads(graph, attention, chosen, attention.o.weight[columns(chosen, attention.head_dim)],
                         attention.o.bias)
    graph.cleanup().toposort()
    return graph


def _cut_error(cut: gs.Graph, view, gates, kept: dict[str, np.ndarray], feeds: list[dict]) -> float:
    """Worst relative L2, over the float outputs, between the cut graph (ONNX Runtime) and the view with the
    removed units masked to zero; inf when ONNX Runtime refuses or cannot run the cut graph."""
    from edgec.passes.training.gates import fixed_mask
    from edgec.passes.training.round_trip import view_error

    view.hooks.update({name: fixed_mask(g, kept[g.tensor]) for g in gates for name in g.tensors})
    try:
        return view_error(view, gs.export_onnx(cut), feeds)[0]
    except Exception:  # noqa: BLE001 - a cut ONNX Runtime refuses or fails on is a failed cut
        return float("inf")
    finally:
        view.hooks.clear()


def _gates(mlps: list, heads: list, channels: list[tuple[str, tuple[str, ...], int]]) -> list:
    """One gate per MLP block (its hidden units), attention block (its heads) and group of convolution channels
    (`channel_gate_specs`: on the channel axis of every consumer input that carries them)."""
    from edgec.passes.training.gates import Gate

    return [Gate(b.act.output.name, b.hidden, 1, "mlp", b.index) for b in mlps] + \
        [Gate(b.o.x.name, b.heads, b.head_dim, "heads", b.index) for b in heads] + \
        [Gate(key, count, 1, "channels", i, axis=1, also=also) for i, (key, also, count) in enumerate(channels)]


def _settings(opts: GatesOptions, batch: int, seed: int):
    from edgec.passes.training.gates import GateSettings

    return GateSettings(minutes=opts.minutes, steps=opts.steps,
                        keep={"mlp": opts.keep, "heads": opts.heads, "channels": opts.channels},
                        min_keep=opts.min_keep, lr=opts.lr, gate_lr=opts.gate_lr, temperature=opts.temperature,
                        alpha=opts.alpha, soft=opts.soft, batch=batch, seed=seed,
                        pool_min_keep={"channels": opts.channel_min_keep}, multiple={"channels": opts.multiple})


def _batch(opts: GatesOptions, model, teacher) -> int:
    """Feeds stacked per step: as recovery's (one at a time for a batch-1 export, fewer for large inputs)."""
    from edgec.passes.recovery.options import batch_axis_free, feeds_per_step

    batch = opts.batch if batch_axis_free(model) else 1
    return min(batch, feeds_per_step(teacher.search_feeds[0])) if teacher.search_feeds else batch


def _summary(gates, kept: dict[str, np.ndarray], steps: int) -> str:
    parts = []
    for pool, label in (("mlp", "MLP units"), ("heads", "heads"), ("channels", "convolution channels")):
        members = [g for g in gates if g.pool == pool]
        if members:
            parts.append(f"{label} " + ", ".join(f"{len(kept[g.tensor])}/{g.units}" for g in members))
    return f"gates trained {steps} steps; kept per block: " + "; ".join(parts)
