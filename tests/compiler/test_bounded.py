from onnx import TensorProto, helper

from edgec.compiler.bounded import unit_interval_outputs


def _model(nodes, outputs):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs]
    return helper.make_model(helper.make_graph(nodes, "g", [x], outs))


def test_sigmoid_and_softmax_outputs_through_carriers_and_concats_are_probabilities():
    nodes = [helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Flatten", ["s"], ["p"]),
             helper.make_node("Softmax", ["x"], ["q"]), helper.make_node("Concat", ["s", "q"], ["both"], axis=1),
             helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Concat", ["s", "r"], ["mixed"], axis=1),
             helper.make_node("Mul", ["s", "x"], ["scaled"])]
    model = _model(nodes, ["p", "q", "both", "r", "mixed", "scaled"])
    assert unit_interval_outputs(model) == {"p", "q", "both"}


def test_an_if_whose_branches_both_give_a_probability_gives_one():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])

    def branch(nodes, out):
        return helper.make_graph(nodes, "b", [], [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)])

    then = branch([helper.make_node("Sigmoid", ["x"], ["t"])], "t")            # reads the outer x
    other = branch([helper.make_node("Identity", ["p"], ["e"])], "e")           # the outer probability
    plain = branch([helper.make_node("Relu", ["x"], ["r"])], "r")
    nodes = [helper.make_node("Sigmoid", ["x"], ["p"]),
             helper.make_node("ReduceMax", ["p"], ["m"], keepdims=0),
             helper.make_node("Greater", ["m", "half"], ["c"]),
             helper.make_node("If", ["c"], ["out"], then_branch=then, else_branch=other),
             helper.make_node("If", ["c"], ["mixed"], then_branch=plain, else_branch=other)]
    half = helper.make_tensor("half", TensorProto.FLOAT, [], [0.5])
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in ("out", "mixed")]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], outs, [half]))
    assert unit_interval_outputs(model) == {"out"}
