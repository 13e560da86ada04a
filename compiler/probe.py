"""The fidelity probe a pass may call while it searches: how close a candidate graph is to the original."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from edgec.compiler.calibration import Feed
from edgec.runtime.fidelity import comparable, compare_outputs, token_mask
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
        self.masks = [token_mask(f) for f in feeds]
        self.calls = 0

    def __call__(self, graph: gs.Graph) -> float:
        from edgec.compiler.modelio import to_model

        self.calls += 1
        sess = create_session(to_model(graph.copy(), self.original).SerializeToString(), self.session)
        got = [sess.run(self.names, f) for f in self.feeds]
        worst = 1.0
        for k, name in enumerate(self.names):
            ref = [comparable(r[k]) for r in self.reference]
            try:
                fid = compare_outputs(name, ref, [comparable(g[k]) for g in got], self.masks)
            except ValueError:        # another output shape than the original's
                return -1.0
            worst = min(worst, fid.score if fid.score == fid.score else -1.0)
        return worst
