import numpy as np
import onnx
import onnx_graphsurgeon as gs
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec.passes.base import PassContext
from edgec.passes.cleanup import CleanupPass
from edgec.passes.exact.gelu import gelu_fused
from edgec.passes.training.view import unsupported_ops

SQRT_2_OVER_PI = float(np.sqrt(2 / np.pi))


def _scalar(name: str, value: float, rank: int = 0) -> onnx.TensorProto:
    return numpy_helper.from_array(np.full((1,) * rank, value, np.float32), name)


def _model(form: str, cubic: float = 0.044715, extra_reader: bool = False, rank: int = 0) -> onnx.ModelProto:
    """x @ w → a GELU written out (`form`: jax, the order tf2onnx writes JAX's tanh GELU in; erf, PyTorch's before
    opset 20) → @ w2."""
    rng = np.random.default_rng(0)
    init = [numpy_helper.from_array(rng.normal(0, 1, (6, 8)).astype(np.float32), "w"),
            numpy_helper.from_array(rng.normal(0, 1, (8, 3)).astype(np.float32), "w2")]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["a"])]
    if form == "jax":
        init += [_scalar("c", cubic), _scalar("k", SQRT_2_OVER_PI), _scalar("one", 1.0, rank), _scalar("half", 0.5)]
        nodes += [helper.make_node("Mul", ["c", "a"], ["m0"]), helper.make_node("Mul", ["a", "m0"], ["m1"]),
                  helper.make_node("Mul", ["a", "m1"], ["m2"]), helper.make_node("Add", ["a", "m2"], ["s"]),
                  helper.make_node("Mul", ["k", "s"], ["m3"]), helper.make_node("Tanh", ["m3"], ["t"]),
                  helper.make_node("Add", ["one", "t"], ["u"]), helper.make_node("Mul", ["half", "u"], ["m4"]),
                  helper.make_node("Mul", ["a", "m4"], ["h"], name="gelu_out")]
    else:
        init += [_scalar("root2", float(np.sqrt(2))), _scalar("one", 1.0), _scalar("half", 0.5)]
        nodes += [helper.make_node("Div", ["a", "root2"], ["d"]), helper.make_node("Erf", ["d"], ["e"]),
                  helper.make_node("Add", ["e", "one"], ["u"]), helper.make_node("Mul", ["a", "u"], ["p"]),
                  helper.make_node("Mul", ["p", "half"], ["h"], name="gelu_out")]
    nodes += [helper.make_node("MatMul", ["h", "w2"], ["y"])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4, 3])]
    if extra_reader:
        outputs.append(helper.make_tensor_value_info("u", TensorProto.FLOAT, [2, 4, 8]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 6])],
                              outputs, init)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(["y"], {"x": x})[0]


@pytest.mark.parametrize(("form", "op"), [("jax", "FastGelu"), ("erf", "Gelu")])
def test_a_written_out_gelu_becomes_the_one_op_and_computes_the_same(form, op):
    model = _model(form)
    x = np.random.default_rng(1).normal(0, 2, (2, 4, 6)).astype(np.float32)
    expected = _run(model, x)
    fused, count = gelu_fused(onnx.load_from_string(model.SerializeToString()))
    onnx.checker.check_model(fused)
    assert count == 1
    assert [n.op_type for n in fused.graph.node] == ["MatMul", op, "MatMul"]
    assert next(n for n in fused.graph.node if n.op_type == op).domain == "com.microsoft"
    np.testing.assert_allclose(_run(fused, x), expected, rtol=1e-4, atol=1e-4)
    assert unsupported_ops(fused) == []         # the torch view (recover, gates) runs it


def test_a_chain_that_is_only_near_a_gelu_is_left_alone():
    assert gelu_fused(_model("jax", cubic=0.045))[1] == 0


def test_a_chain_whose_inner_value_is_read_elsewhere_is_left_alone():
    assert gelu_fused(_model("jax", extra_reader=True))[1] == 0


def test_a_constant_of_more_axes_than_the_input_is_left_alone():
    """A [1, 1, 1, 1] constant would make the chain's result rank 4 where x is rank 3: the op would not."""
    assert gelu_fused(_model("jax", rank=4))[1] == 0
    assert gelu_fused(_model("jax", rank=3))[1] == 1


def test_cleanup_fuses_it_for_the_cpu_and_not_for_a_mobile_ep():
    result = CleanupPass().run(gs.import_onnx(_model("jax")), PassContext())
    assert result.changed and result.stats["gelu_fused"] == 1 and result.stats["beyond_runtime"] == 1
    assert any("GELU" in note for note in result.notes)
    mobile = PassContext(providers=("NnapiExecutionProvider", "CPUExecutionProvider"))
    assert CleanupPass().run(gs.import_onnx(_model("jax")), mobile).stats["gelu_fused"] == 0
