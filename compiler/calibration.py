"""Calibration and held-out feeds, and the activation capture that passes use for statistics."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from edgec.compiler.errors import InputError
from edgec.compiler.progress import progress_bar
from edgec.passes.base import Gram
from edgec.runtime.inputs import InputSpec, synthesize_feed
from edgec.runtime.session import SessionConfig, create_session

Feed = dict[str, np.ndarray]


@dataclass
class FeedSplit:
    calibration: list[Feed]
    held_out: list[Feed]
    source: str
    training: Callable[[], Iterable[Feed]] | None = None   # a streamed training set (recovery), if any
    # the original model's outputs (all, in session order), computed once while the feeds were checked
    search_outputs: list[list[np.ndarray]] | None = None      # on fit_and_search()[1]
    held_out_outputs: list[list[np.ndarray]] | None = None    # on held_out

    def fit_and_search(self) -> tuple[list[Feed], list[Feed]]:
        """The calibration feeds the passes fit on, and those their searches are scored on."""
        return split_feeds(self.calibration)


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
    one by one instead, for inputs that have no sample axis (recurrent states, scalars)."""
    if not path.is_file():
        raise InputError(f"{path}: calibration file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{path}: not a readable .npz file ({exc})") from None
    if arrays and all("/" in k for k in arrays):
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
    items: dict[str, dict[str, np.ndarray]] = {}
    for key, value in arrays.items():
        item, _, name = key.rpartition("/")
        items.setdefault(item, {})[name] = value
    feeds = []
    for item in sorted(items, key=lambda k: (len(k), k)):
        _check_names(path, set(items[item]), specs, f" (item {item})")
        for spec in specs:
            _check_array(path, spec, items[item][spec.name])
        feeds.append({s.name: items[item][s.name].astype(s.dtype) for s in specs})
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


def session_with_outputs(model: onnx.ModelProto, names: list[str], config: SessionConfig):
    """A session on `model` that also returns the intermediate tensors `names` (the model is modified)."""
    present = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in present)
    return create_session(model.SerializeToString(), config)


class ActivationCapture:
    """Runs the current graph with extra outputs to collect activations for the passes."""

    def __init__(self, feeds: list[Feed], session: SessionConfig, opset_model: onnx.ModelProto, seed: int = 0):
        self.feeds = feeds
        self.session = session
        self.original = opset_model
        self.seed = seed

    def _session_with_outputs(self, graph: gs.Graph, names: list[str]):
        from edgec.compiler.modelio import to_model  # local: avoids a cycle at import time

        return session_with_outputs(to_model(graph, self.original), names, self.session)

    def grams(self, graph: gs.Graph, names: list[str], halves: bool = False) -> dict[str, Gram]:
        """Σ [x, 1]ᵀ[x, 1] of every tensor over the feeds; with `halves`, also the even feeds' part (Gram.half),
        which a pass validating a fit on the other half needs (one more matrix per tensor, so only on request)."""
        sess = self._session_with_outputs(graph, names)
        parts = 2 if halves else 1
        accumulators = {n: [_GramAccumulator() for _ in range(parts)] for n in names}   # even, odd feeds
        with progress_bar(f"calibration statistics of {len(names)} tensors", len(self.feeds)) as advance:
            for i, feed in enumerate(self.feeds):
                for name, value in zip(names, sess.run(names, feed), strict=True):
                    accumulators[name][i % parts].add(np.asarray(value))
                advance(i + 1)
        return {n: _joined(*(a.result() for a in accs)) if halves else accs[0].result()
                for n, accs in accumulators.items()}

    def activations(self, graph: gs.Graph, names: list[str], max_rows: int | None = None) -> dict[str, np.ndarray]:
        sess = self._session_with_outputs(graph, names)
        rows: dict[str, list[np.ndarray]] = {n: [] for n in names}
        for feed in self.feeds:
            for name, value in zip(names, sess.run(names, feed), strict=True):
                value = np.asarray(value, np.float64)
                rows[name].append(value.reshape(-1, value.shape[-1]) if value.ndim else value.reshape(1, 1))
        out = {n: np.concatenate(r) for n, r in rows.items()}
        if max_rows:   # the same rows of every tensor (same seed, same count), so inputs match targets
            for n, r in out.items():
                if r.shape[0] > max_rows:
                    rng = np.random.default_rng(self.seed)
                    out[n] = r[np.sort(rng.choice(r.shape[0], max_rows, replace=False))]
        return out


class _GramAccumulator:
    """Σ [x, 1]ᵀ[x, 1] in float64, buffering rows so that BLAS sees a few large products."""

    def __init__(self, flush_rows: int = 8192):
        self.flush_rows = flush_rows
        self.buffer: list[np.ndarray] = []
        self.buffered = 0
        self.rows = 0
        self.matrix: np.ndarray | None = None

    def add(self, value: np.ndarray) -> None:
        rows = value.reshape(-1, value.shape[-1])
        self.buffer.append(rows)
        self.buffered += rows.shape[0]
        if self.buffered >= self.flush_rows:
            self._flush()

    def _flush(self) -> None:
        if not self.buffer:
            return
        x = np.concatenate(self.buffer).astype(np.float64)
        x = np.concatenate([x, np.ones((x.shape[0], 1))], axis=1)
        product = x.T @ x
        self.matrix = product if self.matrix is None else self.matrix + product
        self.rows += x.shape[0]
        self.buffer, self.buffered = [], 0

    def result(self) -> Gram | None:
        self._flush()
        return None if self.matrix is None else Gram(self.matrix, self.rows)


def _joined(even: Gram | None, odd: Gram | None) -> Gram:
    """The Gram of all feeds, remembering the even feeds' part when both halves saw rows."""
    if odd is None:
        return even
    return Gram(even.matrix + odd.matrix, even.rows + odd.rows, even.matrix)
