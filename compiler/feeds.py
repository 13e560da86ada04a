"""Step 2 of a compile: the calibration feeds (the user's data or synthesized ones), split into fit /
search / held-out, each run once through the original so that a bad feed fails here with a clear message
and the original's outputs are kept for the probe and the verification."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from edgec.compiler.calibration import Feed, FeedSplit, load_npz_feeds, split_feeds, vocabulary_size
from edgec.compiler.errors import InputError
from edgec.compiler.image_prep import image_prep
from edgec.compiler.synthesis import working_feeds
from edgec.runtime.inputs import input_specs


def calibration_feeds(session, model: onnx.ModelProto, options, path: Path, notes: list[str]) -> FeedSplit:
    try:
        specs = input_specs(session)
    except ValueError as exc:
        raise InputError(f"{path}: {exc}") from None
    unknown = sorted(set(options.input_values) - {s.name for s in specs})
    if unknown:
        raise InputError(f"--input: the model has no input(s) {unknown} (it has {[s.name for s in specs]})")
    training = None
    if options.calib_text or options.calib_dir or options.calib_hook:
        data = _data_source(options, specs, path, notes)
        feeds, source, training = data.calibration, data.label, data.training
    elif options.calib:
        feeds, source = load_npz_feeds(options.calib, specs), str(options.calib)
    else:
        feeds, note = working_feeds(session, specs, options.calib_samples, options.seed, options.dims,
                                    vocabulary_size(model), options.input_values)
        source = "synthesized"
        notes += [note] if note else []
    _check_finite(feeds, source)
    split = FeedSplit(*split_feeds(feeds), source, training)
    _run_original(session, split, options, path)
    return split


def _check_finite(feeds: list[Feed], source: str) -> None:
    for i, feed in enumerate(feeds):
        for name, value in feed.items():
            value = np.asarray(value)
            if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
                raise InputError(f"{source}: input '{name}' of item {i} holds NaN or Inf values")


def _run_original(session, split: FeedSplit, options, path: Path) -> None:
    fit, search = split.fit_and_search()
    try:
        for feed in fit:
            session.run(None, feed)
        split.search_outputs = [session.run(None, f) for f in search]
        split.held_out_outputs = [session.run(None, f) for f in split.held_out]
    except Exception as exc:  # noqa: BLE001 - ORT's own error types
        hint = "check the arrays in --calib" if options.calib else "give real inputs with --calib FILE.npz"
        raise InputError(f"{path}: ONNX Runtime fails on the {split.source} inputs "
                         f"({str(exc).splitlines()[0][:160]}); {hint}") from None


def _data_source(options, specs, path: Path, notes: list[str]):
    from edgec.compiler import data_sources

    if sum(bool(x) for x in (options.calib, options.calib_text, options.calib_dir, options.calib_hook)) > 1:
        raise InputError("give one of --calib, --calib-text, --calib-dir and --calib-hook")
    if options.calib_text:
        return data_sources.text_source(options.calib_text, options.tokenizer, specs, options.calib_count,
                                        options.dims.get("sequence", 128))
    if options.calib_dir:
        prep = image_prep(options.image_preset, options.image_resize, path)
        if not prep.known:
            notes.insert(0, f"calibration images as {prep.label} (give --image-preset imagenet|clip|unit|signed|raw)")
        return data_sources.image_source(options.calib_dir, specs, options.calib_count, prep)
    return data_sources.hook_source(options.calib_hook, specs, options.calib_count)
