"""Static (QDQ) int8's builders: which calibration inputs set its ranges, and which method and scales it uses.

Static int8 fixes each activation's range from calibration inputs and clips a new input beyond it, so it is scored
on inputs its ranges have not seen: its scoring builders calibrate on the fit feeds and are scored on the search
feeds; the model written is rebuilt, with the same layers float, on ranges from every calibration feed (ranges that
cover more inputs clip fewer new ones). With fewer than `MIN_STATIC_FEEDS` inputs, static int8 runs only where the
ranges are stable (`stable_ranges`).
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import replace
from typing import Sequence

import onnx
import onnx_graphsurgeon as gs

from edgec.passes.base import Feed, PassContext
from edgec.passes.int8.bias import corrects_bias
from edgec.passes.int8.choice import Candidate
from edgec.passes.int8.dynamic import MIN_FEEDS as MIN_STATIC_FEEDS
from edgec.passes.int8.dynamic import all_int8_score, fixed_score
from edgec.passes.int8.ranges import MAX_RANGE_GROWTH, MIN_FEEDS, method_feeds, range_growth
from edgec.passes.int8.recipes import Int8Builder, Recipe, with_weight_fix
from edgec.passes.int8.rounding import rounds_weights

STATIC_OPS = ("Conv", "MatMul", "Gemm")
# with the weighted layers, the operators ONNX Runtime's CPU EP runs in int8 between them (QLinearAdd/Mul/Concat/
# pooling/Sigmoid/LeakyRelu, int8 Resize and MaxPool) or that only move data; Relu/Clip fold into the ranges
STATIC_WIDE = STATIC_OPS + ("Add", "Mul", "Concat", "MaxPool", "AveragePool", "GlobalAveragePool", "Sigmoid",
                            "LeakyRelu", "Resize", "Relu", "Clip", "Transpose", "Reshape", "Squeeze", "Unsqueeze",
                            "Flatten", "Split")


def static_variants(stack: ExitStack, model: onnx.ModelProto, recipe: Recipe, methods: Sequence[str], per_channel: bool,
                    ctx: PassContext, notes: list[str], round_weights: bool = True
                    ) -> list[tuple[Int8Builder, list[Feed] | None]]:
    """The builder whose calibration method (of `methods`) and weight scales (per-channel or per-tensor) score
    highest all-int8 on the search feeds (one calibration per method; the scales need none), the best of them also
    with GPTQ-rounded weights (`int8.rounding`) and with bias correction (`int8.bias`), with the feeds its final
    model is calibrated on (None: its own)."""
    judged = ctx.fidelity is not None
    feeds = list(calibration_feeds(ctx))
    fit = _fit_count(ctx, len(feeds), notes)
    by_method = method_feeds(methods, model, ctx.calibration, feeds, recipe.ops, notes, first_of=fit)
    unseen = {id(f) for f in feeds[fit:]}
    builders = [stack.enter_context(Int8Builder(model, replace(recipe, calibrate=m),
                                                [f for f in chosen if id(f) not in unseen])) for m, chosen in by_method]
    every = dict(by_method) if unseen else {}
    scales = [True, False] if per_channel and judged and builders[0].per_channel_ok else [builders[0].recipe.per_channel]
    if len(builders) * len(scales) == 1 and not judged:
        return [(builders[0], every.get(builders[0].recipe.calibrate))]
    scored = []
    for builder in builders:
        for scale in scales:
            variant = replace(builder.recipe, per_channel=scale)
            scored.append((all_int8_score(ctx, builder.with_recipe(variant)), variant, builder))
    best = max(scored, key=lambda s: s[0])
    # the best with its weights GPTQ-rounded, then bias-corrected: each kept where it scores higher (bias correction:
    # open-nsfw 0.9947 → 0.9971, a ResNet-18 0.861 → 0.852)
    for fix, applies in (("round", judged and round_weights and rounds_weights(best[2].model, best[1].ops)),
                         ("bias", judged and corrects_bias(best[2].model, "static"))):
        if applies:
            variant = with_weight_fix(best[1], fix)
            scored.append((fixed_score(ctx, best[2], variant, notes), variant, best[2]))
            best = max(scored, key=lambda s: s[0])
    scored = [s for s in scored if s[0] > float("-inf")]
    if len(scored) == 1:
        return [(best[2].with_recipe(best[1]), every.get(best[1].calibrate))]
    notes.append("static int8, every layer, on the search feeds: "
                 + ", ".join(f"{r.variant} {v:.4f}" for v, r, _ in scored) + f": {best[1].variant} chosen")
    return [(best[2].with_recipe(best[1]), every.get(best[1].calibrate))]


def as_written(stack: ExitStack, finals: dict, builder: Int8Builder, candidate: Candidate,
           every: list[Feed] | None) -> Candidate:
    """The candidate as it is written: static int8 rebuilt with ranges from every calibration feed."""
    if every is None:
        return candidate
    rebuilt = rebuilt_on_every_feed(stack, finals, builder, candidate.result.float_layers, every)
    return replace(candidate, result=replace(candidate.result, model=rebuilt))


def rebuilt_on_every_feed(stack: ExitStack, finals: dict[str, Int8Builder], scored: Int8Builder,
                          float_layers: list[str], feeds: list[Feed]) -> onnx.ModelProto:
    """The model `scored` built (ranges from the fit feeds), rebuilt with the same layers float on ranges from every
    calibration feed; `finals` keeps one rebuilding builder per calibration method."""
    recipe = scored.recipe
    if recipe.calibrate not in finals:
        finals[recipe.calibrate] = stack.enter_context(scored.recalibrated(feeds))
    return finals[recipe.calibrate].with_recipe(recipe).build(float_layers)


def stable_ranges(graph: gs.Graph, ctx: PassContext, count: int, notes: list[str]) -> bool:
    """Whether fewer than MIN_STATIC_FEEDS calibration inputs may still set static ranges (a note either way)."""
    if not count or ctx.fidelity is None or ctx.calibration is None:
        return False
    if count < MIN_FEEDS:
        notes.append(f"static int8 not tried: {count} calibration inputs to set its activation ranges (it needs ≥ "
                     f"{MIN_STATIC_FEEDS}, or ≥ {MIN_FEEDS} whose ranges agree: ranges from a handful of inputs clip "
                     "the next one)")
        return False
    if not {n.op for n in graph.nodes} & set(STATIC_OPS):
        return False
    growth, where = range_growth(graph, ctx.calibration, STATIC_OPS)
    if growth <= MAX_RANGE_GROWTH:
        notes.append(f"static int8 tried on {count} calibration inputs: the ranges of half of them cover the other "
                     f"half's activations to within {growth:.0%} of their span (≤ {MAX_RANGE_GROWTH:.0%})")
        return True
    shown = f" by {growth:.0%} of their span at '{where}'" if where else ""
    notes.append(f"static int8 not tried: {count} calibration inputs to set its activation ranges, and the ranges of "
                 f"half of them miss the other half's activations{shown} (it needs ≥ {MIN_STATIC_FEEDS} inputs, or "
                 f"ranges within {MAX_RANGE_GROWTH:.0%}: ranges from a handful of inputs clip the next one)")
    return False


def calibration_feeds(ctx: PassContext) -> Sequence[Feed]:
    feeds = ctx.calibration.feeds if ctx.calibration is not None else None
    if not feeds:
        raise ValueError("static int8 needs calibration inputs")
    return feeds


def _fit_count(ctx: PassContext, count: int, notes: list[str]) -> int:
    """How many of the calibration feeds (the first) set static int8's ranges while it is scored: all but the search
    feeds, where enough remain (`int8.ranges.MIN_FEEDS`); else every one, scored on feeds it saw (a note says so)."""
    scored = ctx.calibration.scored if ctx.calibration is not None and ctx.fidelity is not None else 0
    if not scored:
        return count
    if count - scored < MIN_FEEDS:
        notes.append(f"static int8 scored on calibration inputs that set its ranges too ({count} in all): a score on "
                     "inputs it has not seen needs more")
        return count
    note = (f"static int8 scored on {scored} calibration inputs with ranges from the other {count - scored} (its fixed "
            f"ranges clip inputs they have not seen); the model written takes its ranges from all {count}")
    notes += [] if note in notes else [note]          # once, though the layers alone may be tried after the wide set
    return count - scored
