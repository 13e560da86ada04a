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
from edgec.compiler.bundle import pack
from edgec.compiler.compile_task import CompileJob, CompileOutcome, Host, compile_task
from edgec.compiler.driver import CompileOptions, save
from edgec.compiler.errors import EdgecError, InputError
from edgec.compiler.executors import Events, Executor, Shared, Task, TaskRun
from edgec.compiler.report.compile_report import CompileReport
from edgec.compiler.report.files import write_report
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
        cosine = min((f["score"] for f in r.fidelity), default=None) if r else None
        bytes_ratio = r.after.bytes / max(r.before.bytes, 1) if r and r.before and r.after else None
        return {"model": str(self.model), "target": self.target, "status": self.status,
                "output": str(self.output) if self.status == "ok" else None, "min_cosine": cosine,
                "latency_ratio": r.latency.get("ratio_p50") if r else None, "bytes_ratio": bytes_ratio,
                "detail": self.detail, **self.run}


def members_from_manifest(path: Path, base: CompileOptions, targets: tuple[str, ...]) -> list[Member]:
    import tomllib

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"{path}: not a readable TOML manifest ({exc})") from None
    entries = data.get("model")
    if not isinstance(entries, list) or not entries:
        raise InputError(f"{path}: no [[model]] entries")
    default_targets = tuple(data.get("targets", targets))
    return [_member(entry, path.parent, base, default_targets, path) for entry in entries]


def _member(entry: dict, root: Path, base: CompileOptions, targets: tuple[str, ...], manifest: Path) -> Member:
    unknown = sorted(set(entry) - MANIFEST_KEYS)
    if unknown or "path" not in entry:
        raise InputError(f"{manifest}: a [[model]] needs path and takes {', '.join(sorted(MANIFEST_KEYS))}"
                         + (f" (not {', '.join(unknown)})" if unknown else ""))
    rel = {k: root / entry[k] if k in entry else None for k in ("calib", "calib_text", "tokenizer", "calib_dir",
                                                                  "eval_text")}
    spec = dataclasses.replace(base.calibration, npz=rel["calib"], text=rel["calib_text"], tokenizer=rel["tokenizer"],
                               images=rel["calib_dir"], eval_text=rel["eval_text"]) \
        if any(v is not None for v in rel.values()) else base.calibration
    options = dataclasses.replace(base, calibration=spec,
                                  min_cosine=entry.get("min_cosine", base.min_cosine),
                                  gate_outputs=entry.get("gate_outputs", base.gate_outputs),
                                  passes=entry.get("passes", base.passes))
    return Member(root / entry["path"], options, tuple(entry.get("targets", targets)))


def compile_many(members: list[Member], out_dir: Path, executor: Executor, events: Events | None = None,
                 force: bool = False) -> list[PairResult]:
    profiles = _profiles(members)
    pairs = [(m, profiles[t]) for m in members for t in m.targets]
    outputs = [out_dir / f"{m.path.stem}.{p.name}.onnx" for m, p in pairs]
    if len(set(outputs)) < len(outputs):
        raise InputError("two models of the fleet have the same file name: their outputs would collide")
    for (member, _), output in zip(pairs, outputs, strict=True):
        modelio.ensure_writable_output(output, [member.path], force)
    sources = {m.path: m.path if executor.same_machine else Shared(pack(m.path, m.options.calibration))
               for m in members}
    tasks = [Task(f"{m.path.name} → {p.name}", compile_task, (sources[m.path], CompileJob(p.name, p, m.options)))
             for m, p in pairs]
    runs = executor.run(tasks, events)
    return [_finish(m, p, out, run) for (m, p), out, run in zip(pairs, outputs, runs, strict=True)]


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
