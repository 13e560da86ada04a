"""The inputs a model is judged on, made once: the user's data or synthesized feeds, split into fit / search /
held-out (+ a training stream), each run through the original so that a bad feed fails here with a clear
message and the original's outputs are kept for the probe and the verification. Compile, fold and bench
all take their feeds from `feed_set`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from edgec.compiler.calibration.augment import augmented_training, has_images
from edgec.compiler.calibration.image_prep import image_prep
from edgec.compiler.calibration.loading import Feed, load_npz_feeds, split_feeds
from edgec.compiler.calibration.spec import CalibrationSpec
from edgec.compiler.calibration.synthesis import working_feeds
from edgec.compiler.errors import InputError
from edgec.runtime.inputs import InputSpec, input_specs

Outputs = list[list[np.ndarray]]     # per feed, the original's outputs in session order


@dataclass(frozen=True)
class FeedSet:
    source: str                      # a file name, a data-source label, or "synthesized"
    calibration: list[Feed]          # what the passes may look at: fit + search
    fit: list[Feed]                  # statistics and fits
    search: list[Feed]               # the passes' searches and recovery's early stopping score these
    held_out: list[Feed]             # the final verification: never seen by a pass
    search_outputs: Outputs | None = None
    held_out_outputs: Outputs | None = None
    training: Callable[[], Iterable[Feed]] | None = None   # a streamed training set (recovery), if any
    evaluation: list[Feed] = field(default_factory=list)    # --eval-text: a second held-out set, another domain
    evaluation_source: str | None = None
    evaluation_outputs: Outputs | None = None
    evaluation_gated: bool = True    # False: reported, not gated (the default general text of a recovering compile)

    def training_feeds(self) -> Iterable[Feed]:
        """One pass over the training data: the stream of a text/image/hook source, else the fit feeds."""
        return self.training() if self.training is not None else iter(self.fit)


def feed_set(session, vocab_size: int, spec: CalibrationSpec, seed: int, path: Path, notes: list[str],
             run_original: bool = True) -> FeedSet:
    """`session` runs the original model; `vocab_size` bounds synthesized token ids (calibration.vocabulary_size);
    `path` names the model in errors (and locates an image preprocessor config)."""
    try:
        specs = input_specs(session)
    except ValueError as exc:
        raise InputError(f"{path}: {exc}") from None
    unknown = sorted(set(spec.input_values) - {s.name for s in specs})
    if unknown:
        raise InputError(f"--input: the model has no input(s) {unknown} (it has {[s.name for s in specs]})")
    feeds, source, training = _load(session, vocab_size, spec, seed, specs, path, notes)
    _check_finite(feeds, source)
    calibration, held_out = split_feeds(feeds)
    fit, search = split_feeds(calibration)
    if source != "synthesized" and has_images(fit) and (training is None or _empty(training)):
        training = augmented_training(fit, seed)     # recovery distils on variants of the few images given
    if spec.train_text is not None:
        training = _mixed(training or (lambda: iter(fit)), _general_stream(spec, specs))
        notes.append(f"training stream: {source} alternating with {spec.train_text} (--train-text)")
    evaluation, evaluation_source = _evaluation(spec, specs, path)
    if not run_original:
        return FeedSet(source, calibration, fit, search, held_out, training=training, evaluation=evaluation,
                       evaluation_source=evaluation_source, evaluation_gated=spec.eval_gated)
    failure = f"{path}: ONNX Runtime fails on the {source} inputs"
    _original_outputs(session, fit, failure, spec)          # every feed runs once, so a bad one fails here
    search_outputs = _original_outputs(session, search, failure, spec)
    held_out_outputs = _original_outputs(session, held_out, failure, spec)
    evaluation_outputs = _original_outputs(session, evaluation, f"{path}: ONNX Runtime fails on the "
                                                                f"{evaluation_source} inputs", spec)
    return FeedSet(source, calibration, fit, search, held_out, search_outputs, held_out_outputs, training,
                   evaluation, evaluation_source, evaluation_outputs, spec.eval_gated)


def _general_stream(spec: CalibrationSpec, specs: list[InputSpec]) -> Callable[[], Iterable[Feed]]:
    from edgec.compiler.calibration import sources as data_sources

    assert spec.train_text is not None
    return data_sources.text_source(spec.train_text, spec.tokenizer, specs, 1, spec.dims.get("sequence", 128),
                                    training_only=True).training


def _mixed(first: Callable[[], Iterable[Feed]], second: Callable[[], Iterable[Feed]]) -> Callable[[], Iterable[Feed]]:
    """One pass over both streams, a feed of each in turn; when one ends, the rest of the other."""
    def stream() -> Iterator[Feed]:
        a, b = iter(first()), iter(second())
        while True:
            for source in (a, b):
                feed = next(source, None)
                if feed is None:
                    yield from (b if source is a else a)
                    return
                yield feed
    return stream


def _original_outputs(session, feeds: list[Feed], failure: str, spec: CalibrationSpec) -> Outputs:
    try:
        return [session.run(None, f) for f in feeds]
    except Exception as exc:  # noqa: BLE001 - ORT's own error types
        raise InputError(f"{failure} ({str(exc).splitlines()[0][:160]}); {spec.hint}") from None


def _evaluation(spec: CalibrationSpec, specs: list[InputSpec], path: Path) -> tuple[list[Feed], str | None]:
    """--eval-text: every line (up to eval_count) held out, to show whether fidelity carries to its domain."""
    if spec.eval_text is None:
        return [], None
    from edgec.compiler.calibration import sources as data_sources

    data = data_sources.text_source(spec.eval_text, spec.tokenizer, specs, spec.eval_count,
                                    spec.dims.get("sequence", 128))
    _check_finite(data.calibration, data.label)
    return data.calibration, data.label


def _load(session, vocab_size: int, spec: CalibrationSpec, seed: int, specs: list[InputSpec], path: Path,
          notes: list[str]):
    """(feeds, source label, training stream or None)"""
    if spec.kind in ("text", "images", "hook"):
        data = _data_source(spec, specs, path, notes)
        return data.calibration, data.label, data.training
    if spec.npz is not None:
        return load_npz_feeds(spec.npz, specs), str(spec.npz), None
    feeds, note = working_feeds(session, specs, spec.samples, seed, spec.dims, vocab_size, spec.input_values)
    notes += [note] if note else []
    return feeds, "synthesized", None


def _empty(stream: Callable[[], Iterable[Feed]]) -> bool:
    """Whether a training stream yields nothing (an image folder holding no more than the calibration images)."""
    return next(iter(stream()), None) is None


def _check_finite(feeds: list[Feed], source: str) -> None:
    for i, feed in enumerate(feeds):
        for name, value in feed.items():
            value = np.asarray(value)
            if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
                raise InputError(f"{source}: input '{name}' of item {i} holds NaN or Inf values")


def _data_source(spec: CalibrationSpec, specs: list[InputSpec], path: Path, notes: list[str]):
    from edgec.compiler.calibration import sources as data_sources

    if spec.text is not None:
        return data_sources.text_source(spec.text, spec.tokenizer, specs, spec.count, spec.dims.get("sequence", 128))
    if spec.images is not None:
        prep = image_prep(spec.image_preset, spec.image_resize, path)
        if not prep.known:
            notes.insert(0, f"calibration images as {prep.label} (give --image-preset imagenet|clip|unit|signed|raw)")
        return data_sources.image_source(spec.images, specs, spec.count, prep)
    assert spec.hook is not None
    return data_sources.hook_source(spec.hook, specs, spec.count)
