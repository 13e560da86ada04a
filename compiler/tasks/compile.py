"""One compile as a task an executor runs anywhere, and its end on the host.

On the worker (`compile_task`): steps 1–6 of the driver (load, calibrate, plan, rewrite, verify), never the
latency, from the user's paths (same machine) or from a `Bundle` of their bytes (a Ray worker). What comes
back is the report, the compiled model's files and the held-out feed it is timed on.

On the host (`Host.finish`): the latency, side by side with the original, on the machine the target names —
so that a ratio never mixes two machines — and the roll-back of a measurably slower model, as a local compile
does. The same steps whatever ran the task, hence the same files.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import onnx

from edgec.compiler import modelio
from edgec.compiler.driver import (
    CompileOptions,
    build,
    compiled_session,
    original_session,
    resolve,
    session_config,
)
from edgec.compiler.errors import EdgecError
from edgec.compiler.measuring import Baseline, measured
from edgec.compiler.report.compile_report import CompileReport
from edgec.compiler.report.resources import usage_since
from edgec.compiler.tasks.bundle import Bundle
from edgec.targets import TargetProfile

MODEL_FILE = "model.onnx"


def edgec_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("edgec")
    except PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class CompileJob:
    label: str
    target: TargetProfile
    options: CompileOptions        # its output and measure are the host's business


@dataclass
class CompileOutcome:
    report: CompileReport | None
    files: dict[str, bytes]                    # the compiled model as saved: file name → bytes (external data too)
    feed: dict | None                          # the held-out feed the latency is timed on
    failure: str | None = None                 # an edgec bug in this compile (a goal search goes on without it)
    user_error: EdgecError | None = None       # bad input: the host raises it as a local compile would
    version: str = ""


def compile_task(source: Bundle | Path, job: CompileJob) -> CompileOutcome:
    """Runs on the worker."""
    started = time.perf_counter()
    with torch_threads(job.options.task_threads), tempfile.TemporaryDirectory(prefix="edgec-task-") as tmp:
        root = Path(tmp)
        path, options = source, job.options
        if isinstance(source, Bundle):
            path, spec = source.unpack(root / "in")
            options = dataclasses.replace(options, calibration=spec)
        options = dataclasses.replace(options, output=None, measure=False, force=True)
        assert isinstance(path, Path)
        try:
            built = build(path, job.target, options)
        except EdgecError as exc:
            return CompileOutcome(None, {}, None, user_error=exc, version=edgec_version())
        except Exception as exc:  # noqa: BLE001 - one candidate's bug must not end a search
            return CompileOutcome(None, {}, None, failure=str(exc).splitlines()[0][:200] if str(exc) else
                                  type(exc).__name__, version=edgec_version())
        out = root / "out" / MODEL_FILE
        out.parent.mkdir()
        modelio.save_model_atomic(built.model, out)
        files = {p.name: p.read_bytes() for p in sorted(out.parent.iterdir())}
        report = built.report
        report.resources = usage_since(started)     # the worker's process: its peak covers its earlier tasks too
        if isinstance(source, Bundle):
            source.restore_paths(report, root / "in")
        return CompileOutcome(report, files, dict(built.reference.feeds.held_out[0]), version=edgec_version())


@contextmanager
def torch_threads(threads: int):
    """torch's intra-op threads for the task, restored after it (an in-process task shares the host's torch)."""
    if threads <= 0 or importlib.util.find_spec("torch") is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Host:
    """The original model on the machine that measures: its session, once, for every outcome timed against it."""

    def __init__(self, path: Path, target: TargetProfile):
        self.path, self.target = path, target
        self.original = modelio.load_model(path)
        self.config = session_config(target)
        self.resolved = resolve(self.config)
        self.session = original_session(self.original, self.config, path)

    def finish(self, outcome: CompileOutcome, options: CompileOptions) -> onnx.ModelProto:
        """The compiled model, measured against the original here (a slower one rolls back to the original,
        unless options.allow_slower); outcome.report gains the latency."""
        if outcome.user_error is not None:
            raise outcome.user_error
        _check_version(outcome)
        assert outcome.report is not None
        outcome.report.input = str(self.path)
        model = load_files(outcome.files)
        if not options.measure:
            return model
        baseline = Baseline(self.original, self.session, self.config, outcome.feed or {})
        return measured(outcome.report, baseline, compiled_session(model, self.config), model, self.resolved,
                        self.target, options)


def load_files(files: dict[str, bytes]) -> onnx.ModelProto:
    """A model from the files a task saved (a model past 2 GB has its weights in a .data file beside it)."""
    if len(files) == 1:
        return onnx.load_model_from_string(files[MODEL_FILE])
    with tempfile.TemporaryDirectory(prefix="edgec-model-") as tmp:
        for name, data in files.items():
            (Path(tmp) / name).write_bytes(data)
        return modelio.load_model(Path(tmp) / MODEL_FILE)


def _check_version(outcome: CompileOutcome) -> None:
    here = edgec_version()
    if outcome.version and outcome.version != here:
        raise EdgecError(f"a worker runs edgec {outcome.version}, this machine {here}: install the same version "
                         "on every node of the cluster")
