"""`edgec fold`: fine-tuned deltas into a base model, and compact per-variant delta files."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

from edgec.compiler.cli.common import debug_option, handle_errors, main
from edgec.compiler.errors import InputError


@main.command("fold")
@click.argument("base", type=click.Path(path_type=Path))
@click.argument("tuned", type=click.Path(path_type=Path), required=False)
@click.option("--output", "-o", type=click.Path(path_type=Path), required=True)
@click.option("--method", type=click.Choice(["exact", "dare", "darex-q", "magnitude"]), default="exact",
              show_default=True)
@click.option("--drop", type=float, default=0.9, show_default=True, help="Fraction of each delta dropped.")
@click.option("--per-layer-q", is_flag=True, help="DAREx-q: a closed-form q per MatMul weight after the global q.")
@click.option("--calib", type=click.Path(path_type=Path), help=".npz of unlabeled inputs (q search and verification).")
@click.option("--emit-delta", type=click.Path(path_type=Path), help="Also write a compact delta file for this variant.")
@click.option("--apply", "apply_path", type=click.Path(path_type=Path), help="Rebuild a variant: BASE + this delta.")
@click.option("--lora", "lora_path", type=click.Path(path_type=Path), help="Fold a PEFT LoRA adapter folder into BASE.")
@click.option("--grasp", "grasp_path", type=click.Path(path_type=Path),
              help="Fold a GRASP adapter (.safetensors/.npz of <module>.gamma/.beta per group) into BASE.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--force", is_flag=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@debug_option
@handle_errors
def fold_cmd(base, tuned, output, method, drop, per_layer_q, calib, emit_delta, apply_path, lora_path, grasp_path, seed,
             force, fmt, debug):
    """Fold TUNED − BASE (pruned by METHOD) into one model verified against TUNED; or --apply a delta file."""
    from edgec.compiler.fold.driver import apply, fold

    if lora_path or grasp_path:
        from edgec.compiler.fold.grasp import fold_grasp
        from edgec.compiler.fold.lora import fold_lora

        result = fold_lora(base, lora_path, output, force) if lora_path else fold_grasp(base, grasp_path, output, force)
        what = f"LoRA modules (scale {result['scale']:g})" if lora_path else "modules' GRASP affines"
        click.echo(json.dumps(result, indent=2) if fmt == "json" else
                   f"folded {len(result['folded'])} {what} into {output}"
                   + "".join(f"\n  note: not folded: {m}" for m in result["unmatched"]))
        return
    if apply_path:
        apply(base, apply_path, output, force)
        click.echo(f"wrote {output} ({output.stat().st_size:,} bytes) from {base} + {apply_path}")
        return
    if tuned is None:
        raise InputError("fold needs BASE and TUNED models (or BASE --apply DELTA)")
    report = fold(base, tuned, output, method, drop, seed, calib, emit_delta, per_layer_q, force)
    if fmt == "json":
        click.echo(json.dumps(asdict(report), indent=2))
        return
    click.echo(f"folded {tuned} into {base} with {method} (drop {drop}): {report.matched} weights matched, "
               f"{report.pruned_tensors} pruned, {report.kept_fraction:.1%} of their delta kept"
               + (f", q = {report.q:.4f}" if report.q else ""))
    for f in report.fidelity:
        click.echo(f"  fidelity to the fine-tuned model, '{f['name']}': cosine {f['cosine']:.6f}, "
                   f"max |Δ| {f['max_abs']:.2e}" + (f", top-1 {f['top1_agreement']:.3f}" if "top1_agreement" in f else ""))
    if report.delta_bytes is not None:
        click.echo(f"  delta file {report.delta_file}: {report.delta_bytes:,} bytes = "
                   f"{report.delta_bytes / report.tuned_bytes:.1%} of the fine-tuned model")
    for note in report.notes:
        click.echo(f"  note: {note}")
    click.echo(f"  wrote {output}")
