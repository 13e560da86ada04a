"""Input specs read from a session, and synthesized feeds that respect them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

import numpy as np

_ORT_TYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int16)": np.int16,
    "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_,
}
DEFAULT_DIMS = {"batch": 1, "sequence": 128, "spatial": 224, "samples": 16000}


@dataclass(frozen=True)
class InputSpec:
    name: str
    dtype: np.dtype
    shape: tuple[int | str | None, ...]

    @property
    def role(self) -> str:
        """What the input most likely carries: token ids, a mask, token types, positions or data."""
        n = self.name.lower()
        if not np.issubdtype(self.dtype, np.integer) and self.dtype != np.bool_:
            return "data"
        if "mask" in n:
            return "mask"
        if "type" in n or "segment" in n:
            return "token_type"
        if "position" in n:
            return "position"
        return "ids"


def input_specs(session) -> list[InputSpec]:
    specs = []
    for arg in session.get_inputs():
        if arg.type not in _ORT_TYPES:
            raise ValueError(f"input '{arg.name}' has type {arg.type}, which edgec cannot synthesize")
        specs.append(InputSpec(arg.name, np.dtype(_ORT_TYPES[arg.type]), tuple(arg.shape)))
    return specs


def concrete_shape(spec: InputSpec, dims: dict[str, int] | None = None) -> tuple[int, ...]:
    """Fix symbolic dimensions: by name from `dims`, else a guess from the name and position."""
    dims = dims or {}
    out = []
    for i, d in enumerate(spec.shape):
        if isinstance(d, int) and d > 0:
            out.append(d)
        elif isinstance(d, str) and d in dims:
            out.append(int(dims[d]))
        else:
            out.append(_guess_dim(str(d or ""), i, spec, dims))
    return tuple(out)


def shared_dims(specs: list[InputSpec], dims: dict[str, int] | None = None) -> dict[str, int]:
    """`dims` plus one size for every named symbolic dimension, so inputs that share a name get the same
    size (a graph network's `num_edges` in [num_edges, 13] and [2, num_edges]); placeholder names ('?',
    which exporters give to unrelated dimensions) are not shared."""
    merged = dict(dims or {})
    for spec in specs:
        for i, d in enumerate(spec.shape):
            if isinstance(d, str) and d not in merged and re.fullmatch(r"[A-Za-z_][\w.]*", d):
                merged[d] = concrete_shape(spec, merged)[i]
    return merged


def _guess_dim(name: str, index: int, spec: InputSpec, dims: dict[str, int]) -> int:
    low = name.lower()
    if index == 0 or re.search(r"batch|^n$|^b$", low) or _recurrent_state_batch(index, spec):
        return dims.get("batch", DEFAULT_DIMS["batch"])
    if spec.role == "data" and len(spec.shape) == 2 and index == 1:
        # a float [batch, n] input with a free n is a waveform (wav2vec2, HuBERT, Whisper-style front ends
        # need hundreds of samples per frame): one second at 16 kHz unless --dim samples=N says otherwise
        return dims.get("samples", DEFAULT_DIMS["samples"])
    if re.search(r"seq|len|token|time|frames", low) or spec.role != "data":
        return dims.get("sequence", DEFAULT_DIMS["sequence"])
    channels_last = spec.shape[-1] in (1, 3, 4)
    if len(spec.shape) == 4 and (index >= 2 if not channels_last else index in (1, 2)):   # NCHW | NHWC
        return dims.get("spatial", DEFAULT_DIMS["spatial"])
    return dims.get("sequence", DEFAULT_DIMS["sequence"])


def is_scalar(spec: InputSpec) -> bool:
    """A rank-0 input or one whose every dimension is fixed to 1: a setting (sample rate, flag), not data."""
    return all(isinstance(d, int) and d == 1 for d in spec.shape)


def fixed_value(spec: InputSpec, value, shape: tuple[int, ...]) -> np.ndarray:
    """A value the user fixed for an input (`--input NAME=VALUE`), in the input's dtype, broadcast to
    `shape` when it is a single number."""
    array = np.asarray(value).astype(spec.dtype)
    if array.size == 1 and array.shape != shape:
        array = np.full(shape, array.reshape(()), dtype=spec.dtype)
    return np.array(array, order="C")


def _recurrent_state_batch(index: int, spec: InputSpec) -> bool:
    """The free middle of a [layers × directions, batch, hidden] recurrent state (an LSTM's h/c): batch."""
    shape = spec.shape
    return (len(shape) == 3 and index == 1 and spec.role == "data"
            and all(isinstance(d, int) and d > 0 for d in (shape[0], shape[2])))


def synthesize_feed(specs: list[InputSpec], rng: np.random.Generator, dims: dict[str, int] | None = None,
                    vocab_size: int = 1000, fixed: dict[str, object] | None = None) -> dict[str, np.ndarray]:
    """One feed dict: token ids in vocabulary range, masks of ones, images in [0, 1]; `fixed` values
    (by input name) are used as given."""
    feed = {}
    fixed = fixed or {}
    dims = shared_dims(specs, dims)
    for spec in specs:
        shape = concrete_shape(spec, dims)
        if spec.name in fixed:
            feed[spec.name] = fixed_value(spec, fixed[spec.name], shape)
            continue
        role = spec.role
        if role == "mask":
            value = np.ones(shape, dtype=spec.dtype)
        elif role == "token_type":
            value = np.zeros(shape, dtype=spec.dtype)
        elif role == "position":
            value = np.broadcast_to(np.arange(shape[-1]), shape).astype(spec.dtype)
        elif role == "ids":
            value = rng.integers(0, vocab_size, size=shape).astype(spec.dtype)
        elif len(shape) == 4:  # image-like
            value = rng.random(shape, dtype=np.float32).astype(spec.dtype)
        else:
            value = rng.standard_normal(shape).astype(spec.dtype)
        feed[spec.name] = np.array(value, order="C")   # not ascontiguousarray: it makes scalars 1-D
    return feed


_ITEM_KEY = re.compile(r"(\d+)/(.+)", re.DOTALL)


def is_itemized(arrays: dict[str, np.ndarray], names: Iterable[str] = ()) -> bool:
    """An .npz written item by item ("0/x", "1/x", …): one feed per item, for inputs whose shapes vary. A key
    is itemized when it is an integer item, a "/", then the full input name; a key equal to one of the model's
    input `names` is that input (a classifier's input may be called "gpu_0/data_0")."""
    known = set(names)
    return bool(arrays) and all(k not in known and _ITEM_KEY.fullmatch(k) for k in arrays)


def items(arrays: dict[str, np.ndarray]) -> list[tuple[str, dict[str, np.ndarray]]]:
    """(item, its arrays by input name) of an itemized .npz, in item order (0, 1, …, 10, not 0, 1, 10)."""
    grouped: dict[str, dict[str, np.ndarray]] = {}
    for key, value in arrays.items():
        match = _ITEM_KEY.fullmatch(key)
        if match is None:
            raise ValueError(f"key {key!r} is neither an input name nor ITEM/INPUT (an integer item, '/', the name)")
        item, name = match.groups()
        grouped.setdefault(item, {})[name] = value
    return [(item, grouped[item]) for item in sorted(grouped, key=lambda k: (len(k), k))]
