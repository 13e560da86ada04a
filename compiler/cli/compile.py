"""`edgec compile`: rewrite a model for a target, verify it, write it with a report."""

from __future__ import annotations

from pathlib import Path

import click

from edgec.compiler.cli.common import (
    check_jobs,
    checked_train_device,
    debug_option,
    executor_options,
    handle_errors,
    main,
    parse_dims,
    parse_input_values,
    parse_pass_options,
    recovery_budget,
    task_gpus,
    train_device_option,
)
from edgec.compiler.errors import InputError, NegativeResult
from edgec.targets import load_target


@main.command("compile")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--target", "-t", default="x86", show_default=True, help="Built-in target name or a .toml profile.")
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Output model (default MODEL.<target>.onnx).")
@click.option("--passes", help="Comma-separated pass list (default: the target's pipeline).")
@click.option("--pass-option", multiple=True, help="PASS.OPTION=VALUE, repeatable.")
@click.option("--calib", type=click.Path(path_type=Path), help=".npz of calibration inputs keyed by input name.")
@click.option("--calib-text", type=click.Path(path_type=Path), help="Unlabeled text, one per line (needs --tokenizer).")
@click.option("--tokenizer", type=click.Path(path_type=Path), help="Hugging Face tokenizer folder for --calib-text.")
@click.option("--calib-dir", type=click.Path(path_type=Path), help="A folder of images (resized to the input).")
@click.option("--image-preset", type=click.Choice(["imagenet", "clip", "unit", "signed", "raw"]),
              help="How --calib-dir pixels are normalized (default: preprocessor_config.json beside the model).")
@click.option("--image-resize", type=click.Choice(["stretch", "crop", "pad"]),
              help="How --calib-dir images are fitted to the input (default stretch, or the config's crop).")
@click.option("--calib-hook", help="module:function yielding feed dicts (given the input specs).")
@click.option("--eval-text", type=click.Path(path_type=Path),
              help="A second held-out text source (another domain than the calibration text), judged and gated "
                   "like the held-out inputs; needs --tokenizer.")
@click.option("--train-text", type=click.Path(path_type=Path),
              help="A general text corpus mixed into --recover's training stream (a feed of each in turn), so that "
                   "fidelity carries beyond the calibration text's domain; needs --tokenizer.")
@click.option("--calib-count", type=click.IntRange(min=1), default=96, show_default=True,
              help="Items of --calib-text/-dir/-hook used for calibration; the rest train --recover.")
@click.option("--recover", is_flag=True, help="Distil the compressed model against the original (torch).")
@click.option("--train-minutes", type=float,
              help="Budget of --recover, default 5 (with --goal: of the whole search, shared by successive halving).")
@click.option("--train-steps", type=click.IntRange(min=1),
              help="Budget of --recover in optimizer steps instead of minutes: the same model on any CPU machine and any "
                   "--executor with the same --task-threads (implies --recover).")
@train_device_option
@executor_options("a --goal search's candidates")
@click.option("--report", type=click.Path(path_type=Path),
              help="Where to write the report: .json (default OUT.report.json), .md (Markdown + PNG plots) "
                   "or .html (one page, plots embedded).")
@click.option("--min-cosine", type=float, help="Fidelity gate (overrides the target's); 0 turns it off.")
@click.option("--gate-outputs", help="Comma-separated outputs the fidelity gate judges (default: all).")
@click.option("--goal", help="speedup=2, latency=10ms or size=0.5: try pipelines, keep the best meeting it.")
@click.option("--dim", multiple=True, help="Fix a symbolic dimension for synthesized inputs: NAME=VALUE.")
@click.option("--runs", type=click.IntRange(min=1), help="Latency runs (default: the target's).")
@click.option("--no-measure", is_flag=True, help="Time nothing: no latency measurement, and passes that pick the faster rewrite (quantize) pick by coverage instead.")
@click.option("--allow-slower", is_flag=True, help="Keep a compiled model that measures slower (size goals).")
@click.option("--allow-synthetic", is_flag=True,
              help="Run lossy passes on synthesized inputs when no real ones are given (unsafe for real models).")
