"""recover params=full (backprop): distil every float32 weight of the compressed model's torch view against the
original, then write the trained initializers back (the graph's structure is unchanged)."""

from __future__ import annotations

from dataclasses import asdict

import onnx_graphsurgeon as gs

from edgec.passes.base import PassContext, PassResult
from edgec.passes.ort_tools import replace_contents
from edgec.passes.recovery.features import conv_feature_maps
from edgec.passes.recovery.options import RecoverOptions, budget, distill_settings, progress_units
from edgec.passes.recovery.shared import intermediates, judged_outputs
from edgec.passes.training.device import describe
from edgec.passes.training.distill import distill


def train_weights(graph: gs.Graph, view, ctx: PassContext, opts: RecoverOptions, error: float,
                  rewritten: frozenset[str], notes: list[str]) -> PassResult:
    """`error`: the view's round-trip error (reported); `rewritten`: the initializers compression wrote."""
    teacher = ctx.need_teacher("recover")
    outputs = [t.name for t in graph.outputs]
    # every output teaches (token states too: measured richer than the sentence embedding alone), but the
    # best weights are chosen on what the user's gate judges
    matched = intermediates(graph, opts.match, outputs, teacher)
    settings = distill_settings(opts, ctx, view.model, rewritten, judged_outputs(teacher, outputs))
    if opts.match != "none":
        settings.features = conv_feature_maps(graph, view, teacher, outputs + matched, ctx.lineage)
    with ctx.progress(f"recover: distilling for {budget(opts).describe()}", progress_units(opts)) as advance:
        result = distill(view, teacher, outputs, matched, settings, advance)
    trained = gs.import_onnx(view.write_back())
    replace_contents(graph, trained)
    stats = {**asdict(result), "device": describe(ctx.train_device), "trainable_tensors": len(view.trainable),
             "rewritten_tensors": len(rewritten & set(view.trainable)), "matched_intermediates": len(matched),
             "matched_feature_maps": len(settings.features),
             "round_trip_rel_error": float(f"{error:.2e}")}
    note = (f"distilled {result.steps} steps in {result.seconds:.0f} s: held-out cosine "
            f"{result.held_out_before:.4f} → {result.held_out_best:.4f}"
            + (" (stopped early)" if result.stopped_early else ""))
    start = result.held_out_before
    if result.int8_from_step is not None and result.held_out_int8_start is not None:
        start = result.held_out_int8_start
        note = (f"distilled {result.steps} steps in {result.seconds:.0f} s, through int8 rounding from step "
                f"{result.int8_from_step}: held-out cosine {result.held_out_before:.4f} (float) → "
                f"{result.held_out_int8_start:.4f} (int8, then) → {result.held_out_best:.4f} (int8)")
    return PassResult(result.held_out_best > start, stats, notes + [note])
