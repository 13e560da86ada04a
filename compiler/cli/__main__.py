"""`python -m edgec.compiler.cli`: the same as the `edgec` command."""

from edgec.compiler.cli import run

run()
