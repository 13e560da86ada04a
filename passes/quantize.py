"""quantize: int8 through ONNX Runtime's quantization tools, the recipe chosen by fidelity and measured speed.

Recipes (`passes.int8.recipes`):
- dynamic: MatMul/Gemm weights int8, activations quantized at run time (MatMulInteger): no data needed,
  robust to activation outliers (transformers); where it misses the floor, also after activation smoothing
  (`passes.int8.smooth`: outlier channels moved into the weights, exact in float) and with outlier channels
  computed apart in float (`passes.int8.outliers`), the variants that meet the floor timed against each other;
- static: QDQ with activation ranges calibrated on the calibration feeds, Conv/MatMul/Gemm, fused by ONNX
  Runtime into QLinearConv/QLinearMatMul: the int8 that makes convolutional networks faster (dynamic int8
  of a Conv, ConvInteger, is slower than float on CPUs). Its scores on the search feeds are taken with ranges
  from the other calibration feeds, as fixed ranges clip inputs they have not seen (`passes.int8.static`). The
  calibration method (min/max or a percentile of each activation's histogram) is the one that scores higher there.

`mode=auto` (the default) builds every recipe that applies. With a `floor`, a recipe whose int8 scores below
it on the search feeds keeps its most sensitive layers float until it does (`passes.int8.mixed`); the
recipes that meet the floor are then timed side by side with the float graph on the judging machine, and
the fastest wins — the float graph too, when no int8 is faster in two timings. Static needs 8 calibration
inputs, or 4–7 whose activation ranges agree (`passes.int8.ranges`). Runs last, after the compression passes.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass, replace
from typing import Literal, get_args

import onnx
import onnx_graphsurgeon as gs

from edgec.passes.base import Feed, PassContext, PassOptionError, PassResult, build_options
from edgec.passes.graph_tools import carried_state
from edgec.passes.int8.choice import Candidate, fastest
from edgec.passes.int8.dynamic import MIN_FEEDS as MIN_STATIC_FEEDS
from edgec.passes.int8.dynamic import dynamic_variants, first_line, model_score, recipe_scores
from edgec.passes.int8.entry import with_entries_float
from edgec.passes.int8.mixed import MixedResult, fewest_float_layers
from edgec.passes.int8.recipes import WEIGHTED_OPS, Int8Builder, Recipe
from edgec.passes.int8.static import (
    STATIC_OPS,
    STATIC_WIDE,
    as_written,
    stable_ranges,
    static_variants,
)
from edgec.passes.ort_tools import replace_contents

Mode = Literal["auto", "dynamic", "static"]
Calibrate = Literal["auto", "minmax", "percentile", "entropy"]
MODES = get_args(Mode)
INTEGER_OPS = ("MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul", "QLinearMatMul", "QLinearConv",
               "DequantizeLinear", "DynamicQuantizeLSTM", "MatMulNBits", "QAttention")
DYNAMIC_OPS = ("MatMul", "Gemm", "Attention")   # Attention: ONNX Runtime's fused one (the fuse pass), as QAttention
# static int8 fixes activation ranges from the calibration inputs and clips unseen inputs beyond them. It is scored
# with ranges from the fit feeds on the search feeds (4 of the sweep's 16 inputs), whose tail is short: it must meet
# the floor with this share of the error budget, dynamic int8 (ranges measured on each input) with all of it. On the
# sweep, a YOLOX detector at 0.9914 (share 1) and again at 0.9933 (share 0.75) moved an unseen value by 8.7 % of the
# range; at 0.5 it stays float (samples/RESULTS.md#int8)
STATIC_ERROR_SHARE = 0.5


def static_floor(floor: float) -> float:
    """The score static int8 must keep where `floor` is asked: only STATIC_ERROR_SHARE of the distance to 1 (the
    search's floor and, in the compile's verification, the held-out gate of a model with static int8)."""
    return round(1 - (1 - floor) * STATIC_ERROR_SHARE, 6) if 0 < floor < 1 else floor


@dataclass(frozen=True)
class QuantizeOptions:
    mode: Mode = "auto"           # auto (every recipe that applies, the fastest that meets the floor) | dynamic | static
    per_channel: bool = True      # per-channel weights: closer to float than per-tensor (samples/RESULTS.md#int8)
    # 7-bit weights: auto = when the judging CPU's int8 sums saturate (x86 without VNNI, ctx.int8_saturates), so
    # the fidelity judged there is what every CPU computes (edgec.runtime.cpu); true = always (the x86 target)
    reduce_range: str = "auto"
    ops: str = "auto"             # operator types to quantize (auto: MatMul,Gemm dynamic; Conv,MatMul,Gemm static)
    calibrate: Calibrate = "auto"  # static ranges: auto = minmax or percentile, whichever scores higher
    floor: float = 0.0            # > 0: the search-feed score int8 must keep (else layers stay float, or all)
    mixed: bool = True            # below the floor: keep the most sensitive layers float instead of the whole graph
    # dynamic: activation smoothing first (int8.smooth), kept where it scores higher; auto = where it folds into a
    # LayerNorm, and by a Mul too only when int8 of every layer misses the floor without it (MiniLM's 15 Muls cost 3 %)
    smooth: str = "auto"
    # dynamic: outlier input channels computed apart in float (int8.outliers); auto = where int8 of every layer
    # misses the floor as it is (MiniLM: 0.9932 → 0.9980, at 1.10× plain int8's latency: timed against the others)
    outliers: str = "auto"
    search_seconds: float = 300.0  # time for the mixed-precision searches, shared by the recipes
    # GPTQ rounding of the int8 weights (int8.rounding), tried and kept where it scores higher; the default
    # pipeline's step back turns it off where the held-out inputs reject its pick (magika: 0.9940 held out)
    round_weights: bool = True

    def __post_init__(self):
        for name in ("reduce_range", "smooth", "outliers"):
            if str(getattr(self, name)).strip().lower() not in ("auto", "true", "false"):
                raise PassOptionError(f"pass 'quantize': {name} must be auto, true or false, not "
                                      f"{getattr(self, name)!r}")


class QuantizePass:
    name = "quantize"
    Options = QuantizeOptions
    # ranges: the calibration covers the search feeds too. Static int8 is scored on ranges from the other feeds
    # (its fixed ranges clip unseen inputs, which a score on the feeds that set them cannot show), and the model
    # written takes its ranges from all of them
    needs = frozenset({"calibration", "ranges", "fidelity", "latency"})
    lossless = False

    def run(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        opts = build_options(QuantizeOptions, ctx.options, self.name)
        if any(n.op in INTEGER_OPS or n.op == "QuantizeLinear" for n in graph.nodes):
            return PassResult(False, {"quantized": 0}, ["the model is already quantized: left as it is"])
        state = carried_state(graph)
        if state:        # as the weights pass: a stream's state would carry every run's int8 error into the next
            return PassResult(False, {"quantized": 0}, [f"the model carries state from run to run ({state}): it stays "
                                                        "float (int8 error would build up over a stream, which checks "
                                                        "of single runs do not see)"])
        reduce_range, notes = _reduce_range(opts.reduce_range, ctx.int8_saturates)
        recipes = _recipes(opts, reduce_range, graph, ctx, notes)
        if not recipes:
            return PassResult(False, {"quantized": 0}, notes + [f"no {'/'.join(_ops(opts.ops, 'dynamic'))} layer "
                                                                "with a constant weight to quantize"])
        model = gs.export_onnx(graph, do_type_check=False)
        candidates, deferred = _candidates(model, recipes, opts, ctx, notes)
        stats: dict = {"mode": opts.mode, "per_channel": opts.per_channel, "reduce_range": reduce_range,
                       "quantized": 0}
        chosen = fastest(graph, candidates, ctx, stats, notes) if candidates else None
        any_met = bool(candidates)
        if chosen is None and deferred:
            # small graphs: dynamic int8 quantizes its activations on every run, which may cost what it saves
            notes.append("static int8 tried after all: dynamic int8 was not faster than the float graph here")
            candidates, _ = _candidates(model, deferred, opts, ctx, notes, defer_static=False)
            chosen = fastest(graph, candidates, ctx, stats, notes) if candidates else None
        if chosen is None:
            kept = [] if any_met else ["int8 skipped: no recipe kept the floor (the float graph is kept)"]
            return PassResult(False, stats, notes + kept)
        return self._applied(graph, chosen, stats, notes)

    def _applied(self, graph: gs.Graph, chosen: Candidate, stats: dict, notes: list[str]) -> PassResult:
        result = chosen.result
        replace_contents(graph, gs.import_onnx(result.model))
        stats.update(recipe=chosen.label, recipe_mode=chosen.recipe.mode, quantized=chosen.quantized,
                     integer_ops=sum(n.op in INTEGER_OPS for n in graph.nodes),
                     calibration_score=round(result.score, 6), float_layers=result.float_layers)
        notes += chosen.notes
        if result.float_layers:
            shown = ", ".join(result.float_layers[:12]) + (" …" if len(result.float_layers) > 12 else "")
            layers = len(chosen.layers) - chosen.quantized
            others = f" and {len(result.float_layers) - layers} other nodes" if len(result.float_layers) > layers else ""
            why = ("to keep the floor, or (the input layers) because the model timed faster with them float"
                   if chosen.tag else "to keep the floor")
            notes.append(f"mixed precision: {layers} of {len(chosen.layers)} layers{others} kept float {why} ({shown})")
        return PassResult(True, stats, notes)


def _recipes(opts: QuantizeOptions, reduce_range: bool, graph: gs.Graph, ctx: PassContext,
             notes: list[str]) -> list[Recipe]:
    """The recipes that apply: those of the mode, for operators the graph has; static only with feeds."""
    present = {n.op for n in graph.nodes if len(n.inputs) > 1 and isinstance(n.inputs[1], gs.Constant)
               and n.op in WEIGHTED_OPS}
    modes = ["dynamic", "static"] if opts.mode == "auto" else [opts.mode]
    count = len(ctx.calibration.feeds) if ctx.calibration is not None else 0
    if opts.mode == "static" and not count:
        raise ValueError("quantize: mode=static needs calibration inputs")
    if opts.mode == "auto" and (count < MIN_STATIC_FEEDS or ctx.fidelity is None) \
            and not stable_ranges(graph, ctx, count, notes):
        modes = ["dynamic"]                    # static ranges need data, and a recipe choice needs a judge
    recipes = []
    for mode in modes:
        ops = _ops(opts.ops, mode)
        if present & set(ops):
            recipes.append(Recipe(mode, tuple(ops), opts.per_channel, reduce_range))
    return recipes


def _ops(setting: str, mode: str) -> list[str]:
    """The operator types to quantize; static auto calibrates the wide set's tensors (a superset of the layers')."""
    if setting.strip().lower() != "auto":
        return [o.strip() for o in setting.split(",") if o.strip()]
    return list(DYNAMIC_OPS if mode == "dynamic" else STATIC_WIDE)


def _candidates(model: onnx.ModelProto, recipes: list[Recipe], opts: QuantizeOptions, ctx: PassContext,
                notes: list[str], defer_static: bool = True) -> tuple[list[Candidate], list[Recipe]]:
    """The recipes' int8 models that meet the floor, and the static recipes deferred (`_dynamic_suffices`): they are
    built only when no candidate beats the float graph."""
    out: list[Candidate] = []
    deferred: list[Recipe] = []
    spent = 0.0                                 # seconds of mixed-precision search so far: they share search_seconds
    for index, recipe in enumerate(recipes):
        if defer_static and recipe.mode == "static" and _dynamic_suffices(out, model):
            deferred.append(recipe)
            continue
        with ExitStack() as stack:
            builders = _built_variants(stack, model, recipe, opts, ctx, notes)
            if builders is None:
                continue
            searches = [(builder, every, scoped) for builder, every in builders
                        for scoped in _op_sets(builder.recipe, opts)]
            finals: dict[str, Int8Builder] = {}
            for done, (builder, every, scoped) in enumerate(searches):
                left = len(searches) - done + sum(len(_op_sets(r, opts)) for r in recipes[index + 1:])
                start = time.monotonic()
                try:
                    found = _searched(builder.with_recipe(scoped), opts, ctx, notes,
                                      max(0.0, opts.search_seconds - spent) / left)
                    if found is not None:
                        out.append(as_written(stack, finals, builder, found, every))
                        entries = with_entries_float(builder, found, _floor(builder.recipe, opts, ctx), ctx)
                        out += [as_written(stack, finals, builder, entries, every)] if entries else []
                except Exception as exc:  # noqa: BLE001
                    notes.append(f"{scoped.label} int8: ONNX Runtime's quantizer failed ({first_line(exc)})")
                    continue
                finally:
                    spent += time.monotonic() - start
    return out, deferred


def _built_variants(stack: ExitStack, model: onnx.ModelProto, recipe: Recipe, opts: QuantizeOptions,
                    ctx: PassContext, notes: list[str]) -> list[tuple[Int8Builder, list[Feed] | None]] | None:
    """`_variants`, or None with a note where ONNX Runtime's quantizer fails; a static recipe of the wide operator
    set that fails (its calibrator cannot reduce an empty tensor: a Slice to nothing into a Concat) is tried again
    on the weighted layers alone."""
    try:
        return _variants(stack, model, recipe, opts, ctx, notes)
    except Exception as exc:  # noqa: BLE001 - a model the quantizer cannot handle stays float, with why
        notes.append(f"{recipe.label} int8: ONNX Runtime's quantizer failed ({first_line(exc)})")
        if recipe.mode != "static" or set(recipe.ops) != set(STATIC_WIDE):
            return None
    layers = replace(recipe, ops=STATIC_OPS, scope="layers")
    notes.append(f"{layers.label} int8 tried instead: the weighted layers alone")
    try:
        return _variants(stack, model, layers, opts, ctx, notes)
    except Exception as exc:  # noqa: BLE001
        notes.append(f"{layers.label} int8: ONNX Runtime's quantizer failed ({first_line(exc)})")
        return None


def _op_sets(recipe: Recipe, opts: QuantizeOptions) -> list[Recipe]:
    """Static int8 (ops=auto) in two scopes, timed against each other: the weighted layers alone, and wide — their
    neighbours too (Add, pooling, Concat, Resize, …), so that ONNX Runtime keeps whole chains in int8 without a
    Q/DQ pair and a layout Transpose around every layer, at some cost in fidelity."""
    if recipe.mode != "static" or opts.ops.strip().lower() != "auto" or set(recipe.ops) != set(STATIC_WIDE):
        return [recipe]                  # a builder calibrated for the layers alone has no wide scope
    return [replace(recipe, ops=STATIC_OPS, scope="layers"), replace(recipe, ops=STATIC_WIDE, scope="wide")]


def _dynamic_suffices(found: list[Candidate], model: onnx.ModelProto) -> bool:
    """A graph without convolutions whose dynamic int8 needed no float layer: static int8 would quantize the same
    MatMuls with calibrated instead of measured ranges (never more accurately, and with Q/DQ pairs where dynamic has
    one quantizer) — worth its calibrations only where dynamic int8 turns out no faster than float."""
    dynamic_all = any(c.recipe.mode == "dynamic" and not c.result.float_layers for c in found)
    return dynamic_all and not any(n.op_type in ("Conv", "ConvTranspose") for n in model.graph.node)


def _variants(stack: ExitStack, model: onnx.ModelProto, recipe: Recipe, opts: QuantizeOptions, ctx: PassContext,
              notes: list[str]) -> list[tuple[Int8Builder, list[Feed] | None]]:
    """The recipe's builders, each with the feeds its final model is calibrated on (None: its own). Dynamic:
    `int8.dynamic.dynamic_variants`. Static: the one with the calibration method (auto: min/max or percentile) and
    weight scales (per-channel or per-tensor) whose all-int8 model scores highest on the search feeds (one
    calibration per method; the scales need none), calibrated on the other feeds."""
    if recipe.mode == "dynamic":
        return [(b, None) for b in dynamic_variants(stack, model, recipe, {"smooth": opts.smooth,
                                                                           "outliers": opts.outliers},
                                                    opts.floor, ctx, notes, opts.round_weights)]
    judged = ctx.fidelity is not None
    methods = [opts.calibrate] if opts.calibrate != "auto" else (["minmax", "percentile"] if judged else ["minmax"])
    return static_variants(stack, model, recipe, methods, opts.per_channel, ctx, notes, opts.round_weights)


def _searched(builder: Int8Builder, opts: QuantizeOptions, ctx: PassContext, notes: list[str],
              seconds: float) -> Candidate | None:
    """The recipe's int8 model that meets the floor (mixed precision within `seconds` where it must), or None with a
    note."""
    floor = _floor(builder.recipe, opts, ctx)
    scores = recipe_scores(ctx, builder)

    def score(float_layers: tuple[str, ...]) -> float:
        if float_layers not in scores:
            scores[float_layers] = model_score(ctx, builder.build(list(float_layers)))
        return scores[float_layers]

    start = time.monotonic()
    found = fewest_float_layers(builder.units, tuple, score, floor, max_float_share=0.5 if opts.mixed else 0.0,
                                seconds=seconds, cost=builder.layer_cost)
    result = None if found is None else \
        MixedResult(builder.build(list(found.float_layers)), found.score, list(found.float_layers), found.scored)
    if result is None:
        searched = time.monotonic() - start
        why = (f" within its share of the search time ({seconds:.0f} s)" if searched >= seconds
               else " even with up to half its layers float" if opts.mixed else "")
        notes.append(f"{builder.recipe.label} int8 skipped: calibration score below the floor {floor}{why}")
        return None
    return Candidate(builder.recipe, result, builder.layers, list(builder.notes))


def _floor(recipe: Recipe, opts: QuantizeOptions, ctx: PassContext) -> float:
    floor = opts.floor if ctx.fidelity is not None else 0.0
    return static_floor(floor) if recipe.mode == "static" else floor


def _reduce_range(setting: str, host_saturates: bool) -> tuple[bool, list[str]]:
    choice = setting.strip().lower()
    if choice != "auto":
        return choice == "true", []
    if host_saturates:
        return True, ["7-bit int8 weights (reduce_range): this x86 CPU has no VNNI, its int8 sums would saturate; "
                      "with 7 bits every CPU computes what was verified here"]
    return False, []
