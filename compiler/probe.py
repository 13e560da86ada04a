"""The fidelity probe a pass may call while it searches: how close a candidate graph is to the original."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from edgec.compiler.calibration import Feed
from edgec.runtime.fidelity import compare_runs
from edgec.runtime.session import SessionConfig, create_session


class FidelityProbe:
    """Min over outputs of the fidelity score (`runtime.fidelity`: cosine for vectors, range error for
    few-value or non-negative outputs, agreement for labels) against the original's outputs on `feeds`."""

    def __init__(self, reference_session, feeds: list[Feed], session: SessionConfig, original: onnx.ModelProto,
                 reference_outputs: list[list[np.ndarray]] | None = None):
        """`reference_outputs`: the original's outputs on `feeds` (all, in session order) if already computed."""
        self.feeds = feeds
        self.session = session
        self.original = original
        self.names = [o.name for o in reference_session.get_outputs()]
        self.reference = reference_outputs or [reference_session.run(self.names, f) for f in feeds]
        self.calls = 0

    def __call__(self, graph: gs.Graph) -> float:
        from edgec.compiler.modelio import to_model

        self.calls += 1
        sess = create_session(to_model(graph.copy(), self.original).SerializeToString(), self.session)
        got = [sess.run(self.names, f) for f in self.feeds]
        results = compare_runs(self.names, self.reference, got, self.feeds)
        scores = [-1.0 if isinstance(f, str) or f.score != f.score else f.score for f in results]
        return min([1.0, *scores])
