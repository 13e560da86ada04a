"""The compile driver: load → calibrate → plan → rewrite → tidy → verify → measure → save."""

from __future__ import annotations

import copy
import dataclasses
import gc
import time
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import onnx_graphsurgeon as gs

from edgec.compiler import modelio
from edgec.compiler.attempts import (
    Attempt,
    checked_plan,
    floors_for_gate,
    pass_options,
    plan_attempts,
    real_data_only,
    with_recovery,
)
from edgec.compiler.calibration.feeds import feed_set
from edgec.compiler.calibration.general_text import with_general_text
from edgec.compiler.calibration.loading import vocabulary_size
from edgec.compiler.calibration.spec import CalibrationSpec
from edgec.compiler.errors import EdgecError, InputError, NegativeResult, ProviderError
from edgec.compiler.measuring import Baseline, measured
from edgec.compiler.progress import progress_bar
from edgec.compiler.reference import Reference
from edgec.compiler.report.compile_report import CompileReport, ModelSummary, PassRecord
from edgec.compiler.sparse_storage import densify_sparse_initializers, sparsify_initializers
from edgec.compiler.verify import verify
from edgec.passes import PassContext, PassOptionError, get_pass
from edgec.passes.cleanup import BEYOND_RUNTIME, CleanupPass
from edgec.passes.graph_tools import count_params
from edgec.passes.mlp.discovery import find_mlps
from edgec.runtime.cpu import int8_saturates
from edgec.runtime.session import ProviderUnavailable, SessionConfig, create_session, resolve_providers
from edgec.targets import TargetProfile

QUANTIZED_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "QLinearMatMul",
                 "ConvInteger", "QLinearConv", "MatMulNBits", "DynamicQuantizeMatMul"}


@dataclass
class CompileOptions:
    output: Path | None = None
    passes: list[str] | None = None
    pass_options: dict[str, dict] = field(default_factory=dict)
    calibration: CalibrationSpec = field(default_factory=CalibrationSpec)   # where calibration inputs come from
    min_cosine: float | None = None      # None: the target's threshold; 0 turns the gate off
    force: bool = False
    seed: int = 0
    measure: bool = True
    runs: int | None = None
    warmup: int | None = None
    gate_outputs: list[str] | None = None   # outputs the fidelity gate judges (default: all)
    allow_slower: bool = False               # keep a compiled model that measures slower than the original
    recover_minutes: float = 0.0             # > 0: recovery distillation (before quantize) for this long
    recover_steps: int = 0                   # > 0: … for this many optimizer steps instead (reproducible)
    allow_synthetic: bool = False            # lossy passes may run on synthesized inputs
    train_device: str = "auto"               # where torch training runs: auto (CUDA where torch sees one), cpu, cuda
    task_threads: int = 0                    # torch threads of each executor task (0: the worker's default); training
                                             # sums in another order with another count, the same count gives the same bytes


def train_device(choice: str) -> str:
    """'cpu' or 'cuda' for a --train-device choice, resolved where the compile runs (an executor's worker may have
    another GPU than the CLI); cuda without one is an input error."""
    from edgec.passes.training.device import TrainDeviceUnavailable, resolve_train_device

    try:
        return resolve_train_device(choice)
    except TrainDeviceUnavailable as exc:
        raise InputError(str(exc)) from None


def recovers(options: CompileOptions) -> bool:
    return options.recover_minutes > 0 or options.recover_steps > 0


def session_config(target: TargetProfile) -> SessionConfig:
    return SessionConfig(target.execution_providers, target.provider_options, target.fallback,
                         target.threads, target.graph_optimization)


def default_output(path: Path, target: TargetProfile) -> Path:
    return path.with_name(f"{path.stem}.{target.name}.onnx")


@dataclass
class Compiled:
    """A verified compile before its latency is measured: what a task on a worker returns to the host."""
    report: CompileReport
    model: onnx.ModelProto                 # the compiled model (the original when every attempt stepped back)
    session: object | None                 # ONNX Runtime's session of it
    reference: Reference
    resolved: object                       # the resolved execution providers


def compile_model(path: Path, target: TargetProfile, options: CompileOptions) -> CompileReport:
    output = options.output or default_output(path, target)
    modelio.ensure_writable_output(output, [path], options.force)
    built = build(path, target, options)
    if options.measure:                                                     # 7 measure
        built.model = _measured(built, target, options)
    save(built.report, built.model, output, target, options)                # 8 save
    return built.report


