"""The pass contract: `run(graph, ctx) -> PassResult`, options as a frozen dataclass."""

from __future__ import annotations

import dataclasses
import typing
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    ContextManager,
    Iterable,
    Literal,
    Protocol,
    Sequence,
)

import numpy as np
import onnx
import onnx_graphsurgeon as gs

if TYPE_CHECKING:
    from edgec.runtime.zo.tuner import SiteSlot, ZOResult, ZOSettings

Feed = dict[str, np.ndarray]


@dataclass
class PassResult:
    changed: bool
    stats: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class CalibrationSource(Protocol):
    """What the driver hands to a pass: statistics of tensors of the *current* graph."""

    @property
    def feeds(self) -> Sequence[Feed]:
        """The inputs the statistics are taken over (quantize's static calibration reads them as they are)."""
        ...

    def activations(self, graph: gs.Graph, names: list[str], max_rows: int | None = None) -> dict[str, np.ndarray]:
        """Rows of each tensor over the calibration set, as float64 [N, last_dim]."""
        ...

    def grams(self, graph: gs.Graph, names: list[str], halves: bool = False, axis: int = -1) -> dict[str, Gram]:
        """Streamed Gram matrices [x, 1]ᵀ[x, 1] of each tensor's rows, features along `axis` (the last row/column
        is the bias); with `halves`, each also holds the even-numbered feeds' part (Gram.half) to validate a fit
        on the rest."""
        ...

    @property
    def scored(self) -> int:
        """How many of the last `feeds` the fidelity probe scores on (the search feeds, which a pass needing
        "ranges" sees too); 0: none of them."""
        ...

    def ranges(self, graph: gs.Graph, names: list[str]) -> dict[str, np.ndarray]:
        """Each tensor's [min, max] on each feed, as float64 [feeds, 2]."""
        ...

    def sizes(self, graph: gs.Graph, names: list[str]) -> dict[str, int]:
        """Each tensor's most elements on any one feed."""
        ...


@dataclass
class Gram:
    """Σ over calibration rows of [x, 1]ᵀ[x, 1] in float64, and how many rows went in."""

    matrix: np.ndarray
    rows: int
    half: np.ndarray | None = None   # the same sum over the even-numbered feeds only (None: fewer than 2 feeds),
                                     # so a fit on one half can be checked on the other (matrix − half)

    @property
    def features(self) -> int:
        return self.matrix.shape[0] - 1

    @property
    def xtx(self) -> np.ndarray:
        return self.matrix[:-1, :-1]

    @property
    def mean_square(self) -> np.ndarray:
        return np.diag(self.xtx) / max(self.rows, 1)


class TeacherSource(Protocol):
    """The original model, for passes that train against it (recovery distillation)."""

    @property
    def search_feeds(self) -> Sequence[Feed]:
        """The feeds early stopping scores on (the search split: never the final held-out set)."""
        ...

    @property
    def judged(self) -> list[str] | None:
        """The outputs the user's fidelity gate judges (None: all)."""
        ...

    def training_feeds(self) -> Iterable[Feed]:
        """One pass over the training data, streamed (a fresh iterator on every call)."""
        ...

    def has_tensor(self, name: str) -> bool:
        ...

    def run(self, feed: Feed, names: list[str]) -> list[np.ndarray]:
        """The original model's tensors `names` (outputs or intermediates) on `feed`."""
        ...

    def changed_initializers(self, model: onnx.ModelProto) -> frozenset[str]:
        """Initializers of `model` that the original lacks or holds with other values (what compression wrote)."""
        ...

    def token_mask(self, feed: Feed) -> np.ndarray | None:
        """Real-token positions of per-token outputs (from the feed's attention mask), if any."""
        ...

    def cosine(self, name: str, refs: list[np.ndarray], gots: list[np.ndarray], feeds: Sequence[Feed]) -> float:
        """The fidelity score of one output over feeds (cosine for vectors), measured like the verification."""
        ...

    def tune_affines(self, tuning: onnx.ModelProto, slots: list[SiteSlot], outputs: list[str],
                     settings: ZOSettings, batch: int, progress: Callable[..., None]) -> ZOResult:
        """Zeroth-order tuning of a tuning graph's group affines (`passes.recovery.tuning`) so its `outputs` match the
        original's on the training feeds (in batches of `batch`), the best chosen on the search feeds: the
        figures, and the γ / β per slot and group. ValueError when it cannot run."""
        ...


