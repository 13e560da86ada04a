"""Ray's overhead on one machine, and what the same goal search would take on N workers (`make bench-ray`).

all-MiniLM-L6-v2, `compile --goal speedup=1.2 --recover --train-steps S`, calibrated on the prose sentences with
their tokenizer (on Ray, model, text and tokenizer travel through the object store). Three runs, one after another:

1. in process (the default executor);
2. Ray, one task at a time with both cores (a new local cluster of 2 CPUs, 2 CPUs per task): the same work as 1,
   so the difference is Ray's own cost — starting the cluster, shipping model and data, worker imports, results;
3. Ray, two workers of one core each, side by side (this machine has 2 cores: no speed-up to show).

All three must choose the same candidate and write the same bytes (checked, exit 1 otherwise). Prints the wall
times, the overhead, and the projection of run 1's recorded task times onto 1, 2, 4 and 8 workers.

    python -m edgec.samples.bench_executors [--out build/executors] [--steps 200] [--runs 20]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _search(base: Path, options, executor, out: Path) -> tuple[float, dict, bytes]:
    from edgec.compiler.goal.driver import Goal, compile_to_goal
    from edgec.targets import load_target

    start = time.perf_counter()
    try:
        report, _ = compile_to_goal(base, load_target("x86"), dataclasses.replace(options, output=out),
                                    Goal("speedup", 1.2), executor)
    finally:
        executor.close()
    wall = time.perf_counter() - start
    chosen = next(c["pipeline"] for c in report.candidates if c["chosen"])
    points = [{k: c.get(k) for k in ("pipeline", "cosine", "latency_ratio", "meets_goal", "train_steps")}
              for c in report.candidates]
    return wall, {"chosen": chosen, "candidates": points, "executor": report.executor}, out.read_bytes()


def main(argv: list[str] | None = None) -> None:
    from edgec.compiler.calibration.spec import CalibrationSpec
    from edgec.compiler.driver import CompileOptions
    from edgec.compiler.executors.local import InProcess
    from edgec.compiler.executors.ray_cluster import RayCluster
    from edgec.compiler.export import export
    from edgec.samples.minilm import model_dir

    parser = argparse.ArgumentParser(prog="edgec.samples.bench_executors")
    parser.add_argument("--out", type=Path, default=Path("build/executors"))
    parser.add_argument("--steps", type=int, default=200, help="the whole search's recovery budget, in steps")
    parser.add_argument("--runs", type=int, default=20, help="latency runs per candidate (timed here)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    base = args.out / "minilm.onnx"
    if not base.exists():
        export("minilm", base)
    text = Path(__file__).with_name("sentences.txt")
    options = CompileOptions(calibration=CalibrationSpec(text=text, tokenizer=model_dir(), count=48),
                             recover_steps=args.steps, runs=args.runs, gate_outputs=["sentence_embedding"], force=True)
    runs = {
        "in process": lambda: InProcess(),
        "Ray, 1 task at a time × 2 cores": lambda: RayCluster(None, cpus_per_task=2),
        "Ray, 2 workers × 1 core": lambda: RayCluster(None, cpus_per_task=1),
    }
    results = {}
    for i, (label, make) in enumerate(runs.items()):
        start = time.perf_counter()
        wall, info, data = _search(base, options, make(), args.out / f"run{i}.onnx")
        results[label] = {"wall_seconds": round(time.perf_counter() - start, 1), "search_seconds": round(wall, 1),
                          "bytes": data, **info}
        print(f"{label}: {results[label]['wall_seconds']} s, chose {info['chosen']}", flush=True)
    _print(results, args.out)


def _print(results: dict, out: Path) -> None:
    labels = list(results)
    local, serial = results[labels[0]], results[labels[1]]
    same = all(r["bytes"] == local["bytes"] and r["chosen"] == local["chosen"] for r in results.values())
    fidelity = all([c["cosine"] for c in r["candidates"]] == [c["cosine"] for c in local["candidates"]]
                   for r in results.values())
    print("\n| executor | wall s | vs in process | chose | tasks | retried |")
    print("|---|---|---|---|---|---|")
    for label, r in results.items():
        tasks = r["executor"]["tasks"]
        print(f"| {label} | {r['wall_seconds']} | {r['wall_seconds'] / local['wall_seconds']:.3f}× | {r['chosen']} | "
              f"{len(tasks)} | {sum(t['attempts'] > 1 for t in tasks)} |")
    overhead = serial["wall_seconds"] / local["wall_seconds"] - 1
    print(f"\nRay's overhead, one task at a time with the same cores: {overhead * 100:+.1f} % of the wall time")
    print(f"same choice and same bytes on every executor: {same}; every candidate's held-out cosine the same: "
          f"{fidelity}")
    projected = local["executor"]["projected_wall_seconds"]
    print("\nthe in-process search projected onto N workers (recorded task times, rounds as barriers, "
          f"{local['executor']['measuring_seconds']:.0f} s of timing here):")
    print("| workers | " + " | ".join(projected) + " |\n|---|" + "---|" * len(projected))
    print("| wall s | " + " | ".join(f"{v:.0f}" for v in projected.values()) + " |")
    for r in results.values():
        r.pop("bytes")
    (out / "results.json").write_text(json.dumps(results, indent=1))
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
