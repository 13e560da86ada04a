"""`make bench-int8`: edgec's int8 of MiniLM alone against ONNX Runtime's `quantize_dynamic`, same data.

Models: the fp32 original; ONNX Runtime's `quantize_dynamic` (per-channel, its default op types: the embedding
table too) with 8-bit weights and with 7-bit (`reduce_range`, what edgec's x86 target uses so that CPUs without
VNNI compute the same numbers); edgec `--passes cleanup,quantize` for x86 by default (`smooth=auto`,
`outliers=auto`: activation smoothing and outlier channels apart only where int8 misses the floor without them),
with `smooth=true` (`passes/int8/smooth.py`), `outliers=true` (`passes/int8/outliers.py`) and both, at
`--min-cosine 0.995` (the floors follow the gate: the variants that meet it are timed), after ONNX Runtime's
attention fusion (`fuse`: QAttention), and for arm. Judged like `make bench-frontier` (held-out prose and WordNet's usage
examples: mean cosine of the sentence embedding, worst sentence, nearest-neighbour agreement) and timed in one
interleaved run at batch 1, sequence 128. Usage:

    python -m edgec.samples.bench_int8 [--out build/int8] [--runs 40]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgec.samples.bench_frontier import OUTPUT, _fidelity, _held_out_sets, _latency_ratios, _prepare, _write


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="edgec.samples.bench_int8")
    parser.add_argument("--out", type=Path, default=Path("build/int8"))
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--other", type=int, default=200, help="sentences of the other domain")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    base, calib = _prepare(args.out)
    models = {"original (fp32)": base,
              "ORT int8 (quantize_dynamic defaults)": _ort_int8(base, args.out, reduce_range=False),
              "ORT int8, 7-bit weights": _ort_int8(base, args.out, reduce_range=True),
              "edgec int8 x86 (7-bit), the default (smooth=auto: not needed)": _edgec_int8(base, calib, "x86", args.out),
              "edgec int8 x86 (7-bit), smooth=true": _edgec_int8(base, calib, "x86", args.out, smooth="true"),
              "edgec int8 x86 (7-bit), outliers=true": _edgec_int8(base, calib, "x86", args.out, outliers="true"),
              "edgec int8 x86 (7-bit), smooth=true outliers=true":
                  _edgec_int8(base, calib, "x86", args.out, smooth="true", outliers="true"),
              "edgec int8 x86 (7-bit), --min-cosine 0.995 (variants timed)":
                  _edgec_int8(base, calib, "x86", args.out, min_cosine=0.995),
              "edgec fuse + int8 x86 (QAttention), smooth=true":
                  _edgec_int8(base, calib, "x86", args.out, fuse=True, smooth="true"),
              "edgec int8 arm, smooth=true": _edgec_int8(base, calib, "arm", args.out, smooth="true")}
    sets = _held_out_sets(base, calib, args.other)
    rows = [{"model": label, "path": str(path), "file_mb": path.stat().st_size / 1e6,
             **{name: _fidelity(base, path, feeds) for name, feeds in sets.items()}} for label, path in models.items()]
    for row, ratio in zip(rows, _latency_ratios(list(models.values()), args.runs), strict=True):
        row.update(ratio)
    _write(rows, sets, args.out, args.runs)


def _ort_int8(base: Path, folder: Path, reduce_range: bool) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = folder / f"ort_int8{'_7bit' if reduce_range else ''}.onnx"
    quantize_dynamic(base, out, per_channel=True, reduce_range=reduce_range, weight_type=QuantType.QInt8)
    return out


def _edgec_int8(base: Path, calib: Path, target: str, folder: Path, fuse: bool = False, min_cosine: float | None = None,
                **quantize_options: str) -> Path:
    """`edgec compile --passes cleanup[,fuse],quantize` (the target's quantize options but those given, the
    compile's own gate, or `min_cosine`: the floors follow it)."""
    from edgec.compiler.calibration.spec import CalibrationSpec
    from edgec.compiler.driver import CompileOptions, compile_model
    from edgec.targets import load_target

    given = "".join(f"_{k}-{v}" for k, v in quantize_options.items()) + (f"_gate-{min_cosine}" if min_cosine else "")
    out = folder / f"edgec_int8_{target}{given or '_default'}{'_fused' if fuse else ''}.onnx"
    profile = load_target(target)
    quantize = {**profile.options_for("quantize"), **quantize_options}   # given options replace the target's
    options = CompileOptions(output=out, passes=["cleanup", *(["fuse"] if fuse else []), "quantize"],
                             calibration=CalibrationSpec(npz=calib), force=True, gate_outputs=[OUTPUT],
                             pass_options={"quantize": quantize} if quantize_options else {}, min_cosine=min_cosine)
    report = compile_model(base, profile, options)
    print(f"{out.stem}: {report.pipeline}; "
          + "; ".join(n for p in report.passes for n in p.notes if "smooth" in n or "outlier" in n or "float" in n))
    return out


if __name__ == "__main__":
    main()
