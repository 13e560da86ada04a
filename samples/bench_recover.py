"""Recovery distillation on the real all-MiniLM-L6-v2 at 50 % of MLP units kept (`make bench-recover`), and
optionally with attention heads removed too (`--heads 0.75`).

Data: the text file given to the compile starts with the 296 evaluation sentences (`sentences.txt`: the
passes' calibration statistics, the early-stopping split and the final held-out split, none trained on)
followed by WordNet's usage examples and the fortunes' sentences (the training stream, `corpus.py`).
Every budget is its own compile (its own warm-up and cosine schedule over that budget). Then the model of
the largest budget is quantized to int8 and timed interleaved against ONNX Runtime's int8 of the original.

    python -m edgec.samples.bench_recover [--out build/recover] [--budgets 0,5,15,30] [--keep 0.5] [--scope model]

`make bench-recover` runs it at 50 % kept with the units split by output fidelity (prune scope=model; 0, 5,
15, 30 minutes) and at 75 % kept, the same fraction in every block (0, 5 minutes).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _text_file(out: Path, limit: int) -> tuple[Path, int]:
    """The evaluation sentences first (the compile's calibration and held-out lines), then the corpus."""
    from edgec.samples.corpus import write_corpus
    from edgec.samples.minilm import sentences

    path = out / "eval_then_corpus.txt"
    write_corpus(path, limit, first=sentences())
    return path, len(sentences())


def _held_out_fidelity(original: Path, compiled: Path, feeds: list[dict]) -> dict:
    import onnxruntime as ort

    from edgec.runtime.fidelity import compare_outputs, token_mask

    a = ort.InferenceSession(str(original), providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(str(compiled), providers=["CPUExecutionProvider"])
    ref = [a.run(["sentence_embedding"], f)[0] for f in feeds]
    got = [b.run(["sentence_embedding"], f)[0] for f in feeds]
    fid = compare_outputs("sentence_embedding", ref, got, [token_mask(f) for f in feeds])
    return {"mean_cosine": fid.cosine, "min_cosine": fid.min_cosine}


def main(argv: list[str] | None = None) -> None:
    from edgec.compiler.calibration.loading import split_feeds
    from edgec.compiler.calibration.spec import CalibrationSpec
    from edgec.compiler.driver import CompileOptions, compile_model
    from edgec.compiler.export import export
    from edgec.samples.minilm import model_dir, tokenize
    from edgec.targets import load_target

    parser = argparse.ArgumentParser(prog="edgec.samples.bench_recover")
    parser.add_argument("--out", type=Path, default=Path("build/recover"))
    parser.add_argument("--budgets", default="0,5,15,30", help="training minutes, one compile each")
    parser.add_argument("--keep", type=float, default=0.5)
    parser.add_argument("--scope", default="layer", help="prune.scope: layer (the same keep in every block) | model")
    parser.add_argument("--corpus-lines", type=int, default=150_000)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--lr", type=float, default=None, help="recover.lr (default: the pass's)")
    parser.add_argument("--heads", type=float, default=1.0,
                        help="heads.keep: the fraction of attention heads kept as well (1: no heads pass)")
    parser.add_argument("--selector", default="obs", choices=["obs", "frank-wolfe", "gates"],
                        help="who chooses the units: prune's OBS or Frank–Wolfe order (and heads' group OBS), or "
                             "the gates pass trained for --gates-minutes before recovery")
    parser.add_argument("--gates-minutes", type=float, default=5.0)
    parser.add_argument("--int8-tail", type=float, default=0.0,
                        help="recover.int8_tail: the last fraction of each budget trained through int8 rounding")
    parser.add_argument("--blockwise", type=float, default=None,
                        help="recover.blockwise (default: the pass's, 0.3; 0: end to end only): the first fraction of "
                             "each budget trains the MLP blocks alone on the "
                             "original's cached activations")
    parser.add_argument("--params", default="full", choices=["full", "grasp"],
                        help="recover.params: every weight, or GRASP group affines only")
    parser.add_argument("--method", default="backprop", choices=["backprop", "zo"],
                        help="recover.method: backprop through the torch view, or zeroth-order through ONNX Runtime")
    parser.add_argument("--groups", type=int, default=None, help="recover.groups (GRASP groups per site)")
    parser.add_argument("--norms", action="store_true", help="recover.norms: LayerNorm outputs are GRASP sites too")
    parser.add_argument("--affine-lr", type=float, default=None, help="recover.affine_lr (GRASP's step)")
    parser.add_argument("--zo-optimizer", default=None, choices=["gauss-newton", "spsa", "jacobian"],
                        help="recover.zo_optimizer (with --method zo)")
    parser.add_argument("--epsilon", type=float, default=None, help="recover.epsilon (zeroth-order perturbation)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    base = args.out / "minilm.onnx"
    if not base.exists():
        export("minilm", base)
    text, n_eval = _text_file(args.out, args.corpus_lines)
    from edgec.samples.minilm import sentences

    held = split_feeds([tokenize([s]) for s in sentences()])[1]       # the driver's final held-out split
    target = load_target("x86")
    results = {}
    budgets = sorted({float(m) for m in args.budgets.split(",")})
    tag = f"keep{args.keep:g}" + ("" if args.scope == "layer" else f"_{args.scope}") \
        + (f"_int8tail{args.int8_tail:g}" if args.int8_tail else "") + (f"_bw{args.blockwise:g}" if args.blockwise is not None else "") + (f"_heads{args.heads:g}" if args.heads < 1 else "") \
        + ("" if args.selector == "obs" else f"_{args.selector}{args.gates_minutes:g}" if args.selector == "gates"
           else f"_{args.selector}") \
        + ("" if args.params == "full" and args.method == "backprop" else f"_grasp_{args.method}") \
        + (f"_k{args.groups}" if args.groups else "") + ("_norms" if args.norms else "") \
        + (f"_alr{args.affine_lr:g}" if args.affine_lr else "") \
        + (f"_{args.zo_optimizer}" if args.zo_optimizer else "") + (f"_eps{args.epsilon:g}" if args.epsilon else "")
    # int8 below is the x86 target's (7-bit weights): the int8 tail rounds the same way
    recover_options = {**({"lr": args.lr} if args.lr else {}),
                       **({"params": args.params, "method": args.method} if args.params != "full" or args.method != "backprop"
                          else {}),
                       **({"groups": args.groups} if args.groups else {}),
                       **({"blockwise": args.blockwise} if args.blockwise is not None else {}), **({"norms": True} if args.norms else {}),
                       **({"affine_lr": args.affine_lr} if args.affine_lr else {}),
                       **({"zo_optimizer": args.zo_optimizer} if args.zo_optimizer else {}),
                       **({"epsilon": args.epsilon} if args.epsilon else {}),
                       **({"int8_tail": args.int8_tail, "int8_reduce_range": "true"} if args.int8_tail else {})}
    for minutes in budgets:
        out = args.out / f"{tag}_recover{minutes:g}.onnx"
        passes, options = _pipeline(args)
        report = compile_model(base, target, CompileOptions(
            output=out, passes=passes, calibration=CalibrationSpec(text=text, tokenizer=model_dir(), count=n_eval),
            pass_options={**options, **({"recover": recover_options} if recover_options else {})},
            recover_minutes=minutes, min_cosine=0.0, force=True,
            measure=False, gate_outputs=["sentence_embedding"]))
        recover = next((p for p in report.passes if p.name == "recover"), None)
        results[minutes] = {"held_out": _held_out_fidelity(base, out, held), "path": out,
                            "steps": recover.stats.get("steps", 0) if recover else 0,
                            "curve": recover.stats.get("curve", []) if recover else []}
        print(f"keep {args.keep:.0%}, {minutes:g} min of recovery ({results[minutes]['steps']} steps): held-out "
              f"sentence cosine {results[minutes]['held_out']['mean_cosine']:.4f} "
              f"(min {results[minutes]['held_out']['min_cosine']:.4f})", flush=True)
        for step in report.passes:
            if step.name in ("recover", "gates", "heads"):
                for note in step.notes:
                    print(f"  {step.name}: {note}", flush=True)
    _print_table(results, args.keep, args.scope)
    _int8(base, results[budgets[-1]]["path"], held, target, args)
    (args.out / f"recover_{tag}.json").write_text(json.dumps(
        {str(k): {**v, "path": str(v["path"])} for k, v in results.items()}, indent=1, default=float))


def _pipeline(args) -> tuple[list[str], dict]:
    """The passes and their options that remove the units (recovery is added by the compile)."""
    if args.selector == "gates":
        return ["cleanup", "gates"], {"gates": {"keep": args.keep, "heads": args.heads, "minutes": args.gates_minutes}}
    options = {"prune": {"keep": args.keep, "scope": args.scope, "score": args.selector}}
    if args.heads < 1:
        return ["cleanup", "heads", "prune"], {**options, "heads": {"keep": args.heads}}
    return ["cleanup", "prune"], options


def _print_table(results: dict, keep: float, scope: str) -> None:
    split = " (units per block chosen by output fidelity)" if scope == "model" else ""
    print(f"\nall-MiniLM-L6-v2, {keep:.0%} of MLP units kept{split}, held-out sentence-embedding cosine (74 sentences):")
    print("| training minutes | steps | mean cosine | min cosine |\n|---|---|---|---|")
    for minutes, r in results.items():
        print(f"| {minutes:g} | {r['steps']} | {r['held_out']['mean_cosine']:.4f} | {r['held_out']['min_cosine']:.4f} |")


def _int8(base: Path, recovered: Path, held: list[dict], target, args) -> None:
    from edgec.compiler.driver import CompileOptions, compile_model, session_config
    from edgec.runtime.inputs import input_specs, synthesize_feed
    from edgec.runtime.latency import LatencyStats, measure_interleaved
    from edgec.runtime.session import create_session

    paths = {"ORT int8 per-channel (original)": base, "recovered + int8": recovered}
    quantized = {}
    for label, src in paths.items():
        out = args.out / f"{src.stem}.int8.onnx"
        compile_model(src, target, CompileOptions(output=out, passes=["cleanup", "quantize"], min_cosine=0.0,
                                                  force=True, measure=False, allow_synthetic=True))   # dynamic int8
                                                  # needs no data; fidelity is measured below on `held`
        quantized[label] = out
    config = session_config(target)
    sessions = [create_session(str(p), config) for p in quantized.values()]
    feed = synthesize_feed(input_specs(sessions[0]), np.random.default_rng(0), {"batch": 1, "sequence": 128})
    samples = measure_interleaved([lambda s=s: s.run(None, feed) for s in sessions], 5, args.runs)
    p50 = [LatencyStats.from_samples(x).p50_ms for x in samples]
    print(f"\nint8, batch 1, sequence 128, {args.runs} interleaved runs:")
    for (label, path), p in zip(quantized.items(), p50, strict=True):
        fid = _held_out_fidelity(base, path, held)
        print(f"  {label:<32} p50 {p:7.3f} ms  {p / p50[0]:.3f}× of ORT int8   held-out sentence cosine "
              f"{fid['mean_cosine']:.4f} (min {fid['min_cosine']:.4f})")


if __name__ == "__main__":
    main()
