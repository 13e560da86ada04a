"""The measuring verbs of the CLI: bench, compare, check, device-setup."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import click

from edgec.compiler.cli import _handle_errors, _parse_dims, debug_option, main
from edgec.compiler.errors import DeviceError, InputError, NegativeResult
from edgec.targets import load_target

FORMATS = click.Choice(["table", "json", "markdown"])


def measure_options(fn):
    for option in reversed([
        click.option("--target", "-t", default="x86", show_default=True, help="Target name or .toml profile."),
        click.option("--inputs", type=click.Path(path_type=Path), help=".npz of inputs (first sample is used)."),
        click.option("--dim", multiple=True, help="Fix a symbolic dimension: NAME=VALUE."),
        click.option("--warmup", type=click.IntRange(min=0), help="Warm-up runs (default: the target's)."),
        click.option("--runs", type=click.IntRange(min=1), help="Measured runs (default: the target's)."),
        click.option("--max-seconds", type=click.FloatRange(min=0, min_open=True), help="Stop measuring after this long."),
        click.option("--format", "fmt", type=FORMATS, default="table", show_default=True),
    ]):
        fn = option(fn)
    return fn


@main.command("bench")
@click.argument("model", type=click.Path(path_type=Path))
@measure_options
@click.option("--device", help="ssh://user@host[:port][?python=PATH&key=FILE] or qemu-aarch64 (default: here).")
@click.option("--save-baseline", type=click.Path(path_type=Path), help="Write the result as a baseline for check.")
@debug_option
@_handle_errors
def bench_cmd(model, target, inputs, dim, warmup, runs, max_seconds, fmt, device, save_baseline, debug):
    """Latency of MODEL: percentiles, session creation, first inference, peak RSS, size, EP placement."""
    from edgec.compiler.benchmarking import bench_model
    from edgec.compiler.devices import open_device
    from edgec.compiler.modelio import write_text_atomic

    profile = load_target(target)
    dev = open_device(device) if device else None
    result = bench_model(model, profile, inputs, _parse_dims(dim), warmup, runs, max_seconds, dev)
    if save_baseline:
        write_text_atomic(json.dumps({"edgec_baseline": 1, **result}, indent=1), save_baseline)
    click.echo(json.dumps(result, indent=2) if fmt == "json" else _bench_text(result, fmt == "markdown"))


def _bench_text(r: dict, markdown: bool) -> str:
    lat = r["latency"]
    rows = [("model", f"{r['model_path']} ({r['model_bytes']:,} bytes)"), ("device", r["device"]),
            ("providers", ", ".join(r["providers"])),
            ("runs", f"{lat['runs']}"), ("mean / p50 (ms)", f"{lat['mean_ms']:.3f} / {lat['p50_ms']:.3f}"),
            ("p90 / p95 / p99 (ms)", f"{lat['p90_ms']:.3f} / {lat['p95_ms']:.3f} / {lat['p99_ms']:.3f}"),
            ("min / max (ms)", f"{lat['min_ms']:.3f} / {lat['max_ms']:.3f}"),
            ("session creation (ms)", f"{r['session_create_ms']:.1f}"),
            ("first inference (ms)", f"{r['first_inference_ms']:.2f}"), ("peak RSS (MB)", f"{r['peak_rss_mb']:.1f}"),
            ("placement", ", ".join(f"{k}: {v} nodes" for k, v in r.get("placement", {}).items()) or "-")]
    for name, diff in r.get("host_agreement", {}).items():
        rows.append((f"max |host − device| '{name}'", f"{diff:.2e}"))
    if r.get("latency_meaningful") is False:
        rows.append(("note", "emulated device: latency is not meaningful, only correctness"))
    rows += [("note", n) for n in r.get("notes", [])]
    if markdown:
        return "| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
    return "\n".join(f"{k:>22}  {v}" for k, v in rows)


@main.command("compare")
@click.argument("model_a", type=click.Path(path_type=Path))
@click.argument("model_b", type=click.Path(path_type=Path))
@measure_options
@debug_option
@_handle_errors
def compare_cmd(model_a, model_b, target, inputs, dim, warmup, runs, max_seconds, fmt, debug):
    """A and B measured interleaved in one process: latency ratio B/A with a 95% CI, and fidelity of B to A."""
    from edgec.compiler.benchmarking import compare_models

    r = compare_models(model_a, model_b, load_target(target), inputs, _parse_dims(dim), warmup, runs, max_seconds)
    if fmt == "json":
        click.echo(json.dumps(r, indent=2))
        return
    a, b = r["latency_a"], r["latency_b"]
    lines = [f"A {r['a']}: p50 {a['p50_ms']:.3f} ms (p90 {a['p90_ms']:.3f})",
             f"B {r['b']}: p50 {b['p50_ms']:.3f} ms (p90 {b['p90_ms']:.3f})",
             f"B/A latency ratio {r['ratio']:.3f}× (95% CI {r['ratio_ci95'][0]:.3f}–{r['ratio_ci95'][1]:.3f}, "
             f"{a['runs']} interleaved runs each, {', '.join(r['providers'])})"]
    lines += [f"fidelity of B to A, '{f['name']}': cosine {f['cosine']:.6f}, max |Δ| {f['max_abs']:.2e}"
              for f in r["fidelity"]]
    lines += [f"note: {n}" for n in r["notes"]]
    click.echo("\n".join(("- " + x) if fmt == "markdown" else x for x in lines))


@main.command("check")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--baseline", type=click.Path(path_type=Path), help="A baseline written by bench --save-baseline.")
@click.option("--against", type=click.Path(path_type=Path), help="An older model, measured in the same run.")
@click.option("--threshold", type=float, default=0.10, show_default=True, help="Allowed slowdown (0.10 = 10 %).")
@click.option("--inconclusive", type=click.Choice(["pass", "fail"]), default="pass", show_default=True,
              help="Exit code when the measurement is too noisy to decide.")
@click.option("--junit", type=click.Path(path_type=Path), help="Write JUnit XML here.")
@measure_options
@debug_option
@_handle_errors
def check_cmd(model, baseline, against, threshold, inconclusive, junit, target, inputs, dim, warmup, runs,
              max_seconds, fmt, debug):
    """CI latency gate: exit 1 when MODEL is slower than the baseline by more than the threshold (and it is real)."""
    from edgec.compiler import regression
    from edgec.compiler.benchmarking import bench_model, compare_models

    if bool(baseline) == bool(against):
        raise InputError("check needs exactly one of --baseline FILE or --against OLD.onnx")
    if not 0 < threshold < 10:
        raise InputError(f"--threshold {threshold}: expected a fraction such as 0.10")
    profile, dims = load_target(target), _parse_dims(dim)
    if against:
        r = compare_models(against, model, profile, inputs, dims, warmup, runs, max_seconds)
        verdict = regression.judge(str(model), str(against), r["samples_a_ms"], r["samples_b_ms"], threshold)
    else:
        base = regression.load_baseline(baseline)
        r = bench_model(model, profile, inputs, dims, warmup, runs, max_seconds)
        verdict = regression.judge(str(model), str(baseline), base["samples_ms"], r["samples_ms"], threshold)
    for line in regression.publish(verdict, junit):
        click.echo(line)
    if fmt == "json":
        click.echo(json.dumps(verdict.as_dict(), indent=2))
    elif fmt == "markdown":
        click.echo(regression.markdown_summary(verdict))
    else:
        click.echo(f"edgec check: {verdict.status.upper()}: {verdict.message}")
    if verdict.status == "regression" or (verdict.status == "inconclusive" and inconclusive == "fail"):
        raise NegativeResult(f"latency {verdict.status}: {verdict.message}")


@main.command("device-setup")
@click.argument("device", type=click.Choice(["qemu-aarch64"]))
@debug_option
@_handle_errors
def device_setup_cmd(device, debug):
    """Build the cached aarch64 Python + ONNX Runtime used by --device qemu-aarch64 (needs root and apt)."""
    import numpy
    import onnxruntime

    from edgec.compiler.devices import ARMLAB_CACHE

    script = Path(__file__).with_name("qemu_aarch64.sh")
    env = {**os.environ, "EDGEC_ARMLAB_CACHE": str(ARMLAB_CACHE),
           "EDGEC_ARM_PACKAGES": f"onnxruntime=={onnxruntime.__version__} numpy=={numpy.__version__}"}
    # the script's output is relayed line by line through click, not handed our file descriptors: under
    # pytest, a notebook or any captured stream sys.stdout has no fileno
    with subprocess.Popen(["bash", str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, errors="replace") as proc:
        for line in proc.stdout:
            click.echo(line.rstrip("\n"), err=True)
    if proc.returncode != 0:
        raise DeviceError(f"{device}: set-up failed (exit {proc.returncode}); see the messages above")
