"""The driver's calibration capture: streamed Gram matrices, with the even feeds' part kept apart."""

import numpy as np
import onnx_graphsurgeon as gs
import pytest

from edgec.compiler.capture import ActivationCapture
from edgec.runtime.session import SessionConfig

import models


def _gram_of(arrays):
    rows = np.concatenate([a.reshape(-1, a.shape[-1]) for a in arrays]).astype(np.float64)
    aug = np.concatenate([rows, np.ones((len(rows), 1))], axis=1)
    return aug.T @ aug, len(rows)


@pytest.mark.parametrize("count", [1, 3])
def test_grams_sum_every_feed_and_keep_the_even_feeds_part_when_asked(count):
    model = models.mlp_model("gelu", blocks=1)
    feeds = models.feeds(model, count)
    capture = ActivationCapture(feeds, SessionConfig(), model)
    name = model.graph.output[0].name
    gram = capture.grams(gs.import_onnx(model), [name], halves=True)[name]
    outputs = [models.run(model, f)[0] for f in feeds]
    expected, rows = _gram_of(outputs)
    np.testing.assert_allclose(gram.matrix, expected, rtol=1e-10)
    assert gram.rows == rows
    if count == 1:
        assert gram.half is None           # nothing to validate against
    else:
        np.testing.assert_allclose(gram.half, _gram_of(outputs[::2])[0], rtol=1e-10)
    plain = capture.grams(gs.import_onnx(model), [name])[name]
    np.testing.assert_allclose(plain.matrix, expected, rtol=1e-10)
    assert plain.rows == rows and plain.half is None     # the extra matrix only on request


def test_ranges_are_each_tensors_min_and_max_on_each_feed():
    model = models.mlp_model("gelu", blocks=1)
    feeds = models.feeds(model, 3)
    graph = gs.import_onnx(model)
    hidden = next(n.outputs[0].name for n in graph.nodes if n.op == "MatMul")
    names = [hidden, model.graph.output[0].name]
    ranges = ActivationCapture(feeds, SessionConfig(), model).ranges(graph, names)
    values = ActivationCapture(feeds, SessionConfig(), model).activations(graph, names)
    for name in names:
        assert ranges[name].shape == (3, 2)
        assert np.isclose(ranges[name][:, 0].min(), values[name].min(), rtol=1e-6)
        assert np.isclose(ranges[name][:, 1].max(), values[name].max(), rtol=1e-6)


def test_sizes_are_each_tensors_most_elements_on_one_feed():
    model = models.mlp_model("gelu", blocks=1)
    graph = gs.import_onnx(model)
    name = model.graph.output[0].name
    sizes = ActivationCapture(models.feeds(model, 2), SessionConfig(), model).sizes(graph, [name])
    assert sizes == {name: models.run(model, models.feeds(model, 1)[0])[0].size}
