"""The `edgec` command line (click): one module per verb, each registered on the `main` group of
`cli.common` when this package is imported. User errors print one line and exit 2; --debug shows tracebacks."""

from edgec.compiler.cli import (  # noqa: F401  (each registers its verb on main)
    bench,
    check,
    compare,
    compile,
    compile_many,
    device_setup,
    export,
    fold,
    inspect,
    recover,
    targets,
)
from edgec.compiler.cli.common import main


def run() -> None:
    """Console entry point (`edgec`)."""
    main()


__all__ = ["main", "run"]
