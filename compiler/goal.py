"""Goal-driven compile: try candidate pipelines, keep the best one that meets the goal and the fidelity gate.

Goals (Olive-style names): `speedup=2` (latency ≤ original / 2), `latency=10ms` (compiled p50), `size=0.5`
(bytes of weights ≤ half). Each candidate is a full compile (verified on held-out inputs, measured
interleaved against the original on the target), written to a temporary folder; the winner is moved to
the output. No candidate meeting the goal → exit 1, naming the best point reached.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgec.compiler.driver import CompileOptions, compile_model
from edgec.compiler.errors import EdgecError, InputError
from edgec.compiler.goal_search import successive_halving
from edgec.compiler.report.compile_report import CompileReport
from edgec.targets import TargetProfile


@dataclass(frozen=True)
class Goal:
    kind: str       # speedup | latency | size
    value: float

    def met(self, report: CompileReport) -> bool:
        return self.score(report) <= self.limit

    @property
    def limit(self) -> float:
        return 1.0 / self.value if self.kind == "speedup" else self.value

    def score(self, report: CompileReport) -> float:
        """Lower is better: latency ratio, compiled p50 in ms, or weight-bytes ratio."""
        if self.kind == "size":
            return _bytes_ratio(report)
        if not report.latency:
            return float("inf")
        return report.latency["ratio_p50"] if self.kind == "speedup" else report.latency["compiled"]["p50_ms"]

    def describe(self, report: CompileReport) -> str:
        s = self.score(report)
        return {"speedup": f"{1 / s:.2f}× faster", "latency": f"{s:.2f} ms", "size": f"{s:.2f}× the bytes"}[self.kind]


def parse_goal(text: str) -> Goal:
    m = re.fullmatch(r"\s*(speedup|latency|size)\s*=\s*([0-9.]+)\s*(ms|x|×)?\s*", text)
    if not m:
        raise InputError(f"--goal {text}: expected speedup=2, latency=10ms or size=0.5")
    goal = Goal(m.group(1), float(m.group(2)))
    if goal.value <= 0 or (goal.kind == "size" and goal.value > 1):
        raise InputError(f"--goal {text}: out of range")
    return goal


def candidates(floor: float, training: bool = False) -> list[tuple[str, list[str], dict]]:
    """From the most conservative to the most aggressive; with training (--recover), also the learned
    selection of units and heads (gates), which needs a training budget of its own."""
    int8 = ["quantize", "embed"]      # int8 layers and 8-bit embedding tables (a no-op without large tables)
    strict = round(1 - (1 - floor) / 2, 6)      # heads go first, at a stricter floor, leaving room for prune
    return [
        ("cleanup", ["cleanup"], {}),
        (f"prune floor {floor}", ["cleanup", "prune"], {"prune": {"floor": floor}}),
        ("int8", ["cleanup", *int8], {}),
        (f"prune floor {floor} + int8", ["cleanup", "prune", *int8], {"prune": {"floor": floor}}),
        (f"heads floor {strict} + prune floor {floor} + int8", ["cleanup", "heads", "prune", *int8],
         {"heads": {"floor": strict}, "prune": {"floor": floor}}),
        ("prune keep 0.75 + int8", ["cleanup", "prune", *int8], {"prune": {"keep": 0.75}}),
        ("prune keep 0.5 + int8", ["cleanup", "prune", *int8], {"prune": {"keep": 0.5}}),
        ("heads keep 0.75 + prune keep 0.5 + int8", ["cleanup", "heads", "prune", *int8],
         {"heads": {"keep": 0.75}, "prune": {"keep": 0.5}}),
    ] + ([("gates keep 0.5, heads 0.75 + int8", ["cleanup", "gates", *int8], {"gates": {"keep": 0.5, "heads": 0.75}})]
         if training else [])


def compile_to_goal(path: Path, target: TargetProfile, options: CompileOptions, goal: Goal) -> tuple[CompileReport, list]:
    """Every candidate once; with --recover, the training budget is the whole search's (successive halving)."""
    output = options.output or path.with_name(f"{path.stem}.{target.name}.onnx")
    gate = target.min_cosine if options.min_cosine is None else options.min_cosine
    floor = min(0.999, gate + (1 - gate) / 2)     # searches aim a little above the held-out gate
    points = candidates(floor, training=options.recover_minutes > 0)
    _check_user_options(options, points)
    with tempfile.TemporaryDirectory(dir=output.parent) as tmp:
        trial = _Trial(path, target, options, goal, Path(tmp))
        if options.recover_minutes > 0:
            results, notes = successive_halving(trial, points, options.recover_minutes)
        else:
            results, notes = [trial.run(i, point, 0.0) for i, point in enumerate(points)], []
        tried = [r.point for r in results]
        passed = [r for r in results if r.report is not None and r.report.ok]
        if not passed:
            raise InputError("no candidate pipeline passed the fidelity gate")
        best = min(passed, key=lambda r: goal.score(r.report))
        report = best.report
        assert report is not None and best.output is not None, "a passing candidate was written"
        if output.exists() and not options.force:
            raise InputError(f"{output}: already exists (use --force to replace it)")
        os.replace(best.output, output)
        report.output = str(output)
        report.candidates = [{**p, "chosen": p is best.point} for p in tried]
        report.notes += notes
        report.notes.append(f"goal {goal.kind}={goal.value}: chose '{best.point['pipeline']}' ({goal.describe(report)})")
    return report, tried


