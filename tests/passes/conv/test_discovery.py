"""Which convolutions' channels can go, and why the others are left alone."""

import onnx_graphsurgeon as gs

from edgec.passes.conv.discovery import find_channel_groups

import models


def test_groups_follow_the_channels_through_what_exporters_put_between_convolutions():
    groups, near_misses = find_channel_groups(gs.import_onnx(models.wide_cnn_model()))
    shapes = [(g.channels, len(g.producers), [t.kind for t in g.terminals], len(g.depthwise)) for g in groups]
    # Conv → BN → Relu → Conv; Conv → SiLU → depthwise → Clip → 1×1 Conv; the residual block: the 1×1 Conv and
    # the branch's Conv both write the stream (one group), the branch's and the next Conv read it; the last
    # Conv → MaxPool → Flatten → Gemm
    assert shapes == [(24, 1, ["conv"], 0), (32, 1, ["conv"], 1), (32, 2, ["conv", "conv"], 0), (32, 1, ["linear"], 0)]
    assert len(groups[0].channel_constants) == 4                                      # the BN's four vectors
    residual = groups[2]
    assert residual.producers[1] is residual.terminals[0].node                         # reads and writes the stream
    assert groups[3].terminals[0].spatial == 16                                        # 4×4 maps per channel
    assert len(near_misses) == 1 and "depthwise" in near_misses[0]


def test_a_graph_output_or_an_unknown_op_leaves_the_producer_alone():
    groups, near_misses = find_channel_groups(gs.import_onnx(models.conv_model()))
    assert [g.channels for g in groups] == [8]          # the last Conv writes the graph output
    assert any("graph output" in m or "no consumer" in m for m in near_misses)


def test_branches_that_meet_are_one_group_or_none():
    import models as m

    graph = gs.import_onnx(m.wide_cnn_model())
    add = next(n for n in graph.nodes if n.op == "Add")
    add.inputs[1] = graph.inputs[0]       # the stream meets a graph input: nothing on either side can go
    groups, near_misses = find_channel_groups(graph)
    assert all("Add" not in " ".join(n.op for n in g.producers) for g in groups)
    assert any("graph input" in r for r in near_misses)
