"""`edgec recover`: re-tune a compiled model against the original by forward passes only (zeroth-order GRASP),
on this machine or on the device it runs on, whose data never leaves it."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import click

from edgec.compiler.cli.common import debug_option, handle_errors, main


@main.command("recover")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--teacher", type=click.Path(path_type=Path), required=True,
              help="The original model whose outputs MODEL is tuned to match.")
@click.option("--data", required=True,
              help=".npz of inputs (arrays keyed by input name, samples along axis 0); with --device, a path on the "
                   "device (absolute or from the login directory): the data never leaves it.")
@click.option("--output", "-o", type=click.Path(path_type=Path), required=True)
@click.option("--device", help="ssh://user@host[:port][?python=…&key=…]: tune on that device with its numpy + onnxruntime.")
@click.option("--minutes", type=float, help="Tuning budget (wall clock; default 5).")
@click.option("--groups", type=int, help="GRASP groups (one γ and β each) per site (default 8, as recover's).")
@click.option("--sites", type=click.Choice(["linear", "mlp"]), help="Every linear layer's output (default) or the MLP blocks'.")
@click.option("--norms", is_flag=True, help="LayerNorm outputs are sites too.")
@click.option("--optimizer", type=click.Choice(["auto", "gauss-newton", "spsa", "jacobian"]), default="auto",
              show_default=True, help="Least squares in each step's random subspace, ZO-ASR's SPSA gradient with Adam, "
                                      "or one Gauss-Newton system pooled over all batches from exact finite differences; "
                                      "auto: gauss-newton for int8/QDQ models, jacobian for float ones.")
@click.option("--queries", type=int, help="Random directions per step (default 8).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--force", is_flag=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@debug_option
@handle_errors
def recover_cmd(model, teacher, data, output, device, minutes, groups, sites, norms, optimizer, queries, seed, force, fmt,
                debug):
    """Tune MODEL's group affines (one scale and shift per channel group after each layer) so its outputs match
    TEACHER's on DATA, by forward passes through ONNX Runtime only; fold them into MODEL's constants (same ops)."""
    from edgec.compiler.errors import InputError
    from edgec.compiler.retune import retune
    from edgec.passes.recovery.options import AffineSettings
    from edgec.runtime.zo.tuner import ZOSettings

    if (minutes is not None and minutes <= 0) or (groups is not None and groups < 1) or (queries is not None and queries < 1):
        raise InputError("--minutes must be > 0, --groups and --queries ≥ 1")
    settings = ZOSettings(optimizer=optimizer, seed=seed, epsilon=0.0,     # ε 0: chosen by the sites (step_rule)
                          **_given(minutes=minutes, queries=queries))
    affine = AffineSettings(norms=norms, **_given(groups=groups, sites=sites))
    report = retune(model, teacher, output, data, device, settings, affine, force=force)
    if fmt == "json":
        click.echo(json.dumps(report, indent=2))
        return
    where = report["device"]
    click.echo(f"tuned {report['trainable']} group-affine numbers at {report['sites']} sites on {where} "
               f"({report['optimizer']}): "
               f"{report['steps']} steps, {report['forward_passes']} forward passes in {report['seconds']:.0f} s "
               f"({report['training_batches']} training batches, {report['held_out_samples']} held-out samples)")
    click.echo(f"  held-out score {report['held_out_before']:.4f} → {report['held_out_best']:.4f}"
               + ("" if report["changed"] else " (no gain: the model is written unchanged)"))
    counts = Counter(report["groups_per_site"].values())
    click.echo("  groups per site: " + ", ".join(f"{k} at {n} sites" for k, n in sorted(counts.items())))
    if report["changed"]:
        click.echo(f"  folded into the model's constants (same ops); fold check {report['fold_rel_error']:.1e} relative")
    click.echo(f"  wrote {report['written']}")


def _given(**values) -> dict:
    """The options given on the line (the settings' own defaults stand for the rest)."""
    return {k: v for k, v in values.items() if v is not None}