def build(path: Path, target: TargetProfile, options: CompileOptions) -> Compiled:
    """Steps 1–6: load, calibrate, plan, rewrite, tidy, verify."""
    original = modelio.load_model(path)                                     # 1 load
    config = session_config(target)
    resolved = resolve(config)
    requested = options.passes if options.passes is not None else list(target.pipeline)
    step_back = options.passes is None and not options.pass_options and options.min_cosine is None
    options = dataclasses.replace(options, pass_options=copy.deepcopy(options.pass_options))   # ours to extend
    requested = checked_plan(with_recovery(requested, options, target), options.pass_options, target)  # 3 plan
    report = CompileReport(str(path), None, target.name, list(resolved.providers), requested,
                           notes=list(resolved.notes))
    target = floors_for_gate(target, options.min_cosine, report.notes, options.pass_options)
    input_checker_error = modelio.checker_error(original, path)
    if input_checker_error:
        report.notes.append(f"the input fails the ONNX checker ({input_checker_error}); ONNX Runtime runs it, "
                            "so the compiled model is held to the same standard")
    session = original_session(original, config, path)
    spec = with_general_text(options.calibration, recovers(options), report.notes)
    feeds = feed_set(session, vocabulary_size(original), spec, options.seed, path, report.notes)   # 2 calibrate
    reference = Reference(original, config, session, feeds, options.seed, options.gate_outputs)
    report.calibration = {"source": feeds.source, "calibration": len(feeds.calibration),
                          "held_out": len(feeds.held_out)}
    if feeds.evaluation:
        report.calibration.update(evaluation=len(feeds.evaluation), evaluation_source=feeds.evaluation_source)
    requested = real_data_only(requested, feeds.source, options.allow_synthetic, options.passes is not None,
                               report.notes)
    editable = _editable_model(original, report)
    attempts = plan_attempts(requested if editable is not None else [], options.pass_options, target, step_back)
    compiled, candidate = _first_accepted(attempts, editable, reference, report, target, options,
                                          check=input_checker_error is None)   # 4 rewrite … 6 verify
    if not any(r.changed for r in report.passes) and report.mlp_blocks:
        report.notes.append(_no_change_note(report))
    if compiled is not original and _only_cleanup_changed(report):
        compiled, candidate = original, reference.session
        report.after = ModelSummary.of(original)
        report.notes.append("only cleanup changed the graph (ONNX Runtime does the same when it loads the model): "
                            "the original is written unchanged")
    return Compiled(report, compiled, candidate, reference, resolved)


def _only_cleanup_changed(report: CompileReport) -> bool:
    """Cleanup's own edits are worth nothing to ONNX Runtime and re-exporting can grow a file (a constant that
    If branches share is copied into each), so a compile where nothing else changed keeps the original's bytes —
    unless it fused hard-swishes or folded a Conv's affine chain, which ONNX Runtime does not."""
    changed = [p for p in report.passes if p.changed]
    return bool(report.ok and [p.name for p in changed] == [CleanupPass.name]
                and not changed[0].stats.get(BEYOND_RUNTIME))


def save(report: CompileReport, model: onnx.ModelProto, output: Path, target: TargetProfile,
         options: CompileOptions) -> None:
    """Step 8: the model (and its .ort form where the target wants one), only when it passed its gate."""
    if report.ok:
        modelio.save_model_atomic(model, output)
        report.output = str(output)
        if target.output_format == "ort":
            report.mobile = _mobile_outputs(model, output, options)


def _measured(built: Compiled, target: TargetProfile, options: CompileOptions):
    ref = built.reference
    baseline = Baseline(ref.model, ref.session, ref.config, ref.feeds.held_out[0])
    return measured(built.report, baseline, built.session, built.model, built.resolved, target, options)


