"""Goal-driven compile: try candidate pipelines, keep the most faithful one that meets the goal and the gate.

Goals (Olive-style names): `speedup=2` (latency ≤ original / 2), `latency=10ms` (compiled p50), `size=0.5`
(bytes of weights ≤ half). Each candidate is a full compile (verified on held-out inputs), then measured here
interleaved against the original, and kept in a temporary folder; the winner is written to the output. The
goal is a constraint and fidelity the objective, so two near-equal latencies never decide the choice. No
candidate meeting the goal → exit 1, naming the best point reached.
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from edgec.compiler import modelio
from edgec.compiler.calibration.general_text import with_general_text
from edgec.compiler.driver import CompileOptions, recovers, save
from edgec.compiler.errors import InputError
from edgec.compiler.executors import Events, Executor, open_executor
from edgec.compiler.goal.halving import successive_halving
from edgec.compiler.goal.trials import Trial, bytes_ratio
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
            return bytes_ratio(report)
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


FUSED_EPS = {"CPUExecutionProvider", "CUDAExecutionProvider"}    # where ONNX Runtime's fused contrib ops run


def candidates(floor: float, training: bool = False, convolutional: bool = False,
               transformer: bool = True, fused: bool = True) -> list[tuple[str, list[str], dict]]:
    """From the most conservative to the most aggressive; with training (--recover), also the learned
    selection of units and heads (gates), which needs a training budget of its own; for a model with
    convolutions, also their width (channels), alone and under int8. Without MLP blocks or attention heads
    (`transformer` False) the unit, head and fused-attention candidates would only repeat cleanup and int8: they
    are left out. `fused`: the target's execution providers run ONNX Runtime's fused contrib ops (not mobile)."""
    # int8 layers, 8-bit embedding tables and 8-bit storage of the weights left float (each a no-op where it finds
    # nothing to do)
    int8 = ["quantize", "embed", "weights"]
    plain: list[tuple[str, list[str], dict]] = [("cleanup", ["cleanup"], {}), ("int8", ["cleanup", *int8], {})]
    widths = _channel_candidates(floor, int8, training) if convolutional else []
    if not transformer:
        return plain + widths
    strict = round(1 - (1 - floor) / 2, 6)      # heads go first, at a stricter floor, leaving room for prune
    return [
        plain[0],
        (f"prune floor {floor}", ["cleanup", "prune"], {"prune": {"floor": floor}}),
        plain[1],
        # ONNX Runtime's fused attention and LayerNorm kernels under int8: faster on some CPUs, slower on others
        # (samples/RESULTS.md#int8), so the search times it rather than assume it
    ] + ([("fuse + int8", ["cleanup", "fuse", *int8], {})] if fused else []) + [
        (f"prune floor {floor} + int8", ["cleanup", "prune", *int8], {"prune": {"floor": floor}}),
        (f"heads floor {strict} + prune floor {floor} + int8", ["cleanup", "heads", "prune", *int8],
         {"heads": {"floor": strict}, "prune": {"floor": floor}}),
        ("prune keep 0.75 + int8", ["cleanup", "prune", *int8], {"prune": {"keep": 0.75}}),
        ("prune keep 0.5 + int8", ["cleanup", "prune", *int8], {"prune": {"keep": 0.5}}),
        ("heads keep 0.75 + prune keep 0.5 + int8", ["cleanup", "heads", "prune", *int8],
         {"heads": {"keep": 0.75}, "prune": {"keep": 0.5}}),
    ] + ([("gates keep 0.5, heads 0.75 + int8", ["cleanup", "gates", *int8], {"gates": {"keep": 0.5, "heads": 0.75}})]
         if training else []) + widths


def _channel_candidates(floor: float, int8: list[str], training: bool) -> list[tuple[str, list[str], dict]]:
    """Width by a floor, or by a fixed fraction; with training, also a deeper cut that only recovery brings
    back (int8 is a no-op where the target's int8 convolutions are not faster: quantize times them)."""
    fixed = [0.75, 0.5] + ([0.35] if training else [])
    return [
        (f"channels floor {floor}", ["cleanup", "channels"], {"channels": {"floor": floor}}),
        (f"channels floor {floor} + int8", ["cleanup", "channels", *int8], {"channels": {"floor": floor}}),
    ] + [(f"channels keep {keep} + int8", ["cleanup", "channels", *int8], {"channels": {"keep": keep}})
         for keep in fixed]


def has_convolutions(path: Path) -> bool:
    """Whether the model has a Conv with a constant weight (the channels candidates have something to narrow)."""
    model = modelio.load_model(path)
    weights = {i.name for i in model.graph.initializer} | {o for n in model.graph.node if n.op_type == "Constant"
                                                           for o in n.output}
    return any(n.op_type == "Conv" and len(n.input) > 1 and n.input[1] in weights for n in model.graph.node)


def has_transformer_blocks(path: Path) -> bool:
    """Whether the model has an MLP block or an attention block the unit and head passes can rewrite (True
    where discovery fails: then every candidate is tried, as before)."""
    import onnx_graphsurgeon as gs

    from edgec.passes.attention.discovery import find_attention
    from edgec.passes.cleanup import constant_nodes_to_initializers
    from edgec.passes.mlp.discovery import find_mlps

    try:
        graph = gs.import_onnx(modelio.load_model(path))
        constant_nodes_to_initializers(graph)       # raw exports keep weights in Constant nodes
        return bool(find_mlps(graph).blocks) or bool(find_attention(graph).blocks)
    except Exception:  # noqa: BLE001 - a graph discovery cannot read is one the compile itself reports on
        return True


def compile_to_goal(path: Path, target: TargetProfile, options: CompileOptions, goal: Goal,
                    executor: Executor | None = None, events: Events | None = None) -> tuple[CompileReport, list]:
    """Every candidate once; with --recover, the training budget is the whole search's (successive halving).
    The candidates compile as tasks of `executor` (default: one after another in this process); each is then
    timed here, against the original, and the winner written to the output."""
    output = options.output or path.with_name(f"{path.stem}.{target.name}.onnx")
    modelio.ensure_writable_output(output, [path], options.force)
    gate = target.min_cosine if options.min_cosine is None else options.min_cosine
    floor = min(0.999, gate + (1 - gate) / 2)     # searches aim a little above the held-out gate
    points = candidates(floor, training=recovers(options), convolutional=has_convolutions(path),
                        transformer=has_transformer_blocks(path), fused=set(target.execution_providers) <= FUSED_EPS)
    _check_user_options(options, points)
    general: list[str] = []        # the default general text, made here so that every worker trains on the same
    options = dataclasses.replace(options, calibration=with_general_text(options.calibration, recovers(options), general))
    executor = executor or open_executor()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=".edgec-goal-") as tmp:
        trial = Trial(path, target, options, goal, points, Path(tmp), executor, events)
        if recovers(options):
            results, notes = successive_halving(trial.run_round, points,
                                                options.recover_steps or options.recover_minutes,
                                                steps=options.recover_steps > 0)
        else:
            results, notes = trial.run_round([(i, 0.0) for i in range(len(points))]), []
        tried = [r.point for r in results]
        passed = [r for r in results if r.report is not None and r.report.ok]
        if not passed:
            raise InputError("no candidate pipeline passed the fidelity gate")
        best = choose(passed, goal)
        report = best.report
        assert report is not None and best.output is not None, "a passing candidate was written"
        save(report, modelio.load_model(best.output), output, target, options)
        report.candidates = [{**p, "chosen": p is best.point} for p in tried]
        said = any(n.startswith("general text (") for n in report.notes)     # the chosen task's own note, locally
        report.notes += ([] if said else general) + notes
        report.notes.append(f"goal {goal.kind}={goal.value}: chose '{best.point['pipeline']}' ({goal.describe(report)})")
        report.executor = trial.summary(time.monotonic() - started)
    return report, tried


def choose(passed: list, goal: Goal):
    """The most faithful candidate that meets the goal (the earliest, most conservative one on a tie): latency
    only decides whether a candidate meets it, so timing noise between near-equal candidates does not change
    the choice. When none meets it, the one closest to it (the compile then exits 1)."""
    meeting = [r for r in passed if goal.met(r.report)]
    if meeting:
        return max(meeting, key=lambda r: r.point["cosine"])
    return min(passed, key=lambda r: goal.score(r.report))


def _check_user_options(options: CompileOptions, points: list[tuple[str, list[str], dict]]) -> None:
    """--pass-option with --goal applies to every candidate that runs the pass; one no candidate runs is an error."""
    runs = {p for _, passes, _ in points for p in passes} | ({"recover"} if recovers(options) else set())
    stray = sorted(set(options.pass_options) - runs)
    if stray:
        raise InputError(f"--pass-option {stray[0]}.…: no --goal candidate runs '{stray[0]}' "
                         f"(they run {', '.join(sorted(runs))})")
