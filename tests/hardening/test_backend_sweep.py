"""Every node test of the ONNX package: the identity pipeline (cleanup + discovery + no-op MLP passes)
keeps every output identical wherever ONNX Runtime runs the original model."""

import warnings
from collections import Counter

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import onnxruntime as ort
import pytest

from edgec.compiler.modelio import rewrite_blocker, to_model
from edgec.passes import PassContext, get_pass
from edgec.passes.mlp.discovery import find_mlps


def _cases():
    from onnx.backend.test.case import node

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return node.collect_testcases(None)


def _run(model: onnx.ModelProto, feed: dict) -> list:
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, feed)


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple)):      # sequence outputs
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict):               # map outputs
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind in "fc":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def _identity_pipeline(model: onnx.ModelProto) -> onnx.ModelProto:
    graph = gs.import_onnx(model)
    find_mlps(graph)
    for name, options in (("cleanup", {}), ("prune", {"keep": 1.0})):
        get_pass(name).run(graph, PassContext(options=options))
    graph.cleanup().toposort()
    return to_model(graph, model)


@pytest.mark.slow
def test_identity_pipeline_on_every_backend_node_test():
    outcomes, failures = Counter(), []
    for case in _cases():
        model = case.model
        inputs = case.data_sets[0][0] if case.data_sets else []
        names = [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
        if len(inputs) != len(names):
            outcomes["inputs not matched"] += 1
            continue
        feed = dict(zip(names, inputs, strict=True))
        try:
            expected = _run(model, feed)
        except Exception:  # noqa: BLE001 - ONNX Runtime lacks the op or rejects the model
            outcomes["ORT cannot run the original"] += 1
            continue
        if rewrite_blocker(model):
            outcomes["left unchanged: graphsurgeon cannot represent it"] += 1
            continue
        try:
            got = _run(_identity_pipeline(model), feed)
        except Exception as exc:  # noqa: BLE001
            failures.append(f"{case.name}: {type(exc).__name__}: {str(exc)[:160]}")
            continue
        if len(got) != len(expected) or not all(_same(a, b) for a, b in zip(expected, got, strict=True)):
            failures.append(f"{case.name}: outputs differ")
            continue
        outcomes["identical"] += 1
    print(dict(outcomes))
    assert not failures, f"{len(failures)} models changed:\n" + "\n".join(failures[:40])
    assert outcomes["identical"] > 1000
