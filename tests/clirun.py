"""Run the edgec CLI in-process for tests (importing the package registers every verb), returning (exit code,
output)."""

from __future__ import annotations

from click.testing import CliRunner

from edgec.compiler.cli import main


def run_cli(*args) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output
