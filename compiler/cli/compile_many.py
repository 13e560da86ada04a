"""`edgec compile-many`: several models for several targets, as tasks of one executor; a summary table, one
model and one report per pair, exit 1 naming the pairs that failed their gate."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgec.compiler.cli.common import (
    check_jobs,
    checked_train_device,
    debug_option,
    executor_options,
    handle_errors,
    main,
    parse_pass_options,
    recovery_budget,
    task_gpus,
    train_device_option,
)
from edgec.compiler.errors import InputError, NegativeResult


@main.command("compile-many")
@click.argument("models", nargs=-1, type=click.Path(path_type=Path))
@click.option("--manifest", type=click.Path(path_type=Path),
              help="A TOML fleet: [[model]] entries with path, calib / calib_text + tokenizer / calib_dir, targets, "
                   "min_cosine, gate_outputs, passes (see the README).")
@click.option("--target", "-t", "targets", default="x86", show_default=True,
              help="Comma-separated targets every model is compiled for (built-in names or .toml profiles).")
@click.option("--out-dir", "-o", type=click.Path(path_type=Path), default=Path("build/fleet"), show_default=True,
              help="Where each MODEL.<target>.onnx and its .report.json go.")
@executor_options("the pairs")
@click.option("--calib", type=click.Path(path_type=Path),
              help=".npz of inputs, for every model given on the line (a manifest's models name their own).")
@click.option("--passes", help="Comma-separated pass list (default: each target's pipeline).")
@click.option("--pass-option", multiple=True, help="PASS.OPTION=VALUE, repeatable.")
@click.option("--min-cosine", type=float, help="Fidelity gate (overrides the targets'); 0 turns it off.")
@click.option("--recover", is_flag=True, help="Distil each compressed model against its original (torch).")
@click.option("--train-minutes", type=float, help="Budget of --recover per pair (default 5).")
@click.option("--train-steps", type=click.IntRange(min=1), help="Budget of --recover in steps (reproducible).")
@train_device_option
@click.option("--runs", type=click.IntRange(min=1), help="Latency runs (default: the target's).")
@click.option("--no-measure", is_flag=True, help="Skip the latency measurement.")
@click.option("--allow-synthetic", is_flag=True, help="Run lossy passes on synthesized inputs (unsafe for real models).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--force", is_flag=True, help="Replace existing outputs.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "markdown"]), default="table", show_default=True)
@debug_option
@handle_errors
def compile_many_cmd(models, manifest, targets, out_dir, executor, jobs, task_threads, calib, passes, pass_option, min_cosine,
                     recover, train_minutes, train_steps, train_device, runs, no_measure, allow_synthetic, seed, force, fmt, debug):
    """Compile MODELS (or a --manifest fleet) for every --target; exit 1 if any pair fails its gate."""
    from edgec.compiler.calibration.spec import CalibrationSpec
    from edgec.compiler.driver import CompileOptions
    from edgec.compiler.executors import open_executor
    from edgec.compiler.modelio import write_text_atomic
    from edgec.compiler.progress import task_board
    from edgec.compiler.tasks.fleet import Member, compile_many, members_from_manifest

    if min_cosine is not None and not 0 <= min_cosine <= 1:
        raise InputError(f"--min-cosine {min_cosine}: must lie in [0, 1]")
    target_names = tuple(t.strip() for t in targets.split(",") if t.strip())
    names = [p.strip() for p in passes.split(",") if p.strip()] if passes else None
    recover_minutes, recover_steps = recovery_budget(recover, names, train_minutes, train_steps)
    base = CompileOptions(passes=names,
                          pass_options=parse_pass_options(pass_option), calibration=CalibrationSpec(npz=calib),
                          min_cosine=min_cosine, seed=seed, measure=not no_measure, runs=runs, force=True,
                          recover_minutes=recover_minutes, recover_steps=recover_steps, allow_synthetic=allow_synthetic,
                          task_threads=task_threads or 0, train_device=checked_train_device(train_device, executor))
    members = [Member(m, base, target_names) for m in models]
    if manifest is not None:
        members += members_from_manifest(manifest, base, target_names)
    if not members:
        raise InputError("no model: give MODEL… or --manifest FLEET.toml")
    check_jobs(executor, jobs)
    pool = open_executor(executor, jobs, task_threads or 0, task_gpus(executor, train_device))
    try:
        with task_board(f"compile-many on {pool.name} ({pool.workers} workers)") as events:
            results = compile_many(members, out_dir, pool, events, force)
    finally:
        pool.close()
    rows = [r.row() for r in results]
    write_text_atomic(json.dumps(rows, indent=1), out_dir / "summary.json")
    click.echo(json.dumps(rows, indent=1) if fmt == "json" else _table(rows, fmt == "markdown"))
    _exit_status(rows)


def _table(rows: list[dict], markdown: bool) -> str:
    head = ["model", "target", "status", "min cosine", "latency ×", "bytes ×", "task s", "attempts"]
    body = [[Path(r["model"]).name, r["target"], r["status"], _num(r["min_cosine"], 6 if r["status"] != "ok" else 4),
             _num(r["latency_ratio"], 3),
             _num(r["bytes_ratio"], 3), _num(r.get("seconds"), 1), str(r.get("attempts", ""))] for r in rows]
    notes = [f"  {Path(r['model']).name} → {r['target']}: {r['detail']}" for r in rows if r["detail"]]
    if markdown:
        return "\n".join(["| " + " | ".join(line) + " |" for line in [head, ["---"] * len(head), *body]]
                         + ([""] + notes if notes else []))
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    lines = ["  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)) for line in [head, *body]]
    return "\n".join(lines + notes)


def _num(value, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _exit_status(rows: list[dict]) -> None:
    broken = [f"{Path(r['model']).name} → {r['target']} ({r['status']})" for r in rows if r["status"] in
              ("input error", "edgec error")]
    failed = [f"{Path(r['model']).name} → {r['target']}" for r in rows if r["status"] == "failed gate"]
    gate = f"{len(failed)} pair(s) failed their fidelity gate: {', '.join(failed)}" if failed else ""
    if broken:
        raise InputError("; ".join([f"{len(broken)} pair(s) could not be compiled: {', '.join(broken)}"] +
                                   ([gate] if gate else [])))
    if failed:
        raise NegativeResult(gate)
