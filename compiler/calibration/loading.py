"""Calibration feeds from files and from input specs: .npz loading, synthesis, the token-id range, the split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from edgec.compiler.errors import InputError
from edgec.passes.base import Feed
from edgec.runtime.inputs import InputSpec, is_itemized, items, synthesize_feed


def synthesized_feeds(specs: list[InputSpec], count: int, seed: int, dims: dict[str, int] | None = None,
                      vocab_size: int = 1000, fixed: dict[str, object] | None = None) -> list[Feed]:
    rng = np.random.default_rng(seed)
    return [synthesize_feed(specs, rng, dims, vocab_size, fixed) for _ in range(count)]


def vocabulary_size(model: onnx.ModelProto, default: int = 1000) -> int:
    """Token ids must index the embedding tables: the fewest rows of any Gather table an integer input
    reaches (through Casts/Unsqueezes), or `default` when no input feeds a Gather."""
    tables = {t.name: t.dims[0] for t in model.graph.initializer if len(t.dims) == 2}
    int_inputs = {i.name for i in model.graph.input
                  if i.type.tensor_type.elem_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32)}
    reach = set(int_inputs)
    sizes = []
    for node in model.graph.node:           # nodes are topologically sorted in a valid model
        if node.op_type in ("Cast", "Unsqueeze", "Reshape", "Flatten") and node.input and node.input[0] in reach:
            reach.update(node.output)
        elif node.op_type == "Gather" and len(node.input) > 1 and node.input[1] in reach \
                and node.input[0] in tables:
            sizes.append(int(tables[node.input[0]]))
    return min(sizes) if sizes else default


def load_npz_feeds(path: Path, specs: list[InputSpec]) -> list[Feed]:
    """Arrays keyed by input name, samples along axis 0, cut into the model's batch size; a rank-0 array
    (a sample rate) is the same in every feed. Keys `ITEM/NAME` (e.g. `0/input`, `0/sr`) give whole feeds
    one by one instead, for inputs that have no sample axis (recurrent states, scalars); a key equal to an input
    name is always that input, even one with a "/" in it (`gpu_0/data_0`)."""
    if not path.is_file():
        raise InputError(f"{path}: calibration file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{path}: not a readable .npz file ({exc})") from None
    if is_itemized(arrays, (s.name for s in specs)):
        return _itemized_feeds(path, arrays, specs)
    _check_names(path, set(arrays), specs)
    constant = {s.name for s in specs if arrays[s.name].ndim == 0 and len(s.shape) == 0}
    counts = {arrays[s.name].shape[0] if arrays[s.name].ndim else 0 for s in specs if s.name not in constant}
    if len(counts) != 1 or 0 in counts:
        raise InputError(f"{path}: arrays must share a non-empty leading sample axis")
    for spec in specs:
        _check_array(path, spec, arrays[spec.name])
    batch = _fixed_batch([s for s in specs if s.name not in constant])
    total = counts.pop()
    return [{s.name: (arrays[s.name] if s.name in constant else arrays[s.name][i:i + batch]).astype(s.dtype)
             for s in specs} for i in range(0, total - batch + 1, batch)]


def _itemized_feeds(path: Path, arrays: dict[str, np.ndarray], specs: list[InputSpec]) -> list[Feed]:
    feeds = []
    for item, given in items(arrays):
        _check_names(path, set(given), specs, f" (item {item})")
        for spec in specs:
            _check_array(path, spec, given[spec.name])
        feeds.append({s.name: given[s.name].astype(s.dtype) for s in specs})
    return feeds


def _check_names(path: Path, given: set[str], specs: list[InputSpec], where: str = "") -> None:
    names = {s.name for s in specs}
    missing, extra = sorted(names - given), sorted(given - names)
    if missing or extra:
        raise InputError(f"{path}: arrays do not match the model inputs{where} (missing {missing}, "
                         f"unexpected {extra})")


def _check_array(path: Path, spec: InputSpec, array: np.ndarray) -> None:
    if array.ndim != len(spec.shape):
        raise InputError(f"{path}: '{spec.name}' has rank {array.ndim}, the model expects {len(spec.shape)}")
    for axis, (want, have) in enumerate(zip(spec.shape, array.shape, strict=True)):
        if axis > 0 and isinstance(want, int) and want > 0 and want != have:
            raise InputError(f"{path}: '{spec.name}' has shape {array.shape}, the model expects {spec.shape}")
    float_in, float_want = np.issubdtype(array.dtype, np.floating), np.issubdtype(spec.dtype, np.floating)
    if float_in != float_want:
        raise InputError(f"{path}: '{spec.name}' is {array.dtype}, the model expects {spec.dtype}")


def _fixed_batch(specs: list[InputSpec]) -> int:
    first = [s.shape[0] for s in specs if s.shape]
    fixed = [d for d in first if isinstance(d, int) and d > 0]
    return fixed[0] if fixed else 1


def split_feeds(feeds: list[Feed], held_out_fraction: float = 0.25, min_held_out: int = 4) -> tuple[list[Feed], list[Feed]]:
    """The last part is held out for verification; with very few feeds both sides share them."""
    if len(feeds) < 2:
        return feeds, feeds
    n_held = max(min(min_held_out, len(feeds) // 2), int(round(len(feeds) * held_out_fraction)))
    return feeds[:-n_held], feeds[-n_held:]
