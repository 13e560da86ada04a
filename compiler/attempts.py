"""Which pipelines a compile tries, in order: what was asked, then steps back towards the original.

The default pipeline (the target's own, with its own options) must never fail its own gate: when the point
its searches chose is rejected on the held-out inputs, or a pass breaks, the compile steps back — tighter
floors (a larger keep, int8 only if it scores higher) — first, where quantize runs, the same floors with int8
weights rounded to nearest (no GPTQ) —, then int8 weights without activation int8, then the float
graph, then only the lossless
passes, finally the original model — each step with a note. What the user asked for explicitly (passes,
pass options, a goal, --min-cosine) is tried as asked, and a failure exits 1.

Lossy passes (anything not marked `lossless`) need real inputs: synthesized ones prove that a graph runs,
not that a regressor or an embedder kept its meaning. Without data they are left out unless the user
opts in with --allow-synthetic — except the `data_free` ones, whose error is the weights' own rounding (no
activation rounded, no unit removed): they run at a tighter floor on the synthesized feeds (`weights`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Iterable

from edgec.compiler.errors import InputError
from edgec.passes import PassOptionError, UnknownPass, get_pass
from edgec.passes.base import build_options
from edgec.targets import TargetProfile

INTEGER_PASSES = {"quantize", "embed", "weights"}      # what "the float graph" step leaves out
REAL_DATA_FLAGS = "--calib, --calib-text, --calib-dir or --calib-hook"


@dataclass(frozen=True)
class Attempt:
    label: str
    passes: list[str]
    pass_options: dict[str, dict] = field(default_factory=dict)   # replaces the target's options per pass


def is_lossless(name: str) -> bool:
    return get_pass(name).lossless


def is_data_free(name: str) -> bool:
    """A lossy pass whose error depends on the weights alone, so synthesized inputs can judge it."""
    return bool(getattr(get_pass(name), "data_free", False))


def without_lossy(passes: list[str]) -> list[str]:
    return [p for p in passes if is_lossless(p)]


def without_data(passes: list[str]) -> list[str]:
    """What runs on synthesized inputs: the lossless passes and the data-free ones."""
    return [p for p in passes if is_lossless(p) or is_data_free(p)]


def synthetic_note(requested: list[str]) -> str | None:
    """The one line that says what was left out for want of real inputs, and which flag unlocks it."""
    dropped = [p for p in requested if not (is_lossless(p) or is_data_free(p))]
    if not dropped:
        return None
    kept = [p for p in requested if is_data_free(p)]
    ran = "only lossless passes" + (f" and {', '.join(kept)} (its error is the weights' rounding alone)" if kept else "")
    return (f"no real inputs: {ran} ran ({', '.join(dropped)} left out); give real inputs with "
            f"{REAL_DATA_FLAGS} to compress, or --allow-synthetic to compress on synthesized ones")


def real_data_only(requested: list[str], source: str, allow_synthetic: bool, named: bool,
                   notes: list[str]) -> list[str]:
    """Without real inputs the lossy passes are left out (a note), unless --allow-synthetic; asked for by
    name (--passes, a goal's candidates), that is an input error naming the flags."""
    if source != "synthesized" or allow_synthetic:
        return requested
    note, runnable = synthetic_note(requested), without_data(requested)
    if note and named:
        raise InputError(f"{', '.join(p for p in requested if p not in runnable)} would judge "
                         f"the compressed model on synthesized inputs only; give real inputs with {REAL_DATA_FLAGS} "
                         "(or --allow-synthetic)")
    notes += [note] if note else []
    return runnable


def plan_attempts(passes: list[str], explicit_options: dict[str, dict], target: TargetProfile,
                  step_back: bool) -> list[Attempt]:
    first = Attempt("as planned", passes, explicit_options)
    if not step_back:
        return [first]
    tighter = {name: _tightened(target.options_for(name)) for name in passes if "floor" in target.options_for(name)}
    steps = [first]
    no_recover = [p for p in passes if p != "recover"]
    if "quantize" in passes and "round_weights" not in target.options_for("quantize"):
        # GPTQ's pick between rounded and nearest int8 weights is made on the few search feeds: where the held-out
        # inputs reject it, the same floors with nearest rounding (magika: 0.9940 held out with GPTQ, kept without)
        plain = {**explicit_options, "quantize": {**target.options_for("quantize"), "round_weights": False}}
        steps.append(Attempt("int8 weights rounded to nearest", no_recover, plain))
    if tighter:
        steps.append(Attempt("tighter floors", no_recover, tighter))
    if "quantize" in passes and (INTEGER_PASSES - {"quantize"}) & set(passes):
        # int8 weights alone (embed, weights) err by their own rounding: where activation int8 is what the held-out
        # inputs reject, they keep the smaller file (a ResNet-18's 0.28×, lost with the float graph)
        steps.append(Attempt("int8 weights only", [p for p in no_recover if p != "quantize"], tighter))
    if INTEGER_PASSES & set(passes):
        steps.append(Attempt("the float graph", [p for p in no_recover if p not in INTEGER_PASSES], tighter))
    lossless = without_lossy(passes)
    if lossless != passes:
        steps.append(Attempt("lossless passes only", lossless, {}))
    steps.append(Attempt("the original model", [], {}))
    return _distinct(steps)


def floors_for_gate(target: TargetProfile, gate: float | None, notes: list[str],
                    explicit: Iterable[str] = ()) -> TargetProfile:
    """The target with its pass floors scaled to a stricter --min-cosine: each floor keeps its distance to 1 in
    proportion to the gate's (x86 at 0.995 instead of 0.99: quantize 0.991 → 0.9955, prune 0.995 → 0.9975), so that
    the passes aim above the gate instead of failing it — the target's int8 (floor 0.991) failed a 0.995 gate."""
    if gate is None or gate <= target.min_cosine or target.min_cosine >= 1:
        return target
    shrink = (1 - gate) / (1 - target.min_cosine)
    raised = {name: {**options, "floor": round(1 - (1 - float(options["floor"])) * shrink, 6)}
              for name, options in target.pass_options.items() if float(options.get("floor", 0)) > 0}
    if not raised:
        return target
    shown = [f"{name} {options['floor']:g}" for name, options in sorted(raised.items()) if name not in explicit]
    if shown:
        notes.append(f"--min-cosine {gate:g} is stricter than the target's {target.min_cosine:g}: its floors follow "
                     f"({', '.join(shown)})")
    return dataclasses.replace(target, pass_options={**target.pass_options, **raised})


def _tightened(options: dict) -> dict:
    """Half the distance of each floor to 1: e.g. prune keeps more units (0.995 → 0.9975)."""
    floor = float(options["floor"])
    return {**options, "floor": round(1 - (1 - floor) / 2, 6)} if 0 < floor < 1 else dict(options)


def _distinct(steps: list[Attempt]) -> list[Attempt]:
    seen, out = set(), []
    for step in steps:
        key = (tuple(step.passes), repr(sorted(step.pass_options.items())))
        if key not in seen:
            seen.add(key)
            out.append(step)
    return out


COMPRESSING = {"gates", "heads", "prune", "lowrank", "share", "sparse", "channels"}


def with_recovery(names: list[str], options, target: TargetProfile | None = None) -> list[str]:
    """--recover: distillation right before quantize (an int8 graph cannot be trained), else at the end;
    only in pipelines that compress (an uncompressed model has nothing to recover). Training through int8
    rounding (recover.int8_tail) rounds like the quantize pass that follows (its reduce_range)."""
    steps = getattr(options, "recover_steps", 0)
    if options.recover_minutes <= 0 and steps <= 0:
        return names
    budget = {"steps": steps} if steps > 0 else {"minutes": options.recover_minutes}
    if "recover" in names:      # listed in --passes: the flags give its budget unless its own options do
        recover = options.pass_options.setdefault("recover", {})
        if not {"steps", "minutes"} & set(recover):
            recover.update(budget)
        return names
    if not COMPRESSING & set(names):
        return names
    recover = options.pass_options.setdefault("recover", {})
    recover.update(budget)
    reduce_range = str(pass_options("quantize", options.pass_options, target).get("reduce_range", "auto")) \
        if target is not None and "quantize" in names else "auto"
    if reduce_range.lower() in ("true", "false"):
        recover.setdefault("int8_reduce_range", reduce_range.lower())
    at = names.index("quantize") if "quantize" in names else len(names)
    return names[:at] + ["recover"] + names[at:]


def pass_options(name: str, explicit: dict[str, dict], target: TargetProfile) -> dict:
    """A pass's options: those given for it replace the target's as a whole (an explicit prune.keep is not
    overridden by the profile's prune.floor search)."""
    return explicit[name] if name in explicit else target.options_for(name)


def checked_plan(names: list[str], explicit: dict[str, dict], target: TargetProfile) -> list[str]:
    """The names, once every pass exists and takes its options (given, else the target's), and every
    --pass-option names a pass that runs: a typo fails here, before calibration and before any pass has run
    for minutes, and an option is never silently ignored."""
    for name in dict.fromkeys([*names, *explicit]):
        _check_pass(name, pass_options(name, explicit, target))
    stray = [name for name in explicit if name not in names]
    if stray:
        option = f"{stray[0]}.{next(iter(explicit[stray[0]]), '…')}"
        how = "add --recover" if stray[0] == "recover" else "name it in --passes"
        raise InputError(f"--pass-option {option}: pass '{stray[0]}' is not in the pipeline "
                         f"({', '.join(names) or 'empty'}); {how}")
    return names


def _check_pass(name: str, options: dict) -> None:
    try:
        pass_ = get_pass(name)
    except UnknownPass as exc:
        raise InputError(str(exc).strip("'\"")) from None
    if not hasattr(pass_, "Options"):
        return
    try:
        build_options(pass_.Options, options, name)
    except PassOptionError as exc:
        raise InputError(str(exc)) from None