# min over outputs of the fidelity score (cosine for vectors, range error for few-value or non-negative
# outputs, agreement for labels: edgec.runtime.fidelity) of a candidate graph on the search feeds
FidelityProbe = Callable[[gs.Graph], float]
# the median latency (ms) of each candidate graph on the judging machine, all timed side by side (interleaved)
# on one search feed: a pass that picks between rewrites by speed measures them, never assumes
LatencyProbe = Callable[[Sequence[gs.Graph]], list[float]]
Progress = Callable[[str, int], ContextManager[Callable[..., None]]]


@contextmanager
def _silent_progress(description: str, total: int):
    yield lambda done, info=None: None


@dataclass
class PassContext:
    calibration: CalibrationSource | None = None
    fidelity: FidelityProbe | None = None
    options: dict[str, Any] = field(default_factory=dict)
    rank_multiple: int = 1
    seed: int = 0
    providers: tuple[str, ...] = ("CPUExecutionProvider",)   # the target's execution providers, in order
    # progress(description, total) → a context manager yielding advance(done, info=None); the driver shows a bar
    progress: Progress = field(default_factory=lambda: _silent_progress)
    teacher: TeacherSource | None = None
    # the CPU that judges fidelity computes int8 with saturating int16 sums (x86 without VNNI: runtime.cpu)
    int8_saturates: bool = False
    latency: LatencyProbe | None = None
    synthesized: bool = False      # the driver's feeds are synthesized from the input specs (no real inputs given)
    # tensor name → the original's channels (axis 1) it still carries, written by width-pruning passes for
    # recovery's feature matching (passes/recovery/features.py)
    lineage: dict[str, np.ndarray] = field(default_factory=dict)
    train_device: str = "cpu"      # where torch training runs: 'cpu' or 'cuda' (passes/training/device.py)
    # results a pass may reuse in the later attempts of the same compile (the step-back re-runs the pipeline at
    # tighter floors on the same data): keyed by everything they depend on (quantize: a graph digest, a recipe)
    memo: dict[Any, Any] = field(default_factory=dict)

    def need_calibration(self, why: str) -> CalibrationSource:
        if self.calibration is None:
            raise ValueError(f"{why} needs calibration statistics (run it inside `edgec compile`)")
        return self.calibration

    def need_fidelity(self, why: str) -> FidelityProbe:
        if self.fidelity is None:
            raise ValueError(f"{why} needs the driver's fidelity probe")
        return self.fidelity

    def need_teacher(self, why: str) -> TeacherSource:
        if self.teacher is None:
            raise ValueError(f"{why} needs the original model and training data (run it inside `edgec compile`)")
        return self.teacher


class Pass(Protocol):
    """What the registry holds: a name (= file name = CLI spelling), typed options, what it may ask the
    driver for, and `run`. `lossless` passes cannot change what the model computes."""

    # read-only members (each pass sets them as class attributes of narrower types)
    @property
    def name(self) -> str: ...

    @property
    def Options(self) -> type: ...      # the options dataclass

    @property
    def needs(self) -> frozenset[str]:
        """Of "calibration", "fidelity", "teacher", "latency"; "ranges": the calibration covers every
        calibration feed, the search feeds too."""
        ...

    @property
    def lossless(self) -> bool: ...

    def run(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        ...


class PassOptionError(ValueError):
    """An option given to a pass that it does not have or cannot take."""


def build_options(options_type: type, given: dict[str, Any], pass_name: str):
    """Make a pass's frozen options dataclass from a dict, with a clear error on unknown keys."""
    names = {f.name: f for f in dataclasses.fields(options_type)}
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise PassOptionError(f"pass '{pass_name}' has no option(s) {unknown} (it has: {sorted(names)})")
    converted: dict[str, Any] = {}
    for key, value in given.items():
        default = names[key].default
        try:
            if isinstance(default, bool) and isinstance(value, str):
                converted[key] = _boolean(value)
            else:
                converted[key] = type(default)(value) if default is not dataclasses.MISSING and default is not None else value
        except (TypeError, ValueError):
            raise PassOptionError(f"pass '{pass_name}': option {key}={value!r} is not a {type(default).__name__}") from None
    _check_choices(options_type, converted, pass_name)
    return options_type(**converted)


def _check_choices(options_type: type, given: dict[str, Any], pass_name: str) -> None:
    """Every option typed `Literal[...]` holds one of its choices (one generic check for every pass)."""
    hints = typing.get_type_hints(options_type)
    for key, value in given.items():
        if typing.get_origin(hints[key]) is Literal and value not in typing.get_args(hints[key]):
            choices = ", ".join(map(str, typing.get_args(hints[key])))
            raise PassOptionError(f"pass '{pass_name}': {key} must be one of {choices}, not {value!r}")


def _boolean(text: str) -> bool:
    """`true/false`, `yes/no`, `on/off`, `1/0` (bool("false") would be True)."""
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0"):
        return False
    raise ValueError(text)
