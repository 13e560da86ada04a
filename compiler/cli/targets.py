"""`edgec targets`: the built-in target profiles and which of their execution providers this machine has."""

from __future__ import annotations

import json

import click

from edgec.compiler.cli.common import debug_option, handle_errors, main
from edgec.targets import builtin_target_names, load_target


@main.command("targets")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@debug_option
@handle_errors
def targets_cmd(fmt, debug):
    """List the built-in target profiles and which of their execution providers this machine has."""
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    rows = []
    for name in builtin_target_names():
        p = load_target(name)
        eps = [f"{ep}{'' if ep in available else ' (absent)'}" for ep in p.execution_providers]
        rows.append({"name": name, "description": p.description, "execution_providers": eps,
                     "pipeline": list(p.pipeline), "output_format": p.output_format, "min_cosine": p.min_cosine})
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        click.echo(f"{r['name']:8} {r['description']}")
        click.echo(f"{'':8} EPs: {', '.join(r['execution_providers'])}; pipeline: {','.join(r['pipeline'])}; "
                   f"format: {r['output_format']}; min cosine: {r['min_cosine']}")