def _first_accepted(attempts: list[Attempt], editable, reference: Reference, report: CompileReport,
                    target: TargetProfile, options: CompileOptions, check: bool):
    """The first attempt the held-out inputs accept (the last one — the original — always is, or fails as
    asked); the notes of rejected attempts give way to one step-back note each."""
    for i, attempt in enumerate(attempts):
        last, kept_notes = i == len(attempts) - 1, len(report.notes)
        compiled, candidate, failure = _attempt(attempt, editable, reference, report, target, options, check,
                                                fallible=not last)
        if failure is None or last:
            return compiled, candidate
        del compiled, candidate        # a rejected model and its session would be held through the next attempt
        gc.collect()
        why = "; ".join(report.notes[kept_notes:])[:300]
        del report.notes[kept_notes:]
        report.notes.append(f"stepped back from {attempt.label} ({failure}{': ' + why if why else ''}): "
                            f"trying {attempts[i + 1].label}")
    raise AssertionError("plan_attempts returns at least one attempt")


def _attempt(attempt: Attempt, editable, reference: Reference, report: CompileReport, target: TargetProfile,
             options: CompileOptions, check: bool, fallible: bool):
    """Run one pipeline from the original: (compiled model, its session, why it failed or None). With
    `fallible`, an error in a pass or in the rewritten model is a reason to step back, not a crash."""
    report.pipeline, report.passes, report.fidelity, report.fidelity_ok = list(attempt.passes), [], [], True
    report.fidelity_eval = []
    original = reference.model
    compiled, candidate = original, None
    try:
        if attempt.passes:
            graph = modelio.to_graph(editable)
            _rewrite(graph, reference, report, target, options, attempt.pass_options)
            compiled = _tidy(graph, original, report, check)
        report.before, report.after = ModelSummary.of(original), ModelSummary.of(compiled)
        candidate = compiled_session(compiled, reference.config)
        verify(report, reference, candidate, target, options.min_cosine)
    except EdgecError:
        raise
    except Exception as exc:  # noqa: BLE001 - a pass, the tidy step or the rewritten graph broke: an edgec bug
        if not fallible:
            raise
        return compiled, None, f"an edgec error, please report it: {str(exc).splitlines()[0][:200]}"
    if compiled is original and not report.ok:      # the original itself: its outputs vary from run to run
        report.notes.append("the model's outputs differ between two runs of the same inputs (random or "
                            "non-deterministic operators): the original is written unchanged")
        report.fidelity_ok = report.ok = True
    return compiled, candidate, None if report.ok else "the held-out inputs reject it"


def resolve(config: SessionConfig):
    try:
        return resolve_providers(config)
    except ProviderUnavailable as exc:
        raise ProviderError(str(exc)) from None


def _editable_model(original: onnx.ModelProto, report: CompileReport) -> onnx.ModelProto | None:
    """The model the passes edit (a fresh graph of it per attempt), or None (a no-op with a note) when
    graphsurgeon cannot represent it."""
    editable = densify_sparse_initializers(original)
    blocker = modelio.rewrite_blocker(editable)
    if blocker:
        report.notes.append(f"left unchanged: {blocker}")
        return None
    try:
        report.mlp_blocks = len(find_mlps(modelio.to_graph(editable)).blocks)
    except Exception as exc:  # noqa: BLE001 - the passes meet the same graph inside a fallible attempt
        report.notes.append(f"MLP discovery failed on this graph ({type(exc).__name__}: {str(exc)[:120]})")
    if not report.mlp_blocks:
        report.notes.append("no MLP blocks found: nothing for the MLP passes to rewrite (a no-op)")
    quantized = sorted({n.op_type for n in original.graph.node} & QUANTIZED_OPS)
    if quantized:
        report.notes.append(f"quantized layers ({', '.join(quantized)}) are left alone")
    if original.ir_version < modelio.IR_INITIALIZERS_NOT_INPUTS:
        report.notes.append(f"IR version {original.ir_version} → {modelio.IR_INITIALIZERS_NOT_INPUTS} in a "
                            "rewritten model (IR 4 only stopped requiring initializers among the graph inputs)")
    return editable


def _rewrite(graph: gs.Graph, reference: Reference, report: CompileReport, target: TargetProfile,
             options: CompileOptions, explicit: dict[str, dict]) -> None:
    # Passes fit on one part of the calibration feeds and score their searches on the rest, so a
    # search cannot overfit the data it was fitted on; the held-out feeds judge the final model.
    lineage: dict = {}          # what width pruning kept, for a later recovery (PassContext.lineage)
    for name in report.pipeline:
        report.passes.append(_run_pass(name, graph, reference, target, options, explicit, lineage))


