"""A test-side stand-in for the driver's calibration capture: runs the graph with onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import onnxruntime as ort

from edgec.passes.base import Gram


class OrtCalibration:
    def __init__(self, feeds, scored=0):
        self.feeds, self.scored = feeds, scored

    def activations(self, graph, names, max_rows=None):
        sess = self._session(graph, names)
        return {name: np.concatenate([a.reshape(-1, a.shape[-1]) for a in
                                      (sess.run([name], f)[0] for f in self.feeds)]).astype(float)[:max_rows]
                for name in names}

    def grams(self, graph, names, halves=False, axis=-1):
        sess = self._session(graph, names)
        out = {}
        for name in names:
            grams = [_gram(np.moveaxis(sess.run([name], f)[0], axis, -1)) for f in self.feeds]     # as the driver: per feed, and
            half = sum(g for g, _ in grams[::2]) if halves and len(grams) > 1 else None  # even feeds apart
            out[name] = Gram(sum(g for g, _ in grams), sum(n for _, n in grams), half)
        return out

    def ranges(self, graph, names):
        sess = self._session(graph, names)
        outs = [sess.run(names, f) for f in self.feeds]
        return {n: np.array([[float(o[k].min()), float(o[k].max())] for o in outs]) for k, n in enumerate(names)}

    def sizes(self, graph, names):
        sess = self._session(graph, names)
        outs = [sess.run(names, f) for f in self.feeds]
        return {n: max(int(o[k].size) for o in outs) for k, n in enumerate(names)}

    def _session(self, graph, names):
        model = gs.export_onnx(graph)
        model.ir_version = 8
        outputs = {o.name for o in model.graph.output}
        for name in names:
            if name not in outputs:
                model.graph.output.append(onnx.ValueInfoProto(name=name))
        return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _gram(array: np.ndarray) -> tuple[np.ndarray, int]:
    rows = array.reshape(-1, array.shape[-1]).astype(float)
    aug = np.concatenate([rows, np.ones((len(rows), 1))], axis=1)
    return aug.T @ aug, len(rows)


def apply_pass(name: str, model: onnx.ModelProto, feeds, judge=None, **options):
    """Run one pass on a model with calibration from `feeds` (and `judge` as its fidelity probe); returns
    (rewritten model, PassResult)."""
    from edgec.passes import PassContext, get_pass

    graph = gs.import_onnx(model)
    ctx = PassContext(calibration=OrtCalibration(feeds), options=options, fidelity=judge)
    result = get_pass(name).run(graph, ctx)
    graph.cleanup().toposort()
    out = gs.export_onnx(graph)
    out.ir_version = model.ir_version
    return out, result


def rel_err(model: onnx.ModelProto, other: onnx.ModelProto, feeds) -> float:
    """‖other(x) − model(x)‖ / ‖model(x)‖ over the feeds (first output)."""
    import models

    ref = np.concatenate([models.run(model, f)[0].ravel() for f in feeds])
    got = np.concatenate([models.run(other, f)[0].ravel() for f in feeds])
    return float(np.linalg.norm(ref - got) / np.linalg.norm(ref))


def fidelity_probe(model: onnx.ModelProto, feeds):
    """A test-side stand-in for the driver's fidelity probe: mean per-feed cosine of the first output."""
    import models

    refs = [models.run(model, f)[0].ravel() for f in feeds]

    def probe(graph: gs.Graph) -> float:
        candidate = gs.export_onnx(graph.copy(), do_type_check=False)
        candidate.ir_version = model.ir_version
        gots = [models.run(candidate, f)[0].ravel() for f in feeds]
        return float(np.mean([a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12) for a, b in zip(refs, gots, strict=True)]))

    return probe
