"""Reading and rewriting Reshape shape operands: constants, and Concats of constant and computed pieces."""

import numpy as np
import onnx_graphsurgeon as gs

from edgec.passes.attention.shapes import rewrite_shape, shape_entries


def _reshape_with(shape_tensor: gs.Tensor) -> tuple[gs.Graph, gs.Node]:
    x = gs.Variable("x", dtype=np.float32, shape=["b", "s", 32])
    y = gs.Variable("y", dtype=np.float32)
    node = gs.Node("Reshape", inputs=[x, shape_tensor], outputs=[y])
    return gs.Graph(nodes=[node], inputs=[x], outputs=[y]), node


def _concat_shape() -> tuple[gs.Graph, gs.Node, gs.Node]:
    x = gs.Variable("x", dtype=np.float32, shape=["b", "s", 32])
    dims = gs.Variable("dims", dtype=np.int64)
    batch = gs.Variable("batch", dtype=np.int64)
    batch1 = gs.Variable("batch1", dtype=np.int64)
    shape = gs.Variable("shape", dtype=np.int64)
    y = gs.Variable("y", dtype=np.float32)
    nodes = [gs.Node("Shape", inputs=[x], outputs=[dims]),
             gs.Node("Gather", inputs=[dims, gs.Constant("zero", np.array(0, np.int64))], outputs=[batch]),
             gs.Node("Unsqueeze", inputs=[batch, gs.Constant("axes", np.array([0], np.int64))], outputs=[batch1]),
             gs.Node("Concat", attrs={"axis": 0}, outputs=[shape],
                     inputs=[batch1, gs.Constant("minus", np.array([-1], np.int64)),
                             gs.Constant("heads", np.array([4], np.int64)), gs.Constant("dim", np.array([8], np.int64))])]
    reshape = gs.Node("Reshape", inputs=[x, shape], outputs=[y])
    graph = gs.Graph(nodes=nodes + [reshape], inputs=[x], outputs=[y])
    return graph, reshape, nodes[-1]


def test_a_constant_shape_is_read_and_rewritten():
    graph, node = _reshape_with(gs.Constant("s", np.array([0, 0, 4, 8], np.int64)))
    assert shape_entries(node.inputs[1]) == [0, 0, 4, 8]
    assert rewrite_shape(graph, node, 1, lambda e: [0, 0, 2, 8])
    np.testing.assert_array_equal(node.inputs[1].values, [0, 0, 2, 8])


def test_a_concat_keeps_its_computed_pieces_and_the_old_concat_is_untouched():
    graph, reshape, concat = _concat_shape()
    assert shape_entries(reshape.inputs[1]) == [None, -1, 4, 8]
    assert rewrite_shape(graph, reshape, 1, lambda e: [e[0], -1, 2, 8])
    new = reshape.inputs[1].inputs[0]
    assert new is not concat and new.inputs[0] is concat.inputs[0]             # the batch piece, still computed
    assert [int(t.values[0]) for t in new.inputs[1:]] == [-1, 2, 8]
    assert int(concat.inputs[2].values[0]) == 4


def test_a_computed_entry_can_become_a_known_number():
    graph, reshape, _ = _concat_shape()
    assert rewrite_shape(graph, reshape, 1, lambda e: [7, -1, 4, 8])
    assert int(reshape.inputs[1].inputs[0].inputs[0].values[0]) == 7


def test_nothing_to_change_reports_no_rewrite():
    graph, reshape, _ = _concat_shape()
    assert not rewrite_shape(graph, reshape, 1, lambda e: e)
