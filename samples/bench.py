"""`make bench`: every compression variant of the real all-MiniLM-L6-v2, side by side in one run.

Each variant is compiled with edgec (held-out fidelity of the sentence embeddings, measured by the
compile), then all models are timed *interleaved in one process* (batch 1, sequence 128, same feed),
so the latency ratios are comparable on a noisy machine. Usage:

    python -m edgec.samples.bench [--out build/bench] [--runs 40] [--only prune,lowrank]
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

FP32, INT8 = "fp32", "int8"


@dataclass
class Variant:
    label: str
    group: str
    passes: list[str] = field(default_factory=list)
    options: dict[str, dict] = field(default_factory=dict)


def variants() -> list[Variant]:
    out = [Variant("original (fp32)", "reference"),
           Variant("ORT transformer-optimized (fuse)", "reference", ["cleanup", "fuse"]),
           Variant("ORT int8 per-channel", "reference", ["cleanup", "quantize"]),
           Variant("ORT fused + int8 per-channel", "reference", ["cleanup", "fuse", "quantize"])]
    for keep in (0.75, 0.5, 0.4):
        for comp in (False, True):
            name = f"prune keep {keep:.0%}" + (" + LS compensation" if comp else " (no compensation)")
            out.append(Variant(name, "prune", ["cleanup", "prune"], {"prune": {"keep": keep, "compensate": comp}}))
        out.append(Variant(f"prune keep {keep:.0%} + LS + int8", "prune", ["cleanup", "prune", "quantize"],
                           {"prune": {"keep": keep}}))
    out.append(Variant("prune floor 0.995 + int8", "prune", ["cleanup", "prune", "quantize"],
                       {"prune": {"floor": 0.995}}))
    for params in (0.5, 0.4):
        for method in ("svd", "whitened"):
            out.append(Variant(f"lowrank {method} {params:.0%} params", "lowrank", ["cleanup", "lowrank"],
                               {"lowrank": {"params": params, "method": method, "max_rank_ratio": 1.0}}))
    for params in (0.5, 0.4):       # every variant here stores the same MLP bytes as lowrank at `params`
        share = {"params": params, "group": 2}
        out += [Variant(f"share {params:.0%} init (speed, groups of 2)", "share", ["cleanup", "share"],
                        {"share": share}),
                Variant(f"share {params:.0%} + reconstruction", "share", ["cleanup", "share"],
                        {"share": {**share, "train_steps": 600, "lr": 3e-4}}),
                Variant(f"share {params:.0%} storage, 75%-sparse V + recon", "share", ["cleanup", "share"],
                        {"share": {**share, "mode": "storage", "train_steps": 600}})]
    for spec in ("0.5", "2:4", "0.8"):
        out.append(Variant(f"sparse {spec} (wanda + LS, storage)", "sparse", ["cleanup", "sparse"],
                           {"sparse": {"pattern": spec}}))
    return out


def main(argv: list[str] | None = None) -> None:
    from edgec.compiler.driver import CompileOptions, compile_model
    from edgec.compiler.export import export
    from edgec.samples.minilm import write_calibration
    from edgec.targets import load_target

    parser = argparse.ArgumentParser(prog="edgec.samples.bench")
    parser.add_argument("--out", type=Path, default=Path("build/bench"))
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--only", help="comma-separated groups: prune,lowrank,share,sparse")
    parser.add_argument("--reuse", action="store_true", help="reuse models compiled by an earlier run")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    base, calib = args.out / "minilm.onnx", args.out / "sentences.npz"
    if not base.exists():
        export("minilm", base)
    write_calibration(calib)
    target = load_target("x86")
    groups = set(args.only.split(",")) | {"reference"} if args.only else None
    rows = []
    for v in variants():
        if groups and v.group not in groups:
            continue
        if not v.passes:
            rows.append({"label": v.label, "path": base, "cosine": 1.0, "nn": 1.0})
            continue
        path = args.out / f"{len(rows):02d}.onnx"
        cached = path.with_suffix(".fidelity.json")
        if args.reuse and path.exists() and cached.exists() and json.loads(cached.read_text())["label"] == v.label:
            rows.append({**json.loads(cached.read_text()), "path": path})
            continue
        opts = CompileOptions(output=path, passes=v.passes, pass_options=v.options, calib=calib, min_cosine=0.0,
                              force=True, measure=False, gate_outputs=["sentence_embedding"])
        report = compile_model(base, target, opts)
        fid = next(f for f in report.fidelity if f["name"] == "sentence_embedding")
        row = {"label": v.label, "cosine": fid["cosine"], "nn": fid.get("nn_agreement", 0)}
        cached.write_text(json.dumps(row))
        rows.append({**row, "path": path})
        print(f"compiled {v.label}: cosine {fid['cosine']:.4f}", flush=True)
    _measure_and_print(rows, target, args.runs)


def _measure_and_print(rows: list[dict], target, runs: int) -> None:
    import onnx

    from edgec.compiler.driver import session_config
    from edgec.runtime.inputs import input_specs, synthesize_feed
    from edgec.runtime.latency import LatencyStats, measure_interleaved
    from edgec.runtime.session import create_session

    config = session_config(target)
    sessions = [create_session(str(r["path"]), config) for r in rows]
    feed = synthesize_feed(input_specs(sessions[0]), np.random.default_rng(0), {"batch": 1, "sequence": 128})
    samples = measure_interleaved([lambda s=s: s.run(None, feed) for s in sessions], 5, runs)
    p50 = [LatencyStats.from_samples(x).p50_ms for x in samples]
    int8 = next((p for r, p in zip(rows, p50, strict=True) if r["label"] == "ORT int8 per-channel"), None)
    print(f"\nall-MiniLM-L6-v2, batch 1, sequence 128, {runs} interleaved runs each, "
          f"{target.name} target ({', '.join(config.providers)}); fidelity: held-out sentence embeddings\n")
    header = f"{'variant':<40} {'params':>11} {'file MB':>8} {'p50 ms':>8} {'vs fp32':>8} {'vs int8':>8} " \
             f"{'cosine':>8} {'NN agree':>9}"
    print(header + "\n" + "-" * len(header))
    table = []
    for r, p in zip(rows, p50, strict=True):
        model = onnx.load(str(r["path"]))
        params = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
        params += sum(int(np.prod(t.dims)) for t in model.graph.sparse_initializer)
        row = {"variant": r["label"], "params": params, "file_mb": r["path"].stat().st_size / 1e6, "p50_ms": p,
               "vs_fp32": p / p50[0], "vs_int8": p / int8 if int8 else None, "cosine": r["cosine"],
               "nn_agreement": r["nn"]}
        table.append(row)
        vs_int8 = f"{row['vs_int8']:.3f}×" if int8 else "-"
        print(f"{r['label']:<40} {params:>11,} {row['file_mb']:>8.2f} {p:>8.3f} "
              f"{row['vs_fp32']:>7.3f}× {vs_int8:>8} {r['cosine']:>8.4f} {r['nn']:>9.3f}")
    _write(table, rows[0]["path"].parent, runs)


def _write(table: list[dict], folder: Path, runs: int) -> None:
    import json

    (folder / "bench.json").write_text(json.dumps({"runs": runs, "rows": table}, indent=1))
    lines = ["| variant | params | file MB | p50 ms | vs fp32 | vs int8 | cosine | NN agree |", "|---" * 8 + "|"]
    for r in table:
        vs_int8 = f"{r['vs_int8']:.3f}×" if r["vs_int8"] else "-"
        lines.append(f"| {r['variant']} | {r['params']:,} | {r['file_mb']:.2f} | {r['p50_ms']:.3f} | "
                     f"{r['vs_fp32']:.3f}× | {vs_int8} | {r['cosine']:.4f} | {r['nn_agreement']:.3f} |")
    (folder / "bench.md").write_text("\n".join(lines) + "\n")
    print(f"\nwritten: {folder / 'bench.json'}, {folder / 'bench.md'}")


if __name__ == "__main__":
    main()
