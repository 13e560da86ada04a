"""Run the edgec CLI in-process for tests (every verb registered), returning (exit code, output)."""

from __future__ import annotations

from click.testing import CliRunner

import edgec.compiler.cli_bench  # noqa: F401  (registers bench, compare, check, device-setup)
import edgec.compiler.cli_fold  # noqa: F401  (registers fold)
from edgec.compiler.cli import main


def run_cli(*args) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output
