"""Synthesized feeds that ONNX Runtime actually runs.

A first guess from the input specs fails on many real models: a scalar sample-rate input that must be
8000 or 16000, a recognizer whose width must be a multiple of its stride, a voice detector that takes
chunks of 512 samples, a graph network whose edge indices must name existing nodes. So the guess is tried
on one feed, and then variants are tried — integer scalars set to common sample rates or 1, integer
tensors (indices) all 0, other sizes for the free spatial, sequence and sample dimensions (only those that
change some input's shape) — and the first variant the model runs on is used, with a note. What the user fixed (--input, --dim) is kept in
every variant. When nothing runs, the error names the scalar inputs and the flags that fix them.
"""

from __future__ import annotations

import itertools

import numpy as np
import onnxruntime as ort

from edgec.compiler.calibration.loading import Feed, synthesized_feeds
from edgec.compiler.errors import InputError
from edgec.runtime.inputs import InputSpec, concrete_shape, is_scalar, shared_dims, synthesize_feed

SCALAR_CHOICES = (16000, 8000, 1)
DIM_CHOICES = ({"spatial": 320}, {"spatial": 256}, {"spatial": 640}, {"spatial": 32}, {"sequence": 64},
               {"sequence": 16}, {"samples": 512}, {"samples": 256}, {"samples": 8000}, {"samples": 32})
MAX_TRIALS = 48


def working_feeds(session, specs: list[InputSpec], count: int, seed: int, dims: dict[str, int],
                  vocab_size: int, fixed: dict[str, object]) -> tuple[list[Feed], str | None]:
    """`count` synthesized feeds the session runs on, and a note when a variant of the first guess was
    needed; InputError when none runs."""
    first_error, quiet = None, ort.RunOptions()
    quiet.log_severity_level = 4          # a failing trial is expected: its error is kept, not logged
    for dim_variant, scalars in itertools.islice(_variants(specs, dims, fixed), MAX_TRIALS):
        values = {**scalars, **fixed}
        try:
            trial = synthesize_feed(specs, np.random.default_rng(seed), dim_variant, vocab_size, values)
        except ValueError as exc:        # a value given with --input that is no array (a ragged list)
            raise InputError(f"--input: {str(exc).splitlines()[0][:160]}") from None
        try:
            session.run(None, trial, quiet)
        except Exception as exc:  # noqa: BLE001 - ORT's own error types
            first_error = first_error or str(exc).splitlines()[0][:160]
            continue
        note = _variant_note(dim_variant, dims, scalars)
        return synthesized_feeds(specs, count, seed, dim_variant, vocab_size, values), note
    raise InputError(f"ONNX Runtime fails on every synthesized input tried ({first_error}); {_hint(specs, fixed)}")


def _variants(specs: list[InputSpec], dims: dict[str, int], fixed: dict[str, object]):
    integers = [s for s in specs if s.name not in fixed and np.issubdtype(s.dtype, np.integer)]
    integer_scalars = [s.name for s in integers if is_scalar(s)]
    indices = [s.name for s in integers if not is_scalar(s) and s.role == "ids"]
    scalar_choices: list[dict[str, int]] = [{}] + [{name: v for name in integer_scalars} for v in SCALAR_CHOICES if integer_scalars]
    scalar_choices += [{**choice, **{name: 0 for name in indices}} for choice in scalar_choices if indices]
    dim_choices = [dims] + [{**choice, **dims} for choice in DIM_CHOICES if not set(choice) & set(dims)
                            and _shapes(specs, {**choice, **dims}) != _shapes(specs, dims)]   # changes a shape
    for dim_variant in dim_choices:
        for scalars in scalar_choices:
            yield dim_variant, scalars


def _shapes(specs: list[InputSpec], dims: dict[str, int]) -> list[tuple[int, ...]]:
    """The shapes synthesize_feed gives these inputs under `dims` (shared dimension names included)."""
    shared = shared_dims(specs, dims)
    return [concrete_shape(s, shared) for s in specs]


def _variant_note(dim_variant: dict, dims: dict, scalars: dict) -> str | None:
    changed = {k: v for k, v in {**dim_variant, **scalars}.items() if dims.get(k) != v}
    if not changed:
        return None
    said = ", ".join(f"{k}={v}" for k, v in changed.items())
    return f"synthesized inputs: the first guess did not run, {said} did (fix it with --input / --dim)"


def _hint(specs: list[InputSpec], fixed: dict[str, object]) -> str:
    scalars = [s.name for s in specs if is_scalar(s) and s.name not in fixed]
    named = f"set the scalar input(s) {', '.join(scalars)} with --input NAME=VALUE, " if scalars else ""
    return f"{named}fix a dimension with --dim NAME=V, or give real inputs with --calib FILE.npz"
