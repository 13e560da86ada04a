"""One zeroth-order tuning job where the data lives (this machine, or a board over ssh): numpy + onnxruntime.

The job gets the tuning graph, the original (teacher) model and a .npz of inputs (arrays keyed by input name,
samples along axis 0, or itemized "0/name", "1/name", … as `compile --calib` takes them). The teacher's outputs
are computed here, the last fifth of the samples is held out for scoring, and only the tuned group affines and
the figures leave: the data never does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from edgec.runtime.inputs import is_itemized, items
from edgec.runtime.session import SessionConfig, create_session
from edgec.runtime.zo.tuner import Pair, SiteSlot, ZOResult, ZOSettings, tune


def load_arrays(path: str) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the caller's input error
        raise ValueError(f"not a readable .npz file ({type(exc).__name__}: {exc})") from None


def split_pairs(arrays: dict[str, np.ndarray], teacher, outputs: list[str], batch: int,
                held_fraction: float = 0.2) -> tuple[list[Pair], list[Pair]]:
    """(training batches, held-out samples one by one), each with the teacher's outputs on it. `arrays`: one
    array per input with samples along axis 0, or itemized like `compile --calib` takes them ("0/x", "1/x", …:
    one feed per item, for inputs whose shapes differ from sample to sample)."""
    train, held = _split(arrays, [i.name for i in teacher.get_inputs()], batch, held_fraction)

    def pair(feed: dict) -> Pair:
        return feed, dict(zip(outputs, teacher.run(outputs, feed), strict=True))

    return [pair(f) for f in train], [pair(f) for f in held]


def first_feed(arrays: dict[str, np.ndarray], names: list[str]) -> dict:
    """The data's first sample as a feed (a check input the user's model surely runs on)."""
    return _split(arrays, names, 1, 0.2)[0][0]


def _split(arrays: dict[str, np.ndarray], names: list[str], batch: int,
           held_fraction: float) -> tuple[list[dict], list[dict]]:
    if is_itemized(arrays, names):
        return _itemized(arrays, names, held_fraction)
    return _stacked(arrays, names, batch, held_fraction)


def _stacked(arrays: dict[str, np.ndarray], names: list[str], batch: int,
             held_fraction: float) -> tuple[list[dict], list[dict]]:
    missing = [n for n in names if n not in arrays]
    if missing:
        raise ValueError(f"the data has no array for input(s) {missing} (it has {sorted(arrays)})")
    count = min(int(arrays[n].shape[0]) for n in names)
    cut = count - _held_count(count, held_fraction)
    return ([{n: arrays[n][i:min(i + batch, cut)] for n in names} for i in range(0, cut, batch)],
            [{n: arrays[n][i:i + 1] for n in names} for i in range(cut, count)])


def _itemized(arrays: dict[str, np.ndarray], names: list[str], held_fraction: float) -> tuple[list[dict], list[dict]]:
    feeds = []
    for item, given in items(arrays):
        missing = [n for n in names if n not in given]
        if missing:
            raise ValueError(f"the data's item '{item}' has no array for input(s) {missing} (it has {sorted(given)})")
        feeds.append({n: given[n] for n in names})
    cut = len(feeds) - _held_count(len(feeds), held_fraction)
    return feeds[:cut], feeds[cut:]


def _held_count(count: int, held_fraction: float) -> int:
    if count < 2:
        raise ValueError("the data needs at least 2 samples (one to train on, one to hold out)")
    return max(1, int(round(count * held_fraction)))


@dataclass
class ZOJob:
    """One tuning job: the tuning graph's sites, the outputs to match (the best θ chosen on `judged`; empty: all),
    how to tune. Typed everywhere; JSON only where it crosses to a device (`to_json`, `from_json`)."""

    slots: list[SiteSlot]
    outputs: list[str]
    settings: ZOSettings
    judged: list[str] = field(default_factory=list)
    batch: int = 8
    threads: int = 0
    units: list[str] = field(default_factory=list)   # probabilities by construction (judged on the unit interval)

    def to_json(self) -> dict:
        return {"slots": [s.as_dict() for s in self.slots], "outputs": self.outputs, "judged": self.judged,
                "batch": self.batch, "threads": self.threads, "settings": asdict(self.settings),
                "units": self.units}

    @classmethod
    def from_json(cls, job: dict) -> ZOJob:
        return cls([SiteSlot.from_dict(d) for d in job["slots"]], list(job["outputs"]),
                   ZOSettings(**job.get("settings", {})), list(job.get("judged") or []), int(job.get("batch", cls.batch)),
                   int(job.get("threads", cls.threads)), list(job.get("units") or []))


@dataclass
class JobResult:
    """The tuner's result and how the job split the data (what leaves the device)."""

    tuned: ZOResult
    training_batches: int
    held_out_samples: int

    def stats(self) -> dict:
        return {**self.tuned.as_stats(), "training_batches": self.training_batches,
                "held_out_samples": self.held_out_samples}

    def to_json(self) -> dict:
        return {**self.stats(), "gammas": self.tuned.gammas, "betas": self.tuned.betas}

    @classmethod
    def from_json(cls, result: dict) -> JobResult:
        fields = {k: v for k, v in result.items() if k not in ("training_batches", "held_out_samples")}
        return cls(ZOResult(**fields), int(result["training_batches"]), int(result["held_out_samples"]))


def run_job(job: ZOJob, tuning_path: str, teacher_path: str, data_path: str, progress=None) -> JobResult:
    """The tuned affines and figures of one job."""
    config = SessionConfig(threads=job.threads)
    teacher = create_session(teacher_path, config)
    session = create_session(tuning_path, config)
    train, held = split_pairs(load_arrays(data_path), teacher, job.outputs, job.batch)
    result = tune(session, job.slots, train, held, job.outputs, job.judged or job.outputs, job.settings,
                  progress or (lambda done, info=None: None), frozenset(job.units))
    return JobResult(result, len(train), len(held))
