"""`make bench-frontier`: what edgec buys over ONNX Runtime's own int8 at each fidelity floor, on MiniLM.

Models: the fp32 original; ONNX Runtime's `quantize_dynamic` (per-channel, its default op types — the
embedding table too); and at each floor (0.995 / 0.99 / 0.98) the best pipeline edgec's goal search finds
(every candidate compiled, verified on held-out sentences and timed; the fastest one that passes the floor
kept). All are timed in one interleaved run (batch 1, sequence 128) and judged on two held-out sets: the
calibration text's own held-out sentences (prose) and WordNet's usage examples (another domain, when
Debian's wordnet-base is installed): mean sentence-embedding cosine and nearest-neighbour agreement with
the original. JSON, Markdown and a frontier plot (latency ratio to ORT int8 against cosine). Usage:

    python -m edgec.samples.bench_frontier [--out build/frontier] [--floors 0.995,0.99,0.98] [--runs 40]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
OUTPUT = "sentence_embedding"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="edgec.samples.bench_frontier")
    parser.add_argument("--out", type=Path, default=Path("build/frontier"))
    parser.add_argument("--floors", default="0.995,0.99,0.98")
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--other", type=int, default=200, help="sentences of the other domain")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    base, calib = _prepare(args.out)
    models = {"original (fp32)": base, "ORT int8 (quantize_dynamic defaults)": _ort_int8(base, args.out)}
    for floor in (float(f) for f in args.floors.split(",")):
        models[f"edgec best at {floor}"] = _edgec_best(base, calib, floor, args.out)
    sets = _held_out_sets(base, calib, args.other)
    rows = [{"model": label, "path": str(path), "file_mb": path.stat().st_size / 1e6,
             **{name: _fidelity(base, path, feeds) for name, feeds in sets.items()}} for label, path in models.items()]
    for row, ratio in zip(rows, _latency_ratios(list(models.values()), args.runs), strict=True):
        row.update(ratio)
    _write(rows, sets, args.out, args.runs)


def _prepare(folder: Path) -> tuple[Path, Path]:
    from edgec.samples.bench_suites import suites

    return suites()["minilm"].prepare(folder)


def _ort_int8(base: Path, folder: Path) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = folder / "ort_int8.onnx"
    quantize_dynamic(base, out, per_channel=True, weight_type=QuantType.QInt8)
    return out


def _edgec_best(base: Path, calib: Path, floor: float, folder: Path) -> Path:
    """The goal search's best point at this floor (a speed-up no pipeline reaches: the fastest that passes)."""
    from edgec.compiler.calibration.spec import CalibrationSpec
    from edgec.compiler.driver import CompileOptions
    from edgec.compiler.goal.driver import Goal, compile_to_goal
    from edgec.targets import load_target

    out = folder / f"edgec_{floor:g}.onnx"
    options = CompileOptions(output=out, calibration=CalibrationSpec(npz=calib), min_cosine=floor, force=True,
                             gate_outputs=[OUTPUT])
    report, tried = compile_to_goal(base, load_target("x86"), options, Goal("speedup", 100.0))
    (folder / f"edgec_{floor:g}.candidates.json").write_text(json.dumps(tried, indent=1))
    print(f"floor {floor}: {report.pipeline} ({report.notes[-1] if report.notes else ''})")
    return out


def _held_out_sets(base: Path, calib: Path, other: int) -> dict[str, list[dict]]:
    """The calibration text's held-out sentences (the compile's own split), and WordNet's usage examples."""
    from edgec.compiler.calibration.loading import load_npz_feeds, split_feeds
    from edgec.runtime.inputs import input_specs
    from edgec.runtime.session import SessionConfig, create_session

    session = create_session(str(base), SessionConfig())
    sets = {"prose": split_feeds(load_npz_feeds(calib, input_specs(session)))[1]}
    try:
        from edgec.samples.corpus import ensure_wordnet, wordnet_examples
        from edgec.samples.minilm import tokenize

        examples = list(itertools.islice(wordnet_examples(ensure_wordnet()), other))
        sets["wordnet"] = [tokenize([s]) for s in examples]
    except (FileNotFoundError, OSError) as exc:
        print(f"the other domain is skipped: {exc}")
    return sets


def _fidelity(base: Path, path: Path, feeds: list[dict]) -> dict:
    from edgec.runtime.fidelity import compare_outputs, token_mask
    from edgec.runtime.session import SessionConfig, create_session

    a, b = create_session(str(base), SessionConfig()), create_session(str(path), SessionConfig())
    ref = [a.run([OUTPUT], f)[0] for f in feeds]
    got = [b.run([OUTPUT], f)[0] for f in feeds]
    fid = compare_outputs(OUTPUT, ref, got, [token_mask(f) for f in feeds])
    return {"cosine": fid.cosine, "worst": fid.min_cosine, "nn": fid.nn_agreement}


def _latency_ratios(paths: list[Path], runs: int) -> list[dict]:
    from edgec.compiler.driver import session_config
    from edgec.runtime.inputs import input_specs, synthesize_feed
    from edgec.runtime.latency import LatencyStats, measure_interleaved
    from edgec.runtime.session import create_session
    from edgec.targets import load_target

    config = session_config(load_target("x86"))
    sessions = [create_session(str(p), config) for p in paths]
    feed = synthesize_feed(input_specs(sessions[0]), np.random.default_rng(0), {"batch": 1, "sequence": 128})
    p50 = [LatencyStats.from_samples(s).p50_ms for s in measure_interleaved(
        [lambda s=s: s.run(None, feed) for s in sessions], 5, runs)]
    return [{"p50_ms": p, "vs_fp32": p / p50[0], "vs_ort_int8": p / p50[1]} for p in p50]


def _write(rows: list[dict], sets: dict, folder: Path, runs: int) -> None:
    (folder / "frontier.json").write_text(json.dumps({"runs": runs, "rows": rows}, indent=1, default=float))
    head = ["model", "file MB", "p50 ms", "vs fp32", "vs ORT int8"]
    for name in sets:
        head += [f"{name} cosine", f"{name} worst", f"{name} NN@1"]
    lines = [f"**all-MiniLM-L6-v2, batch 1, sequence 128**, {runs} interleaved runs; fidelity of "
             f"'{OUTPUT}' to the original on {', '.join(f'{len(v)} {k}' for k, v in sets.items())} sentences", "",
             "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for r in rows:
        cells = [r["model"], f"{r['file_mb']:.1f}", f"{r['p50_ms']:.2f}", f"{r['vs_fp32']:.3f}×",
                 f"{r['vs_ort_int8']:.3f}×"]
        cells += [f"{r[n]['cosine']:.4f} | {r[n]['worst']:.4f} | " + ("-" if r[n]["nn"] is None else f"{r[n]['nn']:.3f}")
                  for n in sets]
        lines.append("| " + " | ".join(cells) + " |")
    (folder / "frontier.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    _plot(rows, list(sets), folder / "frontier.png")


def _plot(rows: list[dict], sets: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, marker in zip(sets, "os", strict=False):
        ax.scatter([r["vs_ort_int8"] for r in rows], [r[name]["cosine"] for r in rows], marker=marker, label=name)
        for r in rows:
            ax.annotate(r["model"].replace("edgec best at ", "≥"), (r["vs_ort_int8"], r[name]["cosine"]), fontsize=7)
    ax.set_xlabel("latency / ORT int8 (lower is faster)")
    ax.set_ylabel(f"mean cosine of {OUTPUT}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
