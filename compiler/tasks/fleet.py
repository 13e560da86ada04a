"""compile-many: every model for every target, as tasks of one executor, then each pair timed and written here.

A fleet is the models named on the command line (sharing its calibration flags), or a TOML manifest that gives
each model its own data and gate:

    targets = ["x86", "arm"]            # every model's, unless it names its own
    [[model]]
    path = "ocr.onnx"                   # paths relative to the manifest
    calib = "ocr.npz"
    [[model]]
    path = "minilm.onnx"
    calib_text = "sentences.txt"
    tokenizer = "tokenizer"
    gate_outputs = ["sentence_embedding"]
    min_cosine = 0.98

Nothing is written until every task has come back (Ctrl-C leaves no output); then each pair is timed against
its original on this machine and written, model and report, as a single compile would write them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgec.compiler import modelio
from edgec.compiler.calibration.general_text import with_general_text
from edgec.compiler.driver import CompileOptions, recovers, save
from edgec.compiler.errors import EdgecError, InputError
from edgec.compiler.executors import Events, Executor, Shared, Task, TaskRun
from edgec.compiler.goal.trials import bytes_ratio, judged_cosine
from edgec.compiler.report.compile_report import CompileReport
from edgec.compiler.report.files import write_report
from edgec.compiler.tasks.bundle import pack
from edgec.compiler.tasks.compile import CompileJob, CompileOutcome, Host, compile_task
from edgec.targets import TargetError, TargetProfile, load_target

MANIFEST_KEYS = {"path", "calib", "calib_text", "tokenizer", "calib_dir", "eval_text", "targets", "min_cosine",
                 "gate_outputs", "passes"}


@dataclass(frozen=True)
class Member:
    """One model of the fleet with what its compiles need."""
    path: Path
    options: CompileOptions
    targets: tuple[str, ...]


@dataclass
class PairResult:
    model: Path
    target: str
    output: Path
    status: str                          # ok | failed gate | input error | edgec error
    report: CompileReport | None = None
    detail: str = ""
    run: dict[str, Any] = field(default_factory=dict)    # the task's record: worker, seconds, attempts

    def row(self) -> dict:
        r = self.report
        cosine = judged_cosine(r) if r and r.fidelity else None
        size = (1.0 if r.rolled_back else bytes_ratio(r)) if r else None    # rolled back: the original was written
        return {"model": str(self.model), "target": self.target, "status": self.status,
                "output": str(self.output) if self.status == "ok" else None, "min_cosine": cosine,
                "latency_ratio": r.latency.get("ratio_p50") if r else None, "bytes_ratio": size,
                "detail": self.detail, **self.run}


def members_from_manifest(path: Path, base: CompileOptions, targets: tuple[str, ...]) -> list[Member]:
    import tomllib

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"{path}: not a readable TOML manifest ({exc})") from None
    stray = sorted(set(data) - {"model", "targets"})
    entries = data.get("model")
    if stray or not isinstance(entries, list) or not entries:
        raise InputError(f"{path}: a manifest holds [[model]] entries and an optional targets = [...]"
                         + (f" (not {', '.join(stray)})" if stray else ""))
    default_targets = tuple(_strings(data, "targets", path)) if "targets" in data else targets
    # a manifest model's data are its own: the command line's --calib is for the models given on the line
    own = dataclasses.replace(base, calibration=dataclasses.replace(base.calibration, npz=None))
    return [_member(entry, path.parent, own, default_targets, path) for entry in entries]


def _strings(entry: dict, key: str, manifest: Path) -> list[str]:
    value = entry[key]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"{manifest}: {key} must be a list of strings, like {key} = [\"a\", \"b\"]")
    return value


def _member(entry: dict, root: Path, base: CompileOptions, targets: tuple[str, ...], manifest: Path) -> Member:
    unknown = sorted(set(entry) - MANIFEST_KEYS)
    if unknown or "path" not in entry:
        raise InputError(f"{manifest}: a [[model]] needs path and takes {', '.join(sorted(MANIFEST_KEYS))}"
                         + (f" (not {', '.join(unknown)})" if unknown else ""))
    for key in ("path", "calib", "calib_text", "tokenizer", "calib_dir", "eval_text"):
        if key in entry and not isinstance(entry[key], str):
            raise InputError(f"{manifest}: {key} must be a path (a string)")
    if "min_cosine" in entry and not (isinstance(entry["min_cosine"], (int, float)) and 0 <= entry["min_cosine"] <= 1):
        raise InputError(f"{manifest}: min_cosine must be a number in [0, 1]")
    lists = {k: _strings(entry, k, manifest) for k in ("targets", "gate_outputs", "passes") if k in entry}
    rel = {k: root / entry[k] if k in entry else None for k in ("calib", "calib_text", "tokenizer", "calib_dir",
                                                                  "eval_text")}
    spec = dataclasses.replace(base.calibration, npz=rel["calib"], text=rel["calib_text"], tokenizer=rel["tokenizer"],
                               images=rel["calib_dir"], eval_text=rel["eval_text"]) \
        if any(v is not None for v in rel.values()) else base.calibration
    options = dataclasses.replace(base, calibration=spec,
                                  min_cosine=entry.get("min_cosine", base.min_cosine),
                                  gate_outputs=lists.get("gate_outputs", base.gate_outputs),
                                  passes=lists.get("passes", base.passes))
    return Member(root / entry["path"], options, tuple(lists.get("targets", targets)))


def compile_many(members: list[Member], out_dir: Path, executor: Executor, events: Events | None = None,
                 force: bool = False) -> list[PairResult]:
    profiles = _profiles(members)
    _check_inputs(members, out_dir)
    pairs = [(m, profiles[t]) for m in members for t in m.targets]
    outputs = [out_dir / f"{m.path.stem}.{p.name}.onnx" for m, p in pairs]
    if out_dir.is_dir():
        for (member, _), output in zip(pairs, outputs, strict=True):
            modelio.ensure_writable_output(output, [member.path], force)
    members = [_with_general_text(m) for m in members]       # made here: every worker reads the same file
    sources = {m.path: m.path if executor.same_machine else Shared(pack(m.path, m.options.calibration))
               for m in members}
    tasks = [Task(f"{m.path.name} → {p.name}", compile_task, (sources[m.path], CompileJob(p.name, p, m.options)))
             for m, p in pairs]
    runs = executor.run(tasks, events)
    out_dir.mkdir(parents=True, exist_ok=True)          # only now: an early failure or Ctrl-C leaves no folder
    return [_finish(m, p, out, run) for (m, p), out, run in zip(pairs, outputs, runs, strict=True)]


def _with_general_text(member: Member) -> Member:
    spec = with_general_text(member.options.calibration, recovers(member.options), [])
    return dataclasses.replace(member, options=dataclasses.replace(member.options, calibration=spec))


def _check_inputs(members: list[Member], out_dir: Path) -> None:
    """What can fail before any task runs fails here: a missing model, two models with one output name, an
    output folder that is a file."""
    missing = [str(m.path) for m in members if not m.path.is_file()]
    if missing:
        raise InputError(f"no such model file: {', '.join(missing)}")
    by_stem: dict[str, list[str]] = {}
    for m in members:
        by_stem.setdefault(m.path.stem, []).append(str(m.path))
    clash = [paths for paths in by_stem.values() if len(paths) > 1]
    if clash:
        raise InputError(f"{' and '.join(clash[0])} would write the same outputs (one file name per model in a "
                         "fleet: rename or copy one)")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a folder")
    for parent in out_dir.parents:
        if parent.exists() and not parent.is_dir():
            raise InputError(f"{out_dir}: {parent} is not a folder")


def _profiles(members: list[Member]) -> dict[str, TargetProfile]:
    names = {t for m in members for t in m.targets}
    if not names:
        raise InputError("no target: give --target a,b or targets = [...] in the manifest")
    try:
        return {t: load_target(t) for t in sorted(names)}
    except TargetError as exc:
        raise InputError(str(exc)) from None


def _finish(member: Member, target: TargetProfile, output: Path, run: TaskRun) -> PairResult:
    """Time the pair here against its original, then write model and report as `compile` would."""
    outcome: CompileOutcome = run.value
    result = PairResult(member.path, target.name, output, "edgec error", run=run.record())
    if outcome.report is None and outcome.user_error is None:
        result.detail = outcome.failure or ""
        return result
    try:
        model = Host(member.path, target).finish(outcome, member.options)
    except EdgecError as exc:
        result.status, result.detail = "input error", str(exc)
        return result
    report = outcome.report
    assert report is not None
    save(report, model, output, target, member.options)
    write_report(report, output.with_suffix(".report.json"))
    result.report, result.status = report, "ok" if report.ok else "failed gate"
    if not report.ok:
        result.detail = f"below the gate {report.min_cosine}: nothing written"
    elif report.rolled_back:
        result.detail = "measured slower than the original: the original was written"
    return result
