"""Step 6 of a compile: the compiled model against the original on the held-out feeds, every output
judged with the metric that fits it (`runtime.fidelity`), the gate applied to the outputs it covers."""

from __future__ import annotations

from edgec.compiler.errors import InputError
from edgec.compiler.reference import Reference
from edgec.compiler.report.compile_report import CompileReport
from edgec.passes.quantize import static_floor
from edgec.runtime.fidelity import compare_runs
from edgec.targets import TargetProfile


def verify(report: CompileReport, reference: Reference, candidate, target: TargetProfile,
           min_cosine: float | None) -> None:
    """Fill report.fidelity and report.ok; RuntimeError when the compiled model fails to run at all."""
    names, split, gate_outputs = reference.output_names, reference.feeds, reference.judged
    unknown = sorted(set(gate_outputs or []) - set(names))
    if unknown:
        raise InputError(f"--gate-outputs: the model has no output(s) {unknown} (it has {names})")
    refs = split.held_out_outputs or [reference.session.run(names, f) for f in split.held_out]
    try:
        gots = [candidate.run(names, f) for f in split.held_out]
    except Exception as exc:  # noqa: BLE001 - ORT's own error types: the rewrite broke the graph at run time
        raise RuntimeError(f"the compiled model fails on the held-out inputs ({str(exc).splitlines()[0][:160]})") \
            from exc
    threshold = target.min_cosine if min_cosine is None else min_cosine
    report.min_cosine = threshold
    held_out_gate = _static_gate(report, threshold)
    report.fidelity = _judged(report, names, refs, gots, split.held_out, gate_outputs, held_out_gate,
                              "" if held_out_gate == threshold else " (static int8: the gate's reserved share)",
                              reference.units)
    if split.evaluation:     # --eval-text: another domain, judged and gated the same way (the default: judged only)
        refs = split.evaluation_outputs or [reference.session.run(names, f) for f in split.evaluation]
        gots = [candidate.run(names, f) for f in split.evaluation]
        report.fidelity_eval = _judged(report, names, refs, gots, split.evaluation, gate_outputs,
                                       threshold if split.evaluation_gated else 0.0, f" on {split.evaluation_source}",
                                       reference.units)
    report.ok = report.fidelity_ok


def _static_gate(report: CompileReport, threshold: float) -> float:
    """The held-out gate of a model with static int8: its fixed activation ranges clip inputs they have not
    seen, which the few held-out feeds rarely show (the captcha CRNN kept 318 of 320 steps held out and changed 2
    of 32 lines on more), so it must keep the share of the error budget its search kept (`quantize.static_floor`)."""
    static = any(rec.name == "quantize" and rec.changed and rec.stats.get("recipe_mode") == "static"
                 for rec in report.passes)
    return static_floor(threshold) if static else threshold


def _judged(report: CompileReport, names: list[str], refs, gots, feeds, gate_outputs: list[str] | None,
            threshold: float, where: str, units: frozenset[str]) -> list[dict]:
    """Each output's fidelity record; a gated output below the threshold fails the report, with a note."""
    records = []
    for name, fid in zip(names, compare_runs(names, refs, gots, feeds, units), strict=True):
        gated = gate_outputs is None or name in gate_outputs
        if isinstance(fid, str):       # another shape than the original's: as wrong as it gets
            report.fidelity_ok = report.fidelity_ok and not gated
            report.notes.append(fid + where if gated else f"{fid}{where} (not gated)")
            continue
        records.append(fid.as_dict())
        if gated and threshold > 0 and not (fid.score >= threshold):
            report.fidelity_ok = False
            report.notes.append(f"output '{name}'{where}: {_described(fid)} is below the gate {threshold}")
    return records


def _described(fid) -> str:
    if fid.top1_agreement is not None and fid.score == fid.top1_agreement and fid.metric != "agreement":
        return f"top-1 agreement {fid.score:.5f}"
    if fid.metric == "cosine":
        return f"mean cosine {fid.score:.5f}"
    if fid.metric == "range":
        return f"score {fid.score:.5f} (error {1 - fid.score:.2%} of the output's range)"
    return f"agreement {fid.score:.5f}"
