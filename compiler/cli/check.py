"""`edgec check`: the CI latency gate (exit 1 on a real regression)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgec.compiler.cli.common import debug_option, handle_errors, main, measure_options, parse_dims
from edgec.compiler.errors import InputError, NegativeResult
from edgec.targets import load_target


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
@handle_errors
def check_cmd(model, baseline, against, threshold, inconclusive, junit, target, inputs, dim, warmup, runs,
              max_seconds, fmt, debug):
    """CI latency gate: exit 1 when MODEL is slower than the baseline by more than the threshold (and it is real)."""
    from edgec.compiler.bench import regression
    from edgec.compiler.bench.benchmarking import bench_model, compare_models

    if bool(baseline) == bool(against):
        raise InputError("check needs exactly one of --baseline FILE or --against OLD.onnx")
    if not 0 < threshold < 10:
        raise InputError(f"--threshold {threshold}: expected a fraction such as 0.10")
    profile, dims = load_target(target), parse_dims(dim)
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
