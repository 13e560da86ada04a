"""int8.ranges: how far one half of the calibration inputs' activation ranges reach beyond the other's."""

import numpy as np
import onnx_graphsurgeon as gs

from edgec.passes.int8.ranges import histogram_first_feed, layer_tensors, method_feeds, range_growth

import models


class _Ranges:
    """A calibration source whose per-feed [min, max] of every tensor is given."""

    def __init__(self, per_feed):
        self.per_feed = np.asarray(per_feed, np.float64)
        self.feeds = [{}] * len(self.per_feed)

    def ranges(self, graph, names):
        return {n: self.per_feed for n in names}


def test_growth_is_the_share_of_the_covering_span_one_half_reaches_beyond():
    graph = gs.import_onnx(models.cnn_classifier_model())
    assert layer_tensors(graph, ("Conv",))
    same = _Ranges([[-1, 1], [-1, 1], [-1, 1], [-1, 1]])
    assert range_growth(graph, same, ("Conv",))[0] == 0.0
    # odd feeds reach 3 where the even ones stop at 1 (span [-1, 1] = 2): 100 %
    wider = _Ranges([[-1, 1], [-1, 3], [-1, 1], [-1, 2]])
    growth, where = range_growth(graph, wider, ("Conv",))
    assert growth == 1.0 and where
    # zero always counts as covered (uint8 ranges include it): a non-negative tensor's span starts at 0
    relu = _Ranges([[0.5, 4], [0.2, 4], [0.5, 4], [0.1, 4]])
    assert range_growth(graph, relu, ("Conv",))[0] == 0.0


def test_too_few_feeds_never_count_as_stable():
    graph = gs.import_onnx(models.cnn_classifier_model())
    assert range_growth(graph, _Ranges([[-1, 1], [-1, 1], [-1, 1]]), ("Conv",))[0] == float("inf")


class _PerTensor(_Ranges):
    def __init__(self, by_tensor):
        self.by_tensor = {n: np.asarray(r, np.float64) for n, r in by_tensor.items()}
        self.feeds = [{}] * len(next(iter(self.by_tensor.values())))

    def ranges(self, graph, names):
        return {n: self.by_tensor[n] for n in names}

    def sizes(self, graph, names):
        return {n: self.size for n in names}

    size = 1000


def test_histograms_start_on_the_feed_that_covers_every_tensor_best():
    graph = gs.import_onnx(models.cnn_classifier_model())
    names = layer_tensors(graph, ("Conv",))
    # a state-like tensor at zero on the first feed, large later: starting there would grow the bins without bound
    ranges = {n: [[0, 0], [-50, 40], [-2, 3]] if i == 0 else [[-1, 1], [-1, 2], [-1, 4]] for i, n in enumerate(names)}
    first, growth = histogram_first_feed(graph, _PerTensor(ranges), ("Conv",))
    assert first == 1 and growth == 2.0          # feed 1: every tensor within 2× of its overall magnitude
    zero_everywhere = {n: [[0, 0], [0, 0]] for n in names}
    assert histogram_first_feed(graph, _PerTensor(zero_everywhere), ("Conv",)) == (0, 1.0)


def test_histogram_methods_collect_the_covering_feed_first_or_are_left_out():
    model = models.cnn_classifier_model()
    names = layer_tensors(gs.import_onnx(model), ("Conv",))
    feeds = [{"i": np.full(1, k)} for k in range(3)]
    ordered = {n: [[0, 0], [-50, 40], [-2, 3]] if i == 0 else [[-1, 1], [-1, 2], [-1, 4]] for i, n in enumerate(names)}
    chosen = dict(method_feeds(["minmax", "percentile"], model, _PerTensor(ordered), feeds, ("Conv",), notes := []))
    assert [f["i"][0] for f in chosen["percentile"]] == [1, 0, 2] and chosen["minmax"] == feeds and not notes
    # every feed leaves some tensor 100× below its overall magnitude: the bins would grow 100-fold
    spread = {n: [[-100, 100], [-1, 1]] if i == 0 else [[-1, 1], [-100, 100]] for i, n in enumerate(names)}
    chosen = dict(method_feeds(["minmax", "percentile"], model, _PerTensor(spread), feeds[:2], ("Conv",), notes))
    assert list(chosen) == ["minmax"] and "percentile ranges not tried" in notes[0]


def test_histogram_methods_are_left_out_where_one_input_holds_too_many_activations():
    model = models.cnn_classifier_model()
    names = layer_tensors(gs.import_onnx(model), ("Conv",))
    source = _PerTensor({n: [[-1, 1], [-1, 1]] for n in names})
    source.size = 200 * 2**20                     # 800 MB of float32 per tensor and input
    chosen = dict(method_feeds(["minmax", "percentile"], model, source, [{}, {}], ("Conv",), notes := []))
    assert list(chosen) == ["minmax"] and "hold every activation" in notes[0]
