"""What every verb of the `edgec` command line shares: the `main` group, one-line errors with exit codes
(--debug shows tracebacks), the option parsers and the measuring options."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click

from edgec.compiler.errors import EdgecError, InputError
from edgec.targets import TargetError


def handle_errors(fn):
    """Turn every failure into one line and an exit code, unless --debug asks for the traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        debug = kwargs.get("debug", False)
        try:
            return fn(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except EdgecError as exc:
            if debug:
                raise
            click.echo(f"edgec: error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except TargetError as exc:
            if debug:
                raise
            click.echo(f"edgec: error: {exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("edgec: interrupted; nothing was written", err=True)
            sys.exit(130)
        except Exception as exc:  # noqa: BLE001 - last line of defence: never a bare traceback
            if debug:
                raise
            click.echo(f"edgec: internal error: {type(exc).__name__}: {exc} (run with --debug for details)", err=True)
            sys.exit(70)

    return wrapper


debug_option = click.option("--debug", is_flag=True, help="Show full tracebacks.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edgec")
def main() -> None:
    """edgec: compile ONNX models for edge targets (compress MLPs, verify, benchmark, gate CI)."""


def parse_pass_options(values: tuple[str, ...]) -> dict[str, dict]:
    """`--pass-option prune.keep=0.5` → {"prune": {"keep": "0.5"}}."""
    out: dict[str, dict] = {}
    for item in values:
        key, sep, value = item.partition("=")
        name, dot, option = key.partition(".")
        if not sep or not dot:
            raise InputError(f"--pass-option '{item}': expected PASS.OPTION=VALUE")
        out.setdefault(name, {})[option] = value
    return out


def parse_dims(values: tuple[str, ...]) -> dict[str, int]:
    dims = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not value.isdigit():
            raise InputError(f"--dim '{item}': expected NAME=INTEGER")
        dims[name] = int(value)
    return dims


def parse_input_values(values: tuple[str, ...]) -> dict[str, object]:
    """--input NAME=VALUE: a number (sr=16000) or a JSON list (shape=[1,3])."""
    fixed: dict[str, object] = {}
    for item in values:
        name, sep, text = item.partition("=")
        try:
            value = json.loads(text) if sep and name else None
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, (int, float, bool, list)):
            raise InputError(f"--input '{item}': expected NAME=NUMBER or NAME=[JSON list]")
        fixed[name] = value
    return fixed


FORMATS = click.Choice(["table", "json", "markdown"])


def measure_options(fn):
    for option in reversed([
        click.option("--target", "-t", default="x86", show_default=True, help="Target name or .toml profile."),
        click.option("--inputs", type=click.Path(path_type=Path), help=".npz of inputs (first sample is used)."),
        click.option("--dim", multiple=True, help="Fix a symbolic dimension: NAME=VALUE."),
        click.option("--warmup", type=click.IntRange(min=0), help="Warm-up runs (default: the target's)."),
        click.option("--runs", type=click.IntRange(min=1), help="Measured runs (default: the target's)."),
        click.option("--max-seconds", type=click.FloatRange(min=0, min_open=True), help="Stop measuring after this long."),
        click.option("--format", "fmt", type=FORMATS, default="table", show_default=True),
    ]):
        fn = option(fn)
    return fn


def executor_options(what: str):
    """--executor, --jobs and --task-threads: where `what` (a goal search's candidates, a fleet's pairs) compile."""
    def decorate(fn):
        for option in reversed([
            click.option("--executor", default="local", show_default=True,
                         help=f"Where {what} compile: local, ray (this machine's cluster, else a new local one), "
                              "ray:HOST:PORT (a cluster's head) or ray://HOST:PORT (Ray Client). Latency is always "
                              "measured here."),
            click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
                         help=f"--executor local: {what} compiled side by side in this many processes."),
            click.option("--task-threads", type=click.IntRange(min=1),
                         help="Threads each task trains with (on Ray, the CPUs it reserves; default: all here, 1 on "
                              "Ray). The same count on two executors gives the same bytes with --train-steps."),
        ]):
            fn = option(fn)
        return fn
    return decorate


def train_device_option(fn):
    return click.option("--train-device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
                        help="Where --recover (and gates) train: auto is CUDA where torch sees a GPU, else the CPU; "
                             "cuda without one is an input error. --train-steps gives the same bytes on CPUs with the "
                             "same --task-threads; on a GPU, results may differ in the last bits.")(fn)


def checked_train_device(choice: str, executor: str = "local") -> str:
    """The choice, after checking here that it exists (exit 2 for cuda without CUDA; auto and cpu need no probe; on
    Ray the cluster's GPUs are checked when it is opened)."""
    if choice == "cuda" and executor == "local":
        from edgec.compiler.driver import train_device

        train_device(choice)
    return choice


def task_gpus(executor: str, train_device: str) -> float:
    """GPUs each executor task reserves: one on Ray with --train-device cuda (Ray hides GPUs from tasks that
    reserve none); auto on Ray trains on the workers' CPUs."""
    return 1.0 if executor != "local" and train_device == "cuda" else 0.0


def check_jobs(executor: str, jobs: int) -> None:
    if jobs > 1 and executor != "local":
        raise InputError("--jobs is for --executor local; a Ray cluster runs as many tasks as it has CPUs")


DEFAULT_TRAIN_MINUTES = 5.0


def recovery_budget(recover: bool, passes: list[str] | None, minutes: float | None,
                    steps: int | None) -> tuple[float, int]:
    """CompileOptions' (recover_minutes, recover_steps) from the flags. --train-steps asks for recovery by
    itself; --train-minutes budgets --recover (5 minutes when not given) or a recover listed in --passes (whose
    own options decide when the flag is not given)."""
    if steps:
        return 0.0, steps
    if recover:
        return (DEFAULT_TRAIN_MINUTES if minutes is None else minutes), 0
    if "recover" in (passes or []) and minutes is not None:
        return minutes, 0
    return 0.0, 0
