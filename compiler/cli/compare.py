"""`edgec compare`: two models timed interleaved in one process, and the fidelity of B to A."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgec.compiler.cli.common import debug_option, handle_errors, main, measure_options, parse_dims
from edgec.targets import load_target


@main.command("compare")
@click.argument("model_a", type=click.Path(path_type=Path))
@click.argument("model_b", type=click.Path(path_type=Path))
@measure_options
@debug_option
@handle_errors
def compare_cmd(model_a, model_b, target, inputs, dim, warmup, runs, max_seconds, fmt, debug):
    """A and B measured interleaved in one process: latency ratio B/A with a 95% CI, and fidelity of B to A."""
    from edgec.compiler.bench.benchmarking import compare_models

    r = compare_models(model_a, model_b, load_target(target), inputs, parse_dims(dim), warmup, runs, max_seconds)
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
