"""`edgec inspect`: what a model holds, and every MLP block (and near-miss) the passes would see."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgec.compiler.cli.common import debug_option, handle_errors, main


@main.command("inspect")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@debug_option
@handle_errors
def inspect_cmd(model, fmt, debug):
    """Opset, inputs/outputs, op histogram, parameters and every MLP block (and near-miss) in MODEL."""
    from edgec.compiler.inspect_model import format_inspection, inspect_model

    info = inspect_model(model)
    click.echo(json.dumps(info, indent=2) if fmt == "json" else format_inspection(info))
