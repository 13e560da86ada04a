"""Dynamic int8's variants — as it is, after activation smoothing (`int8.smooth`), with outlier channels computed
apart (`int8.outliers`), or both — and which of them `quantize` searches and times: with smooth/outliers=auto the
costly ones only where int8 of every layer misses the floor as it is; those that then meet it are all timed.
Also the scoring helpers the pass shares (each builder's all-int8 model judged once)."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import replace
from typing import Sequence

import onnx
import onnx_graphsurgeon as gs

from edgec.passes.base import PassContext
from edgec.passes.int8.bias import corrects_bias
from edgec.passes.int8.recipes import Int8Builder, Recipe, with_weight_fix
from edgec.passes.int8.rounding import rounds_weights

# calibration inputs (fit and search) statistics need: smoothing's scales and the split's channels are per-channel
# maxima, and static ranges (`passes.quantize`) are maxima too: on a captcha CRNN, ranges from 4 inputs held the
# floor on them and 0.99 on 4 held-out ones, and moved a logit by 14 % of the range on the 16 inputs after; on a
# ViT-S with 4, smoothed int8 met the floor on them and moved unseen images' masks by 6 %
MIN_FEEDS = 8
MIN_FIT = 4           # calibration feeds beside the search feeds that GPTQ's H may come from


def dynamic_variants(stack: ExitStack, model: onnx.ModelProto, recipe: Recipe, options: dict[str, str], floor: float,
                     ctx: PassContext, notes: list[str], round_weights: bool = True) -> list[Int8Builder]:
    """Dynamic int8 as it is, and (with calibration inputs to choose their scales and a judge) after activation
    smoothing, with outlier channels computed apart, or both. With smooth/outliers=auto those are tried only where
    int8 of every layer misses the floor as it is (smoothing folded into a LayerNorm is free: kept wherever it scores
    higher). Each is also scored with GPTQ-rounded weights (`int8.rounding`) and bias correction (`int8.bias`), each
    kept where higher. The variants whose all-int8
    model meets the floor are all returned, to be timed against each other;
    where none does, the one that scores highest, for mixed precision. `options`: the pass's smooth and outliers
    (auto | true | false)."""
    feeds = ctx.calibration.feeds if ctx.calibration is not None else ()
    judged = bool(feeds) and ctx.fidelity is not None
    fit = _fit_feeds(ctx, feeds)
    plain = stack.enter_context(Int8Builder(model, recipe, feeds if judged else (), moments_on=fit))
    settings = {k: str(options[k]).strip().lower() for k in ("smooth", "outliers")}
    if set(settings.values()) == {"false"} or not judged:
        return [_corrected_where_higher(plain, ctx, notes, round_weights) if judged else plain]
    if len(feeds) < MIN_FEEDS:    # their scales are per-channel maxima: static ranges' weakness, per channel
        notes.append(f"activation smoothing not tried: {len(feeds)} calibration inputs (it and the outlier split "
                     f"need ≥ {MIN_FEEDS}: on a ViT-S with 4, smoothed int8 met the floor on them and moved unseen "
                     "images' masks by 6 %)")
        return [plain]
    base = _free_smoothed(stack, model, plain, feeds, ctx, notes) if settings["smooth"] == "auto" else plain
    short = "auto" in settings.values() and all_int8_score(ctx, base) < floor
    want = {k: v == "true" or (v == "auto" and short) for k, v in settings.items()}
    smoothed = _dynamic_builder(stack, model, replace(recipe, smooth="all"), feeds, notes, fit=fit) \
        if want["smooth"] else None
    # smooth=true keeps only the smoothed model where smoothing changed something; each kept model also with its
    # outlier channels apart (reusing its smoothing) where wanted, and as it is unless outliers=true
    bases = [smoothed] if smoothed is not None and settings["smooth"] == "true" else \
        [b for b in (base, smoothed) if b is not None]
    variants: list[Int8Builder] = []
    for kept in bases:
        variants += [kept] if settings["outliers"] != "true" else []
        if want["outliers"]:
            split = _dynamic_builder(stack, model, replace(kept.recipe, outliers=True), feeds, notes,
                                     kept if kept.recipe.smooth else None, fit=fit)
            variants += [split] if split is not None else []
    variants = variants or bases                   # outliers=true, and no input had outliers to split
    variants = [_corrected_where_higher(v, ctx, notes, round_weights) for v in variants]
    scores = {id(v): all_int8_score(ctx, v) for v in variants}
    meeting = [v for v in variants if scores[id(v)] >= floor]
    chosen = meeting or [max(variants, key=lambda v: scores[id(v)])]
    if len(variants) > 1:
        notes.append("dynamic int8, every layer, on the search feeds: "
                     + ", ".join(f"{v.recipe.variant} {scores[id(v)]:.4f}" for v in variants)
                     + (f" (those at the floor {floor} timed)" if len(chosen) > 1 else
                        f": {chosen[0].recipe.variant}"))
    return chosen


def _corrected_where_higher(builder: Int8Builder, ctx: PassContext, notes: list[str],
                            round_weights: bool = True) -> Int8Builder:
    """The builder with its int8 weights GPTQ-rounded (`int8.rounding`), then with bias correction (`int8.bias`: each
    int8 MatMul's mean output shift taken out of its bias Add), each where its all-int8 model scores higher on the
    search feeds."""
    for fix, label, applies in (("round", "GPTQ-rounded weights",
                                 round_weights and rounds_weights(builder.model, builder.recipe.ops)),
                                ("bias", "bias correction", corrects_bias(builder.model, "dynamic"))):
        if not applies:
            continue
        plain = builder.recipe
        before = all_int8_score(ctx, builder)
        after = fixed_score(ctx, builder, with_weight_fix(plain, fix), notes)
        notes.append(f"dynamic int8 ({plain.variant}), every layer, on the search feeds: {before:.5f}, {after:.5f} "
                     f"with {label}{': taken' if after > before else ''}")
        builder = builder if after > before else builder.with_recipe(plain)
    return builder


def _free_smoothed(stack: ExitStack, model: onnx.ModelProto, plain: Int8Builder, feeds: Sequence[dict],
                   ctx: PassContext, notes: list[str]) -> Int8Builder:
    """Dynamic int8 after the smoothing that costs nothing (folded into LayerNorms) where it scores higher."""
    free = _dynamic_builder(stack, model, replace(plain.recipe, smooth="free"), feeds, [], fit=_fit_feeds(ctx, feeds))
    if free is None or all_int8_score(ctx, free) <= all_int8_score(ctx, plain):
        return plain
    notes.append(f"dynamic int8, every layer, on the search feeds: {all_int8_score(ctx, plain):.4f} as it is, "
                 f"{all_int8_score(ctx, free):.4f} with activation smoothing folded into LayerNorms: smoothed")
    return free


def _dynamic_builder(stack: ExitStack, model: onnx.ModelProto, recipe: Recipe, feeds: Sequence[dict],
                     notes: list[str], smoothed_by: Int8Builder | None = None,
                     fit: Sequence[dict] | None = None) -> Int8Builder | None:
    """A smoothed and/or outlier-split dynamic recipe's builder, or None where it changed nothing or failed."""
    try:
        builder = stack.enter_context(Int8Builder(model, recipe, feeds, smoothed_by, moments_on=fit))
    except Exception as exc:  # noqa: BLE001 - an option: its failure leaves the other variants
        notes.append(f"dynamic int8 ({recipe.variant}) failed ({first_line(exc)}): not tried")
        return None
    if (recipe.smooth and not builder.smoothed_inputs) or (recipe.outliers and not builder.float_only):
        notes.extend(n for n in (builder.notes if recipe.smooth != "free" else []) if n not in notes)
        return None
    return builder


def fixed_score(ctx: PassContext, builder: Int8Builder, recipe: Recipe, notes: list[str]) -> float:
    """The all-int8 score of the builder set to `recipe` (a weight fix of its recipe), −∞ with a note where the fix
    fails: the recipe without it stands."""
    try:
        return all_int8_score(ctx, builder.with_recipe(recipe))
    except Exception as exc:  # noqa: BLE001 - an option: its failure leaves the recipe as it was
        notes.append(f"{recipe.label} int8 failed ({first_line(exc)}): not used")
        return float("-inf")


def _fit_feeds(ctx: PassContext, feeds: Sequence[dict]) -> list[dict]:
    """The calibration feeds other than the search feeds, where at least MIN_FIT remain (else all of them): what
    GPTQ's H is computed on, so that the search feeds judge it on inputs it did not fit."""
    scored = ctx.calibration.scored if ctx.calibration is not None and ctx.fidelity is not None else 0
    return list(feeds[:len(feeds) - scored]) if len(feeds) - scored >= MIN_FIT else list(feeds)


def all_int8_score(ctx: PassContext, builder: Int8Builder) -> float:
    """The score of the builder's all-int8 model for its current recipe, judged once per compile."""
    scores = recipe_scores(ctx, builder)
    if () not in scores:
        scores[()] = model_score(ctx, builder.build())
    return scores[()]


def recipe_scores(ctx: PassContext, builder: Int8Builder) -> dict[tuple[str, ...], float]:
    """The scores of the builder's recipe by float layers (() = all int8), kept in `ctx.memo`: a later attempt of
    the same compile (the step-back's tighter floors) on the same graph and data judges none of them again."""
    return ctx.memo.setdefault(("quantize", builder.digest, builder.recipe), {})


def model_score(ctx: PassContext, model: onnx.ModelProto) -> float:
    if ctx.fidelity is None:
        return 1.0
    return float(ctx.fidelity(gs.import_onnx(model)))


def first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0][:160] if text else type(exc).__name__)


