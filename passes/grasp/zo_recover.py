"""recover method=zo: GRASP group affines tuned by forward passes through ONNX Runtime, then folded.

No torch anywhere on this path, and any graph ONNX Runtime runs qualifies — int8 (the affines fold into the
per-channel weight scales around the integer ops), QDQ, or graphs with operators recovery's torch view lacks.
The folded graph is scored on the held-out feeds itself: it computes what the tuning graph did up to float
rounding (and, in int8 graphs, the dynamic quantization's rounding that follows), and the fold is undone if
it scores no better than the graph before tuning.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_graphsurgeon as gs
import onnxruntime as ort

from edgec.passes.base import PassContext, PassResult, TeacherSource
from edgec.passes.grasp.affines import Affine, fold, group_count
from edgec.passes.grasp.sites import Site, find_sites
from edgec.passes.grasp.tuning import tuning_model
from edgec.runtime.batching import training_batches
from edgec.runtime.zo import Pair, SiteSlot, ZOSettings, score, tune

MAX_BATCHES = 256      # training batches whose teacher outputs are held in memory (the stream cycles over them)


@dataclass(frozen=True)
class AffineSettings:
    groups: int = 8
    sites: str = "linear"
    norms: bool = False
    batch: int = 8


def slots_for(sites: list[Site], groups: int) -> list[SiteSlot]:
    return [SiteSlot(s.output, s.channels, group_count(s.channels, groups), f"grasp/{i}/gamma",
                     f"grasp/{i}/beta" if s.shifts else None, s.label) for i, s in enumerate(sites)]


def teacher_pairs(teacher: TeacherSource, outputs: list[str], batch: int) -> tuple[list[Pair], list[Pair]]:
    """(training batches, held-out feeds), each with the original model's outputs on it."""
    train = []
    for feed in training_batches(teacher.training_feeds(), batch):
        train.append((feed, dict(zip(outputs, teacher.run(feed, outputs), strict=True))))
        if len(train) >= MAX_BATCHES:
            break
    held = [(f, dict(zip(outputs, teacher.run(f, outputs), strict=True))) for f in teacher.search_feeds]
    return train, held


def recover_zo(graph: gs.Graph, ctx: PassContext, affine: AffineSettings, zo: ZOSettings) -> PassResult:
    teacher = ctx.need_teacher("recover method=zo")
    sites = find_sites(graph, affine.sites, affine.norms)
    if not sites:
        return PassResult(False, {"method": "zo", "sites": 0}, ["recover method=zo: no layer whose output channels "
                                                               "a group affine can fold into"])
    outputs = [t.name for t in graph.outputs]
    judged = [n for n in outputs if teacher.judged is None or n in teacher.judged] or outputs
    slots = slots_for(sites, affine.groups)
    graph.toposort()
    model = gs.export_onnx(graph, do_type_check=False)
    try:
        session = ort.InferenceSession(tuning_model(model, slots).SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime refuses the tuning graph: leave the model alone
        return PassResult(False, {"method": "zo"}, [f"recover method=zo: ONNX Runtime cannot run the tuning graph "
                                                    f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"])
    train, held = teacher_pairs(teacher, outputs, affine.batch)
    if not train:
        return PassResult(False, {"method": "zo"}, ["recover method=zo: no training feeds"])
    with ctx.progress(f"recover: zeroth-order tuning for {zo.minutes:g} min", int(zo.minutes * 60)) as advance:
        result = tune(session, slots, train, held, outputs, judged, zo, advance)
    before = result.held_out_before
    saved = [[c.values.copy() for c in s.constants()] for s in sites]
    for site, gamma, beta in zip(sites, result.gammas, result.betas, strict=True):
        fold(site, Affine(np.asarray(gamma), np.asarray(beta)))
    folded = score_graph(graph, held, outputs, judged)
    stats = {"method": "zo", "params": "grasp", **result.as_stats(), "held_out_folded": round(folded, 6),
             **site_stats(sites, slots)}
    note = (f"zeroth-order tuning of {result.trainable} group-affine numbers at {len(sites)} sites: {result.steps} "
            f"steps, {result.forward_passes} forward passes in {result.seconds:.0f} s; held-out score "
            f"{before:.4f} → {folded:.4f} (folded into the graph's constants, same ops)")
    if folded <= before:
        for site, values in zip(sites, saved, strict=True):
            for const, value in zip(site.constants(), values, strict=True):
                const.values = value
        return PassResult(False, stats, [note + "; no gain, the graph is left as it was"])
    return PassResult(True, stats, [note])


def score_graph(graph: gs.Graph, held: list[Pair], outputs: list[str], judged: list[str]) -> float:
    sess = ort.InferenceSession(gs.export_onnx(graph, do_type_check=False).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    gots = [dict(zip(outputs, sess.run(outputs, feed), strict=True)) for feed, _ in held]
    return score(gots, held, outputs, judged)


def site_stats(sites: list[Site], slots: list[SiteSlot]) -> dict:
    kinds: dict[str, int] = {}
    for s in sites:
        kinds[s.kind] = kinds.get(s.kind, 0) + 1
    return {"sites": len(sites), "site_kinds": kinds, "groups_per_site": {s.label or s.output: slot.groups
                                                                          for s, slot in zip(sites, slots, strict=True)}}
