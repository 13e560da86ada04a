"""The torch view's operators against the ONNX package's own node tests: every case whose operators the
view claims runs through it and must give the test's expected outputs (or decline with NotImplementedError,
which the recover pass turns into its block-wise fallback)."""

import warnings

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

from edgec.passes.training.view import TorchView, to_torch_feed, unsupported_ops  # noqa: E402


def _cases():
    from onnx.backend.test.case import node

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [c for c in node.collect_testcases(None) if c.data_sets and not unsupported_ops(c.model)
                and not any(a.type == onnx.AttributeProto.GRAPH for n in c.model.graph.node for a in n.attribute)]


def _matches(expected, got) -> bool:
    expected, got = np.asarray(expected), np.asarray(got)
    if expected.shape != got.shape:
        return False
    if expected.dtype.kind in "fc":
        return bool(np.allclose(got.astype(np.float64), expected.astype(np.float64), rtol=1e-4, atol=1e-5,
                                equal_nan=True))
    return bool(np.array_equal(got, expected))


def _outcome(case) -> str | None:
    """None when the view reproduces the case (or declines it), else what went wrong."""
    inputs, expected = case.data_sets[0]
    names = [i.name for i in case.model.graph.input if i.name not in {t.name for t in case.model.graph.initializer}]
    if len(inputs) != len(names) or any(not isinstance(x, np.ndarray) for x in inputs):
        return None                                    # sequences, maps, optionals: not tensors
    try:
        view = TorchView(case.model)
        with torch.no_grad():
            got = view(to_torch_feed(dict(zip(names, inputs, strict=True))))
    except NotImplementedError:
        return None
    except Exception as exc:  # noqa: BLE001 - reported below, with the case's name
        return f"{type(exc).__name__}: {str(exc)[:120]}"
    outputs = [o.name for o in case.model.graph.output]
    wrong = [n for n, e in zip(outputs, expected, strict=False) if not _matches(e, got[n].numpy())]
    return f"outputs differ: {wrong}" if wrong else None


def test_every_operator_the_view_claims_matches_the_onnx_node_tests():
    cases = _cases()
    failures = [f"{c.name}: {why}" for c in cases if (why := _outcome(c))]
    assert len(cases) > 300
    assert not failures, "\n".join(failures)


def test_slices_with_negative_steps_match_onnx_for_every_start_and_end():
    """Reversing exports (CRNN text heads: Slice(-1, INT64_MIN + 1, step -1)) and the clamping of both ends, as
    ONNX Runtime computes them (onnx's reference evaluator slices like numpy, which differs below -n)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from edgec.passes.training.ops import OPS

    x = np.arange(7 * 3, dtype=np.float32).reshape(7, 3)
    big = np.iinfo(np.int64).max
    bounds = [-big, -9, -7, -3, -1, 0, 2, 6, 7, 9, big]
    node = helper.make_node("Slice", ["x", "s", "e", "a", "t"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, TensorProto.INT64 if n != "x" else
                                                                          TensorProto.FLOAT, None)
                                            for n in ("x", "s", "e", "a", "t")],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    reference = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for step in (-1, -2, -3, 1, 2):
        for start in bounds:
            for end in bounds:
                feeds = {"x": x, "s": np.array([start]), "e": np.array([end]), "a": np.array([0]),
                         "t": np.array([step])}
                want = reference.run(None, feeds)[0]
                got = OPS["Slice"]([torch.from_numpy(x)] + [torch.from_numpy(feeds[k]) for k in "seat"], {})[0]
                assert np.array_equal(got.numpy(), want), (start, end, step)