@dataclass
class _Result:
    point: dict
    report: CompileReport | None
    output: Path | None


@dataclass
class _Trial:
    """One candidate compile, written to its own temporary file."""

    path: Path
    target: TargetProfile
    options: CompileOptions
    goal: Goal
    folder: Path

    def run(self, index: int, candidate: tuple[str, list[str], dict], minutes: float) -> _Result:
        label, passes, pass_options = candidate
        out = self.folder / f"candidate{index}_{minutes:g}.onnx"
        merged = _merged(pass_options, self.options.pass_options, passes)
        recover = minutes
        if "gates" in passes:           # the gates train first: half the candidate's minutes, recovery the rest
            merged["gates"] = {**merged["gates"], "minutes": minutes / 2}
            recover = minutes / 2
        trial = dataclasses.replace(self.options, output=out, passes=passes, recover_minutes=recover,
                                    pass_options=merged,
                                    force=True, measure=True, allow_slower=True)
        try:
            report = compile_model(self.path, self.target, trial)
        except EdgecError:
            raise
        except Exception as exc:  # noqa: BLE001 - one candidate's bug must not end the search
            return _Result({"pipeline": label, "ok": False, "meets_goal": False, "latency_ratio": None,
                            "result": f"failed: {str(exc).splitlines()[0][:120]}", "bytes_ratio": None,
                            "cosine": 0.0, "train_minutes": minutes}, None, None)
        gated = self.options.gate_outputs
        point = {"pipeline": label, "ok": report.ok, "meets_goal": report.ok and self.goal.met(report),
                 "result": self.goal.describe(report), "latency_ratio": report.latency.get("ratio_p50"),
                 "bytes_ratio": _bytes_ratio(report), "train_minutes": minutes,
                 "cosine": min((f["score"] for f in report.fidelity if gated is None or f["name"] in gated),
                               default=1.0)}
        return _Result(point, report, out)


def _bytes_ratio(report: CompileReport) -> float:
    assert report.before is not None and report.after is not None, "a finished compile summarizes both models"
    return report.after.bytes / max(report.before.bytes, 1)


def _check_user_options(options: CompileOptions, points: list[tuple[str, list[str], dict]]) -> None:
    """--pass-option with --goal applies to every candidate that runs the pass; one no candidate runs is an error."""
    runs = {p for _, passes, _ in points for p in passes} | ({"recover"} if options.recover_minutes > 0 else set())
    stray = sorted(set(options.pass_options) - runs)
    if stray:
        raise InputError(f"--pass-option {stray[0]}.…: no --goal candidate runs '{stray[0]}' "
                         f"(they run {', '.join(sorted(runs))})")


def _merged(candidate: dict[str, dict], user: dict[str, dict], passes: list[str]) -> dict[str, dict]:
    """The candidate's own options, with the user's laid over them for the passes it runs (and recover)."""
    names = set(candidate) | {p for p in user if p in passes or p == "recover"}
    return {p: {**candidate.get(p, {}), **user.get(p, {})} for p in names}
