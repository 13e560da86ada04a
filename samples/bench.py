"""`make bench`: every compression variant of each sample model, side by side in one run.

Each variant is compiled with edgec (held-out fidelity measured by the compile), then all models of a
suite are timed *interleaved in one process* (same feed), so the latency ratios are comparable on a
noisy machine. Suites and variants live in `bench_suites.py`. Usage:

    python -m edgec.samples.bench [--out build/bench] [--runs 40] [--suite minilm,vit] [--only prune,share]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from edgec.samples.bench_suites import Suite, suites

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="edgec.samples.bench")
    parser.add_argument("--out", type=Path, default=Path("build/bench"))
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--suite", default="minilm,vit", help="comma-separated: minilm,vit")
    parser.add_argument("--only", help="comma-separated groups: prune,selectors,lowrank,share,sparse")
    parser.add_argument("--reuse", action="store_true", help="reuse models compiled by an earlier run")
    args = parser.parse_args(argv)
    available = suites()
    for name in args.suite.split(","):
        if name not in available:
            parser.error(f"unknown suite '{name}' (known: {', '.join(available)})")
        folder = args.out if name == "minilm" else args.out / name
        folder.mkdir(parents=True, exist_ok=True)
        run_suite(available[name], folder, args.runs, set(args.only.split(",")) if args.only else None, args.reuse)


def run_suite(suite: Suite, folder: Path, runs: int, groups: set[str] | None, reuse: bool) -> list[dict]:
    from edgec.compiler.calibration.spec import CalibrationSpec
    from edgec.compiler.driver import CompileOptions, compile_model
    from edgec.targets import load_target

    base, calib = suite.prepare(folder)
    target = load_target("x86")
    rows = []
    for v in suite.variants:
        if groups and v.group not in groups | {"reference"}:
            continue
        if not v.passes:
            rows.append({"label": v.label, "path": base, "cosine": 1.0, "nn": 1.0})
            continue
        path = folder / f"{len(rows):02d}.onnx"
        cached = path.with_suffix(".fidelity.json")
        if reuse and path.exists() and cached.exists() and json.loads(cached.read_text())["label"] == v.label:
            rows.append({**json.loads(cached.read_text()), "path": path})
            continue
        opts = CompileOptions(output=path, passes=v.passes, pass_options=v.options,
                              calibration=CalibrationSpec(npz=calib), min_cosine=0.0,
                              force=True, measure=False, gate_outputs=suite.gate_outputs)
        report = compile_model(base, target, opts)
        fid = min((f for f in report.fidelity if suite.gate_outputs is None or f["name"] in suite.gate_outputs),
                  key=lambda f: f["cosine"])
        row = {"label": v.label, "cosine": fid["cosine"], "nn": fid.get("nn_agreement", fid.get("top1_agreement", 0))}
        cached.write_text(json.dumps(row))
        rows.append({**row, "path": path})
        print(f"compiled {v.label}: cosine {fid['cosine']:.4f}", flush=True)
    if suite.accuracy:
        for r in rows:
            r["top1"] = suite.accuracy(r["path"], folder)
    table = _measure(rows, target, runs, suite)
    _print(table, suite, target, runs)
    _write(table, folder, runs, suite)
    return table


def _measure(rows: list[dict], target, runs: int, suite: Suite) -> list[dict]:
    import onnx

    from edgec.compiler.driver import session_config
    from edgec.runtime.inputs import input_specs, synthesize_feed
    from edgec.runtime.latency import LatencyStats, measure_interleaved
    from edgec.runtime.session import create_session

    config = session_config(target)
    sessions = [create_session(str(r["path"]), config) for r in rows]
    feed = synthesize_feed(input_specs(sessions[0]), np.random.default_rng(0), suite.timing_dims)
    samples = measure_interleaved([lambda s=s: s.run(None, feed) for s in sessions], 5, runs)
    p50 = [LatencyStats.from_samples(x).p50_ms for x in samples]
    int8 = next((p for r, p in zip(rows, p50, strict=True) if r["label"] == "ORT int8 per-channel"), None)
    table = []
    for r, p in zip(rows, p50, strict=True):
        model = onnx.load(str(r["path"]))
        params = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
        params += sum(int(np.prod(t.dims)) for t in model.graph.sparse_initializer)
        table.append({"variant": r["label"], "params": params, "file_mb": r["path"].stat().st_size / 1e6,
                      "p50_ms": p, "vs_fp32": p / p50[0], "vs_int8": p / int8 if int8 else None,
                      "cosine": r["cosine"], "nn_agreement": r["nn"], "top1": r.get("top1")})
    return table


COLUMNS = ["variant", "params", "file MB", "p50 ms", "vs fp32", "vs int8", "cosine", "NN/top-1 agree", "top-1"]


def _cells(r: dict) -> list[str]:
    return [r["variant"], f"{r['params']:,}", f"{r['file_mb']:.2f}", f"{r['p50_ms']:.3f}", f"{r['vs_fp32']:.3f}×",
            f"{r['vs_int8']:.3f}×" if r["vs_int8"] else "-", f"{r['cosine']:.4f}", f"{r['nn_agreement']:.3f}",
            f"{r['top1']:.3f}" if r.get("top1") is not None else "-"]


def _print(table: list[dict], suite: Suite, target, runs: int) -> None:
    widths = [max(len(c), *(len(_cells(r)[i]) for r in table)) for i, c in enumerate(COLUMNS)]
    print(f"\n{suite.title}: {runs} interleaved runs each, {target.name} target; fidelity on held-out inputs"
          f"{' (' + ', '.join(suite.gate_outputs) + ')' if suite.gate_outputs else ''}\n")
    line = lambda cells: " ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                                  for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
    print(line(COLUMNS) + "\n" + "-" * (sum(widths) + len(widths)))
    for r in table:
        print(line(_cells(r)))


def _write(table: list[dict], folder: Path, runs: int, suite: Suite) -> None:
    (folder / "bench.json").write_text(json.dumps({"suite": suite.name, "title": suite.title, "runs": runs,
                                                   "rows": table}, indent=1))
    lines = [f"**{suite.title}**, {runs} interleaved runs", "", "| " + " | ".join(COLUMNS) + " |",
             "|---" * len(COLUMNS) + "|"]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in table]
    (folder / "bench.md").write_text("\n".join(lines) + "\n")
    print(f"\nwritten: {folder / 'bench.json'}, {folder / 'bench.md'}")


if __name__ == "__main__":
    main()
