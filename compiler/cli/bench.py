"""`edgec bench`: the latency of one model, here, over ssh or on emulated aarch64."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgec.compiler.cli.common import debug_option, handle_errors, main, measure_options, parse_dims
from edgec.targets import load_target


@main.command("bench")
@click.argument("model", type=click.Path(path_type=Path))
@measure_options
@click.option("--device", help="ssh://user@host[:port][?python=PATH&key=FILE] or qemu-aarch64 (default: here).")
@click.option("--save-baseline", type=click.Path(path_type=Path), help="Write the result as a baseline for check.")
@debug_option
@handle_errors
def bench_cmd(model, target, inputs, dim, warmup, runs, max_seconds, fmt, device, save_baseline, debug):
    """Latency of MODEL: percentiles, session creation, first inference, peak RSS, size, EP placement."""
    from edgec.compiler.bench.benchmarking import bench_model
    from edgec.compiler.bench.devices import open_device
    from edgec.compiler.modelio import write_text_atomic

    profile = load_target(target)
    dev = open_device(device) if device else None
    result = bench_model(model, profile, inputs, parse_dims(dim), warmup, runs, max_seconds, dev)
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
