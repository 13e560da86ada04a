"""Activation statistics of the graph being compiled, for the passes: rows and streamed Gram matrices of any
tensor over the fit feeds (ONNX Runtime with the tensors exposed as extra outputs)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from edgec.compiler.progress import progress_bar
from edgec.passes.base import Feed, Gram
from edgec.runtime.session import SessionConfig, create_session


def session_with_outputs(model: onnx.ModelProto, names: list[str], config: SessionConfig):
    """A session on `model` that also returns the intermediate tensors `names` (the model is modified)."""
    present = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in present)
    return create_session(model.SerializeToString(), config)


class ActivationCapture:
    """Runs the current graph with extra outputs to collect activations for the passes."""

    def __init__(self, feeds: Sequence[Feed], session: SessionConfig, opset_model: onnx.ModelProto, seed: int = 0,
                 scored: int = 0):
        self._feeds = list(feeds)
        self.scored = scored          # the last feeds are the fidelity probe's search feeds
        self.session = session
        self.original = opset_model
        self.seed = seed

    @property
    def feeds(self) -> Sequence[Feed]:
        return self._feeds

    def _session_with_outputs(self, graph: gs.Graph, names: list[str]):
        from edgec.compiler.modelio import to_model  # local: avoids a cycle at import time

        return session_with_outputs(to_model(graph, self.original), names, self.session)

    def grams(self, graph: gs.Graph, names: list[str], halves: bool = False, axis: int = -1) -> dict[str, Gram]:
        """Σ [x, 1]ᵀ[x, 1] of every tensor over the feeds, features along `axis` (1: the channels of NCHW);
        with `halves`, also the even feeds' part (Gram.half), which a pass validating a fit on the other half
        needs (one more matrix per tensor, so only on request)."""
        sess = self._session_with_outputs(graph, names)
        parts = 2 if halves else 1
        accumulators = {n: [_GramAccumulator() for _ in range(parts)] for n in names}   # even, odd feeds
        with progress_bar(f"calibration statistics of {len(names)} tensors", len(self.feeds)) as advance:
            for i, feed in enumerate(self.feeds):
                for name, value in zip(names, sess.run(names, feed), strict=True):
                    value = np.asarray(value)
                    accumulators[name][i % parts].add(value if axis == -1 or value.ndim < 2 else np.moveaxis(value, axis, -1))
                advance(i + 1)
        grams = {n: _joined(*(a.result() for a in accs)) if halves else accs[0].result()
                 for n, accs in accumulators.items()}
        return {n: g for n, g in grams.items() if g is not None}       # None: no feed, no rows

    def ranges(self, graph: gs.Graph, names: list[str]) -> dict[str, np.ndarray]:
        """Each tensor's [min, max] per feed, reduced inside the graph: returning every tensor of a large image
        at once took gigabytes."""
        per_feed = self._reduced(graph, names, ("ReduceMin", "ReduceMax"))       # [feeds, tensors, 2]
        bounds = np.array([[[float(np.min(v)) if np.size(v) and np.isfinite(v).all() else 0.0 for v in pair]
                            for pair in row] for row in per_feed], np.float64).reshape(-1, len(names), 2)
        return {n: bounds[:, k] for k, n in enumerate(names)}

    def sizes(self, graph: gs.Graph, names: list[str]) -> dict[str, int]:
        """Each tensor's most elements on any one feed, counted inside the graph (`Size`)."""
        counts = np.array([[int(pair[0]) for pair in row] for row in self._reduced(graph, names, ("Size",))])
        return {n: int(counts[:, k].max()) if len(counts) else 0 for k, n in enumerate(names)}

    def _reduced(self, graph: gs.Graph, names: list[str], ops: tuple[str, ...]) -> list[list[list[np.ndarray]]]:
        """Per feed, per tensor, the outputs of `ops` applied to it inside the graph (one session, nodes in priority
        order so that every tensor is released once reduced)."""
        from edgec.compiler.modelio import to_model  # local: avoids a cycle at import time

        model = to_model(graph, self.original)
        outputs = [f"{n}::{op}" for n in names for op in ops]
        # a reduction over every axis keeps them as 1s by default: one value per tensor even where one is empty
        model.graph.node.extend(onnx.helper.make_node(op, [n], [f"{n}::{op}"]) for n in names for op in ops)
        model.graph.output.extend(onnx.ValueInfoProto(name=o) for o in outputs)
        sess = create_session(model.SerializeToString(), self.session, priority_order=True)
        width = len(ops)
        return [[values[k * width:(k + 1) * width] for k in range(len(names))]
                for values in (sess.run(outputs, feed) for feed in self.feeds)]

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


def _joined(even: Gram | None, odd: Gram | None) -> Gram | None:
    """The Gram of all feeds, remembering the even feeds' part when both halves saw rows."""
    if odd is None or even is None:
        return even
    return Gram(even.matrix + odd.matrix, even.rows + odd.rows, even.matrix)
