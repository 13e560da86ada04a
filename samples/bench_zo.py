"""Forward-only tuning of an int8 model (`make bench-zo`): all-MiniLM-L6-v2 quantized by edgec's `quantize`
(ONNX Runtime's dynamic int8, per channel), then `edgec recover` — GRASP group affines tuned by zeroth-order
steps through ONNX Runtime against the float original, folded into the int8 graph's weight scales and biases.

Training data: corpus sentences (WordNet usage examples and fortunes, `corpus.py`), never the evaluation
sentences. Held out: the driver's final split of the prose evaluation sentences (`sentences.txt`), and 200
further corpus sentences. Both int8 models are timed interleaved: the ops are the same, so is the latency.

    python -m edgec.samples.bench_zo [--out build/zo] [--minutes 10] [--lines 2048] [--runs 40]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _lines(out: Path, count: int) -> list[str]:
    from edgec.samples.corpus import write_corpus
    from edgec.samples.minilm import sentences

    path = out / "corpus.txt"
    write_corpus(path, count, first=sentences())
    return path.read_text(encoding="utf-8").splitlines()[len(sentences()):]


def _fidelity(original: Path, model: Path, texts: list[str]) -> dict:
    import onnxruntime as ort

    from edgec.runtime.fidelity import compare_outputs
    from edgec.samples.minilm import tokenize

    feeds = [tokenize([t]) for t in texts]
    a = ort.InferenceSession(str(original), providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    ref = [a.run(["sentence_embedding"], f)[0] for f in feeds]
    got = [b.run(["sentence_embedding"], f)[0] for f in feeds]
    fid = compare_outputs("sentence_embedding", ref, got, [None] * len(feeds))
    return {"cosine": fid.cosine, "min_cosine": fid.min_cosine, "nn_agreement": fid.nn_agreement}


def _latency(models: list[Path], runs: int) -> list[float]:
    from edgec.compiler.driver import session_config
    from edgec.runtime.inputs import input_specs, synthesize_feed
    from edgec.runtime.latency import LatencyStats, measure_interleaved
    from edgec.runtime.session import create_session
    from edgec.targets import load_target

    config = session_config(load_target("arm"))
    sessions = [create_session(str(p), config) for p in models]
    feed = synthesize_feed(input_specs(sessions[0]), np.random.default_rng(0), {"batch": 1, "sequence": 128})
    samples = measure_interleaved([lambda s=s: s.run(None, feed) for s in sessions], 5, runs)
    return [LatencyStats.from_samples(x).p50_ms for x in samples]


def main(argv: list[str] | None = None) -> None:
    import onnx

    from edgec.compiler.calibration.loading import split_feeds
    from edgec.compiler.driver import CompileOptions, compile_model
    from edgec.compiler.export import export
    from edgec.compiler.retune import retune
    from edgec.passes.recovery.options import AffineSettings
    from edgec.runtime.zo.tuner import ZOSettings
    from edgec.samples.minilm import sentences, write_calibration
    from edgec.targets import load_target

    parser = argparse.ArgumentParser(prog="edgec.samples.bench_zo")
    parser.add_argument("--out", type=Path, default=Path("build/zo"))
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--lines", type=int, default=2048, help="corpus sentences to tune on")
    parser.add_argument("--optimizer", default="gauss-newton", choices=["gauss-newton", "spsa", "jacobian"])
    parser.add_argument("--groups", type=int, default=8)
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    base, int8 = args.out / "minilm.onnx", args.out / "minilm.int8.onnx"
    if not base.exists():
        export("minilm", base)
    compile_model(base, load_target("arm"), CompileOptions(output=int8, passes=["cleanup", "quantize"], min_cosine=0.0,
                                                            pass_options={"quantize": {"floor": 0.0}}, force=True,
                                                            measure=False, allow_synthetic=True))
    lines = _lines(args.out, args.lines + 200)
    train, other = lines[:args.lines], lines[args.lines:]
    data = write_calibration(args.out / "train.npz", train, max_length=64)
    tuned = args.out / f"minilm.int8.zo_{args.optimizer}_k{args.groups}.onnx"
    report = retune(int8, base, tuned, str(data), None, ZOSettings(minutes=args.minutes, optimizer=args.optimizer),
                    AffineSettings(groups=args.groups), force=True)
    prose = [s for s in split_feeds(sentences())[1]]
    ops = [collections.Counter(n.op_type for n in onnx.load(str(p)).graph.node) for p in (int8, tuned)]
    p50 = _latency([int8, tuned], args.runs)
    rows = {"int8 (edgec quantize = ORT dynamic per-channel)": int8, "int8 + ZO-tuned group affines": tuned}
    results = {label: {"prose": _fidelity(base, p, prose), "corpus": _fidelity(base, p, other), "p50_ms": t,
                       "ratio": t / p50[0]} for (label, p), t in zip(rows.items(), p50, strict=True)}
    print(f"\nZO tuning: {report['trainable']} numbers at {report['sites']} sites, {report['steps']} steps, "
          f"{report['forward_passes']} forward passes in {report['seconds']:.0f} s; search score "
          f"{report['held_out_before']:.4f} → {report['held_out_best']:.4f}; same ops: {ops[0] == ops[1]}")
    print(f"\n| model | prose cosine (min) | prose NN | corpus cosine (min) | corpus NN | p50 ratio ({args.runs} "
          "interleaved runs) |\n|---|---|---|---|---|---|")
    for label, r in results.items():
        print(f"| {label} | {r['prose']['cosine']:.4f} ({r['prose']['min_cosine']:.4f}) | "
              f"{r['prose']['nn_agreement']:.3f} | {r['corpus']['cosine']:.4f} ({r['corpus']['min_cosine']:.4f}) | "
              f"{r['corpus']['nn_agreement']:.3f} | {r['ratio']:.3f}× |")
    (args.out / f"zo_{args.optimizer}_k{args.groups}.json").write_text(json.dumps(
        {"report": report, "results": results, "same_ops": ops[0] == ops[1]}, indent=1, default=float))


if __name__ == "__main__":
    main()