@click.option("--input", "input_values", multiple=True,
              help="NAME=VALUE: fix an input of every synthesized feed (a scalar such as a sample rate, or a list).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--force", is_flag=True, help="Replace an existing output file.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@debug_option
@handle_errors
def compile_cmd(model, target, output, passes, pass_option, calib, calib_text, tokenizer, calib_dir, image_preset,
                image_resize, calib_hook, eval_text, train_text,
                calib_count, recover, train_minutes, train_steps, train_device, executor, jobs, task_threads, report, min_cosine, gate_outputs, goal, dim, runs,
                no_measure, allow_slower, allow_synthetic, input_values, seed, force, fmt, debug):
    """Rewrite MODEL for a target, verify it against the original and write it with a report."""
    import time

    started = time.perf_counter()
    from edgec.compiler.calibration.spec import CalibrationSpec
    from edgec.compiler.driver import CompileOptions, compile_model, default_output, raise_if_failed
    from edgec.compiler.report.compile_report import print_report
    from edgec.compiler.report.files import write_report
    from edgec.compiler.report.resources import usage_since

    profile = load_target(target)
    if min_cosine is not None and not 0 <= min_cosine <= 1:
        raise InputError(f"--min-cosine {min_cosine}: must lie in [0, 1]")
    calibration = CalibrationSpec(npz=calib, text=calib_text, tokenizer=tokenizer, images=calib_dir, hook=calib_hook,
                                  count=calib_count, image_preset=image_preset, image_resize=image_resize,
                                  eval_text=eval_text, train_text=train_text, dims=parse_dims(dim),
                                  input_values=parse_input_values(input_values))
    names = [p.strip() for p in passes.split(",") if p.strip()] if passes else None
    recover_minutes, recover_steps = recovery_budget(recover, names, train_minutes, train_steps)
    options = CompileOptions(
        output=output, passes=names,
        pass_options=parse_pass_options(pass_option), calibration=calibration, min_cosine=min_cosine,
        force=force, seed=seed, measure=not no_measure, runs=runs, allow_slower=allow_slower,
        gate_outputs=[o.strip() for o in gate_outputs.split(",")] if gate_outputs else None,
        recover_minutes=recover_minutes, recover_steps=recover_steps, allow_synthetic=allow_synthetic,
        task_threads=task_threads or 0, train_device=checked_train_device(train_device, executor))
    tried = None
    check_jobs(executor, jobs)
    if (executor != "local" or jobs > 1 or task_threads) and not goal:
        raise InputError("--executor, --jobs and --task-threads run a --goal search's candidates; several models or targets: "
                         "edgec compile-many")
    if goal:
        result, tried = _goal_search(model, profile, options, goal, executor, jobs)
    else:
        result = compile_model(model, profile, options)
    out_path = Path(result.output) if result.output else (output or default_output(model, profile))
    report_path = report or out_path.with_suffix(".report.json")
    if report_path.resolve() == model.resolve():
        raise InputError(f"{report_path}: report path is the input file")
    result.resources = usage_since(started)
    write_report(result, report_path)
    if fmt == "json":
        click.echo(result.to_json())
    else:
        print_report(result)
        click.echo(f"  report: {report_path}")
    if tried is not None:
        for point in tried if fmt != "json" else []:      # JSON has them as "candidates"
            click.echo(f"  goal search: {point['pipeline']:<28} {point['result']:>16}, cosine {point['cosine']:.4f}"
                       f"{'' if point['ok'] else ' (fails the gate)'}{'  ✓ meets the goal' if point['meets_goal'] else ''}")
        if result.executor and fmt != "json":
            click.echo(_executor_line(result.executor))
        if not any(p["meets_goal"] for p in tried):
            raise NegativeResult(f"no pipeline meets --goal {goal}; the best point was written: {result.notes[-1]}")
    raise_if_failed(result)


def _goal_search(model: Path, profile, options, goal: str, executor: str, jobs: int):
    from edgec.compiler.executors import open_executor
    from edgec.compiler.goal.driver import compile_to_goal, parse_goal
    from edgec.compiler.progress import task_board

    parsed = parse_goal(goal)
    pool = open_executor(executor, jobs, options.task_threads, task_gpus(executor, options.train_device))
    try:
        if pool.workers > 1 or pool.name != "local":
            with task_board(f"goal search on {pool.name} ({pool.workers} workers)") as events:
                return compile_to_goal(model, profile, options, parsed, pool, events)
        return compile_to_goal(model, profile, options, parsed, pool)
    finally:
        pool.close()


def _executor_line(record: dict) -> str:
    retried = [t["task"] for t in record["tasks"] if t["attempts"] > 1]
    projected = ", ".join(f"{n}: {s:.0f} s" for n, s in record["projected_wall_seconds"].items())
    return (f"  executor: {len(record['tasks'])} tasks on {record['executor']} ({record['workers']} workers) in "
            f"{record['wall_seconds']:.0f} s" + (f"; retried after a worker died: {', '.join(retried)}" if retried else "")
            + f"; projected wall time on N workers: {projected}")
