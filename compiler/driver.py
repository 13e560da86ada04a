"""The compile driver: load → calibrate → plan → rewrite → tidy → verify → measure → save."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from edgec.compiler import modelio
from edgec.compiler.calibration import (
    ActivationCapture,
    FeedSplit,
    load_npz_feeds,
    split_feeds,
    synthesized_feeds,
    vocabulary_size,
)
from edgec.compiler.errors import InputError, NegativeResult, ProviderError
from edgec.compiler.measuring import measure_or_roll_back
from edgec.compiler.probe import FidelityProbe
from edgec.compiler.progress import progress_bar
from edgec.compiler.report import CompileReport, ModelSummary, PassRecord
from edgec.compiler.storage import densify_sparse_initializers, sparsify_initializers
from edgec.compiler.teacher import Teacher
from edgec.passes import PassContext, PassOptionError, UnknownPass, get_pass
from edgec.passes.cleanup import CleanupPass
from edgec.passes.graph import count_params
from edgec.passes.mlp import find_mlps
from edgec.runtime.fidelity import compare_outputs, token_mask
from edgec.runtime.inputs import input_specs
from edgec.runtime.session import ProviderUnavailable, SessionConfig, create_session, resolve_providers
from edgec.targets import TargetProfile

QUANTIZED_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "QLinearMatMul",
                 "ConvInteger", "QLinearConv", "MatMulNBits", "DynamicQuantizeMatMul"}


@dataclass
class CompileOptions:
    output: Path | None = None
    passes: list[str] | None = None
    pass_options: dict[str, dict] = field(default_factory=dict)
    calib: Path | None = None
    calib_samples: int = 24
    min_cosine: float | None = None      # None: the target's threshold; 0 turns the gate off
    force: bool = False
    seed: int = 0
    dims: dict[str, int] = field(default_factory=dict)
    measure: bool = True
    runs: int | None = None
    warmup: int | None = None
    gate_outputs: list[str] | None = None   # outputs the fidelity gate judges (default: all)
    allow_slower: bool = False               # keep a compiled model that measures slower than the original
    calib_text: Path | None = None           # one text per line, tokenized with `tokenizer`
    tokenizer: Path | None = None
    calib_dir: Path | None = None            # a folder of images
    calib_hook: str | None = None            # module:function yielding feed dicts
    calib_count: int = 96                    # items of a text / image / hook source used for calibration
    recover_minutes: float = 0.0             # > 0: recovery distillation (before quantize) for this long


def session_config(target: TargetProfile) -> SessionConfig:
    return SessionConfig(target.execution_providers, target.provider_options, target.fallback,
                         target.threads, target.graph_optimization)


def default_output(path: Path, target: TargetProfile) -> Path:
    return path.with_name(f"{path.stem}.{target.name}.onnx")


def compile_model(path: Path, target: TargetProfile, options: CompileOptions) -> CompileReport:
    output = options.output or default_output(path, target)
    modelio.ensure_writable_output(output, [path], options.force)
    original = modelio.load_model(path)                                     # 1 load
    config = session_config(target)
    resolved = _resolve(config)
    pipeline = _plan(_with_recovery(options.passes if options.passes is not None else list(target.pipeline),
                                    options))                                # 3 plan
    report = CompileReport(str(path), None, target.name, list(resolved.providers), pipeline,
                           notes=list(resolved.notes))
    reference = _session(original, config, path)
    split = _feeds(reference, original, options, path)                      # 2 calibrate
    report.calibration = {"source": split.source, "calibration": len(split.calibration),
                          "held_out": len(split.held_out)}
    graph = _editable_graph(original, report)
    if graph is not None:                                                   # 4 rewrite, 5 tidy
        _rewrite(graph, original, reference, split, config, report, target, options)
        compiled = _tidy(graph, original, report)
    else:
        compiled = original
    report.before, report.after = ModelSummary.of(original), ModelSummary.of(compiled)
    candidate = _session(compiled, config, path)
    _verify(report, reference, candidate, split, target, options)          # 6 verify
    if options.measure:                                                     # 7 measure
        compiled = measure_or_roll_back(report, reference, candidate, compiled, original, split, config,
                                         resolved, target, options)
    if not any(r.changed for r in report.passes) and report.mlp_blocks:
        report.notes.append(_no_change_note(report))
    if report.ok:                                                           # 8 save
        modelio.save_model_atomic(compiled, output)
        report.output = str(output)
        if target.output_format == "ort":
            report.mobile = _mobile_outputs(compiled, output, options)
    return report


def _resolve(config: SessionConfig):
    try:
        return resolve_providers(config)
    except ProviderUnavailable as exc:
        raise ProviderError(str(exc)) from None


def _editable_graph(original: onnx.ModelProto, report: CompileReport) -> gs.Graph | None:
    """The graph the passes edit, or None (a no-op with a note) when graphsurgeon cannot represent it."""
    editable = densify_sparse_initializers(original)
    blocker = modelio.rewrite_blocker(editable)
    if blocker:
        report.notes.append(f"left unchanged: {blocker}")
        report.pipeline = []
        return None
    graph = modelio.to_graph(editable)
    report.mlp_blocks = len(find_mlps(graph).blocks)
    if not report.mlp_blocks:
        report.notes.append("no MLP blocks found: nothing for the MLP passes to rewrite (a no-op)")
    quantized = sorted({n.op_type for n in original.graph.node} & QUANTIZED_OPS)
    if quantized:
        report.notes.append(f"quantized layers ({', '.join(quantized)}) are left alone")
    return graph


def _rewrite(graph: gs.Graph, original, reference, split: FeedSplit, config: SessionConfig,
             report: CompileReport, target: TargetProfile, options: CompileOptions) -> None:
    # Passes fit on one part of the calibration feeds and score their searches on the rest, so a
    # search cannot overfit the data it was fitted on; the held-out feeds judge the final model.
    fit, search = split.fit_and_search()
    capture = ActivationCapture(fit, config, original, options.seed)
    probe = FidelityProbe(reference, search, config, original, split.search_outputs)
    teacher = Teacher(original, config, split.training or (lambda: iter(fit)), search, options.gate_outputs)
    for name in report.pipeline:
        report.passes.append(_run_pass(name, graph, capture, probe, teacher, target, options))


def _mobile_outputs(model: onnx.ModelProto, output: Path, options: CompileOptions) -> dict:
    from edgec.compiler.mobile import convert_to_ort, usability

    ort_path = output.with_suffix(".ort")
    if ort_path.exists() and not options.force:
        raise InputError(f"{ort_path}: already exists (use --force to replace it)")
    size = convert_to_ort(output, ort_path)
    return {"ort_model": str(ort_path), "ort_bytes": size, "usability": usability(model, options.dims)}


COMPRESSING = {"prune", "lowrank", "share", "sparse"}


def _with_recovery(names: list[str], options: CompileOptions) -> list[str]:
    """--recover: distillation right before quantize (an int8 graph cannot be trained), else at the end;
    only in pipelines that compress (an uncompressed model has nothing to recover)."""
    if options.recover_minutes <= 0 or "recover" in names or not COMPRESSING & set(names):
        return names
    options.pass_options.setdefault("recover", {})["minutes"] = options.recover_minutes
    at = names.index("quantize") if "quantize" in names else len(names)
    return names[:at] + ["recover"] + names[at:]


def _plan(names: list[str]) -> list[str]:
    for name in names:
        try:
            get_pass(name)
        except UnknownPass as exc:
            raise InputError(str(exc).strip("'\"")) from None
    return names


def _session(model: onnx.ModelProto, config: SessionConfig, path: Path):
    try:
        return create_session(model.SerializeToString(), config)
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
        raise InputError(f"{path}: ONNX Runtime cannot load this model ({str(exc).splitlines()[0][:200]})") from None


def _feeds(session, model: onnx.ModelProto, options: CompileOptions, path: Path) -> FeedSplit:
    try:
        specs = input_specs(session)
    except ValueError as exc:
        raise InputError(f"{path}: {exc}") from None
    training = None
    if options.calib_text or options.calib_dir or options.calib_hook:
        data = _data_source(options, specs)
        feeds, source, training = data.calibration, data.label, data.training
    elif options.calib:
        feeds = load_npz_feeds(options.calib, specs)
        source = str(options.calib)
    else:
        feeds = synthesized_feeds(specs, options.calib_samples, options.seed, options.dims,
                                  vocabulary_size(model))
        source = "synthesized"
    split = FeedSplit(*split_feeds(feeds), source, training)
    fit, search = split.fit_and_search()
    # every feed once, so a bad one fails here with a clear message; the outputs the fidelity probe and the
    # verification compare against are kept, not computed again
    try:
        for feed in fit:
            session.run(None, feed)
        split.search_outputs = [session.run(None, f) for f in search]
        split.held_out_outputs = [session.run(None, f) for f in split.held_out]
    except Exception as exc:  # noqa: BLE001 - ORT's own error types
        hint = "check the arrays in --calib" if options.calib else "give real inputs with --calib FILE.npz"
        raise InputError(f"{path}: ONNX Runtime fails on the {source} inputs "
                         f"({str(exc).splitlines()[0][:160]}); {hint}") from None
    return split


def _data_source(options: CompileOptions, specs):
    from edgec.compiler import data_sources

    if sum(bool(x) for x in (options.calib, options.calib_text, options.calib_dir, options.calib_hook)) > 1:
        raise InputError("give one of --calib, --calib-text, --calib-dir and --calib-hook")
    if options.calib_text:
        return data_sources.text_source(options.calib_text, options.tokenizer, specs, options.calib_count,
                                        options.dims.get("sequence", 128))
    if options.calib_dir:
        return data_sources.image_source(options.calib_dir, specs, options.calib_count)
    return data_sources.hook_source(options.calib_hook, specs, options.calib_count)


def _run_pass(name: str, graph: gs.Graph, capture: ActivationCapture, probe: FidelityProbe, teacher: Teacher,
              target: TargetProfile, options: CompileOptions) -> PassRecord:
    pass_ = get_pass(name)
    # Options given on the command line replace the profile's options for that pass as a whole, so that
    # e.g. an explicit prune.keep is not overridden by the profile's prune.floor search.
    pass_options = options.pass_options[name] if name in options.pass_options else target.options_for(name)
    ctx = PassContext(calibration=capture, fidelity=probe, options=pass_options,
                      rank_multiple=target.rank_multiple, seed=options.seed,
                      providers=target.execution_providers, progress=progress_bar, teacher=teacher)
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


def _tidy(graph: gs.Graph, original: onnx.ModelProto, report: CompileReport) -> onnx.ModelProto:
    graph.cleanup(remove_unused_graph_inputs=False).toposort()
    model, moved = sparsify_initializers(modelio.to_model(graph, original))
    if moved:
        report.notes.append(f"{len(moved)} mostly-zero weights stored as sparse initializers (smaller file; "
                            "ONNX Runtime densifies them at load)")
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001
        raise RuntimeError(f"the rewritten model fails the ONNX checker: {exc}") from exc
    try:
        onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except Exception as exc:  # noqa: BLE001
        report.notes.append(f"strict shape inference fails on the compiled model: {str(exc)[:160]}")
    return model


def _verify(report: CompileReport, reference, candidate, split: FeedSplit, target: TargetProfile,
            options: CompileOptions) -> None:
    names = [o.name for o in reference.get_outputs()]
    unknown = sorted(set(options.gate_outputs or []) - set(names))
    if unknown:
        raise InputError(f"--gate-outputs: the model has no output(s) {unknown} (it has {names})")
    refs = split.held_out_outputs or [reference.run(names, f) for f in split.held_out]
    gots = [candidate.run(names, f) for f in split.held_out]
    threshold = target.min_cosine if options.min_cosine is None else options.min_cosine
    report.min_cosine = threshold
    for k, name in enumerate(names):
        ref = [r[k] for r in refs]
        if not np.issubdtype(np.asarray(ref[0]).dtype, np.number):
            continue
        fid = compare_outputs(name, [np.asarray(r) for r in ref], [np.asarray(g[k]) for g in gots],
                              [token_mask(f) for f in split.held_out])
        report.fidelity.append(fid.as_dict())
        gated = options.gate_outputs is None or name in options.gate_outputs
        if gated and threshold > 0 and not (fid.cosine >= threshold):
            report.fidelity_ok = False
            report.notes.append(f"output '{name}': mean cosine {fid.cosine:.5f} is below the gate {threshold}")
    report.ok = report.fidelity_ok


def _no_change_note(report: CompileReport) -> str:
    if report.passes and all(p.name == CleanupPass.name for p in report.passes):
        return "only cleanup ran: the model is numerically unchanged"
    return "no pass changed the model: the output equals the input"


def raise_if_failed(report: CompileReport) -> None:
    if not report.ok:
        raise NegativeResult("compiled model failed the fidelity gate; nothing written "
                             "(see the notes above, or lower --min-cosine)")
