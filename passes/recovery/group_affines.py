"""recover params=grasp (backprop): train only GRASP group affines through the torch view, then fold them.

The view's weights stay frozen; a hook on each site's tensor applies h̃ = (1 + u_g) ⊙ h + rms(site) · v_g with
u, v the trainable per-group numbers (dimensionless, so one learning rate fits every site). Training is
recovery's distillation loop (the same loss, held-out scoring, best-weights and early stopping); the best
affines are folded into the graph's constants (`affines.fold`) and the folded graph is scored
through ONNX Runtime.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_graphsurgeon as gs
import torch

from edgec.passes.base import PassContext, PassResult
from edgec.passes.recovery.affines import Affine, fold, group_count, group_index, trainable_count
from edgec.passes.recovery.options import RecoverOptions, budget, distill_settings, progress_units
from edgec.passes.recovery.shared import intermediates, judged_outputs, site_stats, slots_for
from edgec.passes.recovery.sites import Site, find_sites
from edgec.passes.training.device import describe
from edgec.passes.training.distill import distill
from edgec.passes.training.view import TorchView, to_torch_feed


def train_affines(graph: gs.Graph, view: TorchView, ctx: PassContext, opts: RecoverOptions,
                  notes: list[str]) -> PassResult:
    teacher = ctx.need_teacher("recover params=grasp")
    sites = find_sites(graph, opts.sites, opts.norms)
    sites = [s for s in sites if s.kind != "int8" and s.output in _tensor_names(view)]
    if not sites:
        return PassResult(False, {"params": "grasp", "sites": 0},
                          notes + ["recover params=grasp: no layer whose output channels a group affine can fold into"])
    outputs = [t.name for t in graph.outputs]
    settings = dataclasses.replace(distill_settings(opts, ctx, view.model, frozenset(), judged_outputs(teacher, outputs)),
                                   lr=opts.affine_lr)
    scales = _site_scales(view, sites, list(teacher.search_feeds[:4]))
    params = _install_hooks(view, sites, scales, opts.groups)
    matched = intermediates(graph, opts.match, outputs, teacher)
    try:
        with ctx.progress(f"recover: training group affines for {budget(opts).describe()}",
                          progress_units(opts)) as advance:
            result = distill(view, teacher, outputs, matched, settings, advance, parameters=params)
    finally:
        view.hooks.clear()
    for i, site in enumerate(sites):
        fold(site, _affine(params, i, scales[i]))
    folded = ctx.need_fidelity("recover params=grasp")(graph)
    stats = {"method": "backprop", "params": "grasp", "device": describe(ctx.train_device), "steps": result.steps, "seconds": result.seconds,
             "trainable": trainable_count(sites, opts.groups), "held_out_before": result.held_out_before,
             "held_out_best": result.held_out_best, "score_folded": round(folded, 6),
             "stopped_early": result.stopped_early, "curve": result.curve,
             **site_stats(sites, slots_for(sites, opts.groups))}
    note = (f"trained {stats['trainable']} group-affine numbers at {len(sites)} sites for {result.steps} steps in "
            f"{result.seconds:.0f} s: held-out cosine {result.held_out_before:.4f} → {result.held_out_best:.4f}; the folded "
            f"graph scores {folded:.4f}")
    return PassResult(result.held_out_best > result.held_out_before, stats, notes + [note])


def _tensor_names(view: TorchView) -> set[str]:
    return {name for _, _, outs, _ in view.nodes for name in outs}


def _site_scales(view: TorchView, sites: list[Site], feeds: list[dict]) -> list[float]:
    """Each site's RMS activation (the unit of its shifts), from a forward pass with recording hooks."""
    sums = {s.output: 0.0 for s in sites}

    def recorder(name):
        def hook(value: torch.Tensor) -> torch.Tensor:
            sums[name] += float(value.detach().double().pow(2).mean())
            return value
        return hook

    view.hooks.update({s.output: recorder(s.output) for s in sites})
    try:
        with torch.no_grad():
            for feed in feeds:
                view(to_torch_feed(feed))
    finally:
        view.hooks.clear()
    return [float(np.sqrt(sums[s.output] / max(len(feeds), 1))) or 1.0 for s in sites]


def _install_hooks(view: TorchView, sites: list[Site], scales: list[float], groups: int) -> dict[str, torch.Tensor]:
    params: dict[str, torch.Tensor] = {}
    for i, (site, scale) in enumerate(zip(sites, scales, strict=True)):
        k = group_count(site.channels, groups)
        index = torch.from_numpy(group_index(site.channels, k)).to(view.device)
        u = params[f"g{i}"] = torch.zeros(k, device=view.device, requires_grad=True)
        v = torch.zeros(k, device=view.device, requires_grad=site.shifts)
        if site.shifts:
            params[f"b{i}"] = v
        view.hooks[site.output] = _modulation(u, v, index, scale, site.shape)
    return params


def _modulation(u: torch.Tensor, v: torch.Tensor, index: torch.Tensor, scale: float, shape: tuple[int, ...]):
    def hook(h: torch.Tensor) -> torch.Tensor:
        return h * (1 + u[index]).reshape(shape) + scale * v[index].reshape(shape)
    return hook


def _affine(params: dict[str, torch.Tensor], i: int, scale: float) -> Affine:
    u = params[f"g{i}"].detach().double().cpu().numpy()
    v = params[f"b{i}"].detach().double().cpu().numpy() if f"b{i}" in params else np.zeros_like(u)
    return Affine(1 + u, scale * v)
