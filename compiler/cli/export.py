"""`edgec export`: a sample, a module factory or a Hugging Face folder to ONNX."""

from __future__ import annotations

from pathlib import Path

import click

from edgec.compiler.cli.common import debug_option, handle_errors, main


@main.command("export")
@click.argument("source")
@click.option("--output", "-o", type=click.Path(path_type=Path), required=True)
@click.option("--exporter", type=click.Choice(["legacy", "dynamo"]), default="legacy", show_default=True,
              help="torch.onnx exporter (ignored for Hugging Face directories, which go through optimum).")
@click.option("--opset", type=int, default=17, show_default=True)
@click.option("--force", is_flag=True, help="Replace an existing output file.")
@debug_option
@handle_errors
def export_cmd(source, output, exporter, opset, force, debug):
    """Export SOURCE (a sample name, package.module:factory, or a Hugging Face model directory) to ONNX."""
    from edgec.compiler.export import export

    path = export(source, output, exporter, opset, force)
    click.echo(f"wrote {path} ({path.stat().st_size:,} bytes)")
