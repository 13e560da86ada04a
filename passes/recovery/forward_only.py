"""recover method=zo: GRASP group affines tuned by forward passes through ONNX Runtime, then folded.

No torch anywhere on this path, and any graph ONNX Runtime runs qualifies — int8 (the affines fold into the
per-channel weight scales around the integer ops), QDQ, or graphs with operators recovery's torch view lacks.
The pass builds the tuning graph; the teacher (the driver's view of the original) runs the tuner
(`runtime.zo.tuner`) on its training and search feeds. The folded graph is then scored by the driver's fidelity
probe, before and after: it computes what the tuning graph did up to float rounding (and, in int8 graphs, the
dynamic quantization's rounding that follows), and the fold is undone if it scores no better.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx_graphsurgeon as gs

from edgec.passes.base import PassContext, PassResult
from edgec.passes.recovery.affines import Affine, fold
from edgec.passes.recovery.options import AffineSettings
from edgec.passes.recovery.shared import site_stats, slots_for
from edgec.passes.recovery.sites import ROUNDING_KINDS, Site, find_sites
from edgec.passes.recovery.tuning import tuning_model
from edgec.runtime.zo.tuner import ZOSettings


def step_rule(sites: list[Site], optimizer: str, epsilon: float) -> tuple[str, float]:
    """`auto` and ε = 0 resolved: where the sites round (int8, QDQ), Gauss-Newton in random subspaces; elsewhere
    the Jacobian pooled over all batches (on MiniLM each gained where the other found nothing:
    samples/RESULTS.md#forward-only-recovery). The probe is 1e-3 for the Jacobian on a float graph, else 1e-2
    (a smaller probe reads rounding noise; 1e-2 is what the subspace rules were measured with)."""
    rounds = any(s.kind in ROUNDING_KINDS for s in sites)
    rule = optimizer if optimizer != "auto" else "gauss-newton" if rounds else "jacobian"
    return rule, epsilon or (1e-3 if rule == "jacobian" and not rounds else 1e-2)


def recover_zo(graph: gs.Graph, ctx: PassContext, affine: AffineSettings, settings: ZOSettings) -> PassResult:
    """`settings`: the tuner's; optimizer may be `auto` and epsilon 0 (resolved here by `step_rule`)."""
    teacher, probe = ctx.need_teacher("recover method=zo"), ctx.need_fidelity("recover method=zo")
    sites = find_sites(graph, affine.sites, affine.norms)
    if not sites:
        return PassResult(False, {"method": "zo", "sites": 0}, ["recover method=zo: no layer whose output channels "
                                                               "a group affine can fold into"])
    rule, epsilon = step_rule(sites, settings.optimizer, settings.epsilon)
    settings = replace(settings, optimizer=rule, epsilon=epsilon)
    slots = slots_for(sites, affine.groups)
    graph.toposort()
    tuning = tuning_model(gs.export_onnx(graph, do_type_check=False), slots)
    steps = settings.max_steps or 0
    budget, units = ((f"{steps} steps", steps) if settings.minutes <= 0
                     else (f"{settings.minutes:g} min", int(settings.minutes * 60)))
    try:
        with ctx.progress(f"recover: zeroth-order tuning for {budget}", units) as advance:
            result = teacher.tune_affines(tuning, slots, [t.name for t in graph.outputs], settings, affine.batch,
                                          advance)
    except ValueError as exc:      # no training feeds, or ONNX Runtime refuses the tuning graph
        return PassResult(False, {"method": "zo"}, [f"recover method=zo: {exc}"])
    before = probe(graph)
    saved = [[c.values.copy() for c in s.constants()] for s in sites]
    for site, gamma, beta in zip(sites, result.gammas, result.betas, strict=True):
        fold(site, Affine(np.asarray(gamma), np.asarray(beta)))
    folded = probe(graph)
    stats = {"method": "zo", "params": "grasp", "optimizer": settings.optimizer, "epsilon": settings.epsilon,
             **result.as_stats(),
             "score_before": round(before, 6), "score_folded": round(folded, 6), **site_stats(sites, slots)}
    note = (f"zeroth-order tuning ({settings.optimizer}) of {result.trainable} group-affine numbers at {len(sites)} "
            f"sites: {result.steps} steps, {result.forward_passes} forward passes in {result.seconds:.0f} s; "
            f"held-out score {before:.4f} → {folded:.4f} (folded into the graph's constants, same ops)")
    if folded <= before:
        for site, values in zip(sites, saved, strict=True):
            for const, value in zip(site.constants(), values, strict=True):
                const.values = value
        return PassResult(False, stats, [note + "; no gain, the graph is left as it was"])
    return PassResult(True, stats, [note])