def _mobile_outputs(model: onnx.ModelProto, output: Path, options: CompileOptions) -> dict:
    from edgec.compiler.mobile import convert_to_ort, usability

    ort_path = output.with_suffix(".ort")
    if ort_path.exists() and not options.force:
        raise InputError(f"{ort_path}: already exists (use --force to replace it)")
    size = convert_to_ort(output, ort_path)
    return {"ort_model": str(ort_path), "ort_bytes": size, "usability": usability(model, options.calibration.dims)}


def original_session(model: onnx.ModelProto, config: SessionConfig, path: Path):
    try:
        return create_session(model.SerializeToString(), config)
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
        raise InputError(f"{path}: ONNX Runtime cannot load this model ({str(exc).splitlines()[0][:200]})") from None


def compiled_session(model: onnx.ModelProto, config: SessionConfig):
    try:
        return create_session(model.SerializeToString(), config)
    except Exception as exc:  # noqa: BLE001 - an edgec bug, not the user's input
        raise RuntimeError(f"ONNX Runtime cannot load the compiled model ({str(exc).splitlines()[0][:200]})") from exc


def _run_pass(name: str, graph: gs.Graph, reference: Reference, target: TargetProfile, options: CompileOptions,
              explicit: dict[str, dict], lineage: dict) -> PassRecord:
    pass_ = get_pass(name)
    needs = pass_.needs          # the views of the original this pass may ask for, and only those
    ctx = PassContext(calibration=reference.capture("ranges" in needs) if "calibration" in needs else None,
                      fidelity=reference.probe() if "fidelity" in needs else None,
                      teacher=reference.teacher() if "teacher" in needs else None,
                      options=pass_options(name, explicit, target), rank_multiple=target.rank_multiple,
                      seed=options.seed, providers=target.execution_providers, progress=progress_bar,
                      int8_saturates=int8_saturates(), synthesized=reference.feeds.source == "synthesized",
                      lineage=lineage, memo=reference.memo, train_device=train_device(options.train_device) if "teacher" in needs else "cpu",
                      # timed only where the compile measures: a task's worker (measure off) is not the machine that
                      # times, and a task must give the same bytes on any executor
                      latency=reference.latency_probe() if "latency" in needs and options.measure else None)
    nodes0, (params0, bytes0) = len(graph.nodes), count_params(graph)
    start = time.perf_counter()
    try:
        result = pass_.run(graph, ctx)
    except PassOptionError as exc:
        raise InputError(str(exc)) from None
    except InputError:
        raise               # bad user data met mid-pass (e.g. a --calib-hook that fails while streaming)
    except Exception as exc:
        raise RuntimeError(f"pass '{name}' failed: {exc}") from exc
    seconds = time.perf_counter() - start
    params1, bytes1 = count_params(graph)
    return PassRecord(name, result.changed, round(seconds, 4), len(graph.nodes) - nodes0, params1 - params0,
                      bytes1 - bytes0, result.stats, result.notes)


def _tidy(graph: gs.Graph, original: onnx.ModelProto, report: CompileReport, check: bool) -> onnx.ModelProto:
    """Dead nodes, order, sparse storage; the ONNX checker when the input passed it (never stricter)."""
    graph.cleanup(remove_unused_graph_inputs=False).toposort()
    model, moved = sparsify_initializers(modelio.to_model(graph, original))
    if moved:
        report.notes.append(f"{len(moved)} mostly-zero weights stored as sparse initializers (smaller file; "
                            "ONNX Runtime densifies them at load)")
    if check:
        try:
            onnx.checker.check_model(model)
        except Exception as exc:  # noqa: BLE001
            raise RuntimeError(f"the rewritten model fails the ONNX checker: {exc}") from exc
    try:
        onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except Exception as exc:  # noqa: BLE001
        report.notes.append(f"strict shape inference fails on the compiled model: {str(exc)[:160]}")
    return model


def _no_change_note(report: CompileReport) -> str:
    if report.passes and all(p.name == CleanupPass.name for p in report.passes):
        return "only cleanup ran: the model is numerically unchanged"
    return "no pass changed the model: the output equals the input"


def raise_if_failed(report: CompileReport) -> None:
    if not report.ok:
        raise NegativeResult("compiled model failed the fidelity gate; nothing written "
                             "(see the notes above, or lower --min-cosine)")
