"""The fold driver: match, Δ, prune (with a label-free q for DAREx-q), fold, verify, save."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from edgec.compiler import modelio
from edgec.compiler.calibration.feeds import feed_set
from edgec.compiler.calibration.loading import vocabulary_size
from edgec.compiler.calibration.spec import CalibrationSpec
from edgec.compiler.capture import ActivationCapture
from edgec.compiler.errors import InputError
from edgec.compiler.fold import dare as dp
from edgec.compiler.fold.deltas import (
    FoldReport,
    compute_deltas,
    folded_model,
    load_pair,
    match_initializers,
    prunable,
    write_delta,
)
from edgec.compiler.reference import Reference
from edgec.runtime.session import SessionConfig, create_session

SEEDS = 4   # DAREx-q averages the output change over this many random masks per q


def fold(base_path: Path, tuned_path: Path, output: Path, method: str, drop: float, seed: int = 0,
         calib: Path | None = None, emit_delta: Path | None = None, per_layer_q: bool = False,
         force: bool = False) -> FoldReport:
    if method not in dp.METHODS:
        raise InputError(f"unknown method '{method}' (known: {', '.join(dp.METHODS)})")
    if not 0 <= drop < 1:
        raise InputError(f"--drop {drop}: must lie in [0, 1)")
    modelio.ensure_writable_output(output, [base_path, tuned_path], force)
    base, tuned = load_pair(base_path, tuned_path)
    pairs, unmatched = match_initializers(base, tuned)
    report = FoldReport(str(base_path), str(tuned_path), method, drop, matched=len(pairs), unmatched=unmatched,
                        tuned_bytes=tuned_path.stat().st_size)
    if unmatched:
        report.notes.append(f"{len(unmatched)} weights of the fine-tune have no match in the base and are kept "
                            f"as tuned: {', '.join(unmatched[:5])}{' …' if len(unmatched) > 5 else ''}")
    deltas = compute_deltas(base, tuned, pairs)
    names = prunable(deltas) if method != "exact" else []
    reference = _reference(tuned, tuned_path, calib, seed)
    masks, scales = _masks_and_scales(tuned, deltas, names, method, drop, seed, reference, report, per_layer_q)
    model = folded_model(tuned, deltas, masks, scales)
    report.pruned_tensors = len(masks)
    kept = [m.mean() for m in masks.values()]
    report.kept_fraction = float(np.mean(kept)) if kept else 1.0
    names = reference.output_names
    report.fidelity += [f.as_dict() if not isinstance(f, str) else {"name": n, "error": f}
                        for n, f in zip(names, reference.compare(model, reference.feeds.held_out), strict=True)]
    modelio.save_model_atomic(model, output)
    if emit_delta:
        report.delta_file = str(emit_delta)
        report.delta_bytes = write_delta(emit_delta, deltas, masks, scales)
    return report


def _reference(tuned: onnx.ModelProto, path: Path, calib: Path | None, seed: int) -> Reference:
    """The fine-tuned model as the reference the fold is measured against, as `compile` measures (the same
    object), on the user's feeds or synthesized ones that run (token ids within the model's vocabulary, the
    scalars and sizes real models need): the q search on the calibration part, the report on the held-out."""
    config = SessionConfig()
    session = create_session(tuned.SerializeToString(), config)
    feeds = feed_set(session, vocabulary_size(tuned), CalibrationSpec(npz=calib), seed, path, [], run_original=False)
    return Reference(tuned, config, session, feeds, seed)


def _masks_and_scales(tuned, deltas, names, method, drop, seed, reference: Reference, report, per_layer_q):
    rng = np.random.default_rng(seed)
    masks = {n: dp.drop_mask(deltas[n][1], drop, method, rng) for n in names}
    if method != "darex-q":
        scale = dp.rescale(method, drop)
        return masks, {n: scale for n in names}
    search = reference.feeds.calibration
    report.q = _search_q(tuned, deltas, names, drop, seed, reference)
    scales = {n: 1.0 / report.q for n in names}
    if per_layer_q:
        scales = _per_layer_scales(tuned, deltas, masks, search, reference.config, scales)
        report.per_layer_q = {n: round(1.0 / s, 5) for n, s in scales.items()}
    return masks, scales


def _search_q(tuned, deltas, names, drop, seed, reference: Reference) -> float:
    """Label-free q: the rescale that keeps the outputs closest to the fine-tuned model's (relative L2 pooled
    over the outputs), over several masks."""
    search = reference.feeds.calibration
    mask_sets = []
    for s in range(SEEDS):   # the first is the mask the fold will use (same seed as _masks_and_scales)
        rng = np.random.default_rng(seed + 1000 * s)
        mask_sets.append({n: dp.drop_mask(deltas[n][1], drop, "dare", rng) for n in names})
    def change(q: float) -> float:
        errors = []
        for masks in mask_sets:
            model = folded_model(tuned, deltas, masks, {n: 1.0 / q for n in names})
            errors.append(reference.relative_change(model, search, pooled=True))
        return float(np.mean(errors))

    grid = dp.q_grid(drop)
    scores = {float(q): change(q) for q in grid}
    coarse = min(scores, key=lambda q: scores[q])
    scores.update({float(q): change(q) for q in dp.refine_grid(grid, coarse)})
    return min(scores, key=lambda q: scores[q])


def _per_layer_scales(tuned, deltas, masks, search, config, scales) -> dict[str, float]:
    """Per MatMul weight: the closed-form scale that best preserves that layer's output on the inputs."""
    consumers = {}
    for node in tuned.graph.node:
        if node.op_type == "MatMul" and len(node.input) == 2 and node.input[1] in masks:
            consumers[node.input[1]] = node.input[0]
    if not consumers:
        return scales
    graph = modelio.to_graph(tuned)
    grams = ActivationCapture(search, config, tuned).grams(graph, sorted(set(consumers.values())))
    out = dict(scales)
    for name, x in consumers.items():
        _, d = deltas[name]
        out[name] = dp.layer_optimal_scale(d, np.where(masks[name], d, 0.0), grams[x].xtx)
    return out


def apply(base_path: Path, delta_path: Path, output: Path, force: bool = False) -> onnx.ModelProto:
    from edgec.compiler.fold.deltas import apply_delta

    modelio.ensure_writable_output(output, [base_path], force)
    if not delta_path.is_file():
        raise InputError(f"{delta_path}: delta file not found")
    model = apply_delta(modelio.load_model(base_path), delta_path)
    modelio.save_model_atomic(model, output)
    return model
