import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from edgec.compiler.sparse_storage import densify_sparse_initializers, sparsify_initializers

import models


def _zeroed_model(fraction: float):
    model = models.mlp_model("relu", blocks=1)
    rng = np.random.default_rng(0)
    for i, init in enumerate(model.graph.initializer):
        array = numpy_helper.to_array(init).copy()
        if array.ndim == 2:
            array[rng.random(array.shape) < fraction] = 0
            array = np.tile(array, (1, 1))
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(array, init.name))
    return model


def test_sparse_initializers_load_in_ort_and_match_dense(monkeypatch):
    import edgec.compiler.sparse_storage as storage

    monkeypatch.setattr(storage, "MIN_ELEMENTS", 16)
    model = _zeroed_model(0.9)
    sparse, moved = sparsify_initializers(onnx.ModelProto.FromString(model.SerializeToString()))
    assert len(moved) == 2 and len(sparse.graph.sparse_initializer) == 2
    assert sparse.ByteSize() < model.ByteSize()
    onnx.checker.check_model(sparse)
    feed = models.feeds(model)[0]
    got = ort.InferenceSession(sparse.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)[0]
    np.testing.assert_array_equal(got, models.run(model, feed)[0])
    dense = densify_sparse_initializers(sparse)
    assert not dense.graph.sparse_initializer
    np.testing.assert_array_equal(models.run(dense, feed)[0], models.run(model, feed)[0])


def test_half_zero_weights_stay_dense(monkeypatch):
    import edgec.compiler.sparse_storage as storage

    monkeypatch.setattr(storage, "MIN_ELEMENTS", 16)
    _, moved = sparsify_initializers(_zeroed_model(0.5))
    assert moved == []
