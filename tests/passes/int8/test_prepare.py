"""ONNX Runtime's pre-processing, run so that it leaves nothing behind."""

import os

import models


def test_pre_processing_leaves_nothing_in_the_working_directory(tmp_path, monkeypatch):
    """Where symbolic shape inference leaves shapes unknown, ONNX Runtime saves sym_shape_infer_temp.onnx and
    uuid-named .data files into the working directory (seen on a gradient-boosting sweep model)."""
    import onnxruntime.quantization.shape_inference as shape_inference

    from edgec.passes.int8.prepare import _pre_processed

    real = shape_inference.quant_pre_process

    def leaky(source, out, **kwargs):
        open("sym_shape_infer_temp.onnx", "wb").close()          # what ONNX Runtime does, relative to the cwd
        return real(source, out, **kwargs)

    monkeypatch.setattr(shape_inference, "quant_pre_process", leaky)
    monkeypatch.chdir(tmp_path)
    model, failure = _pre_processed(models.mlp_model("gelu"))
    assert failure is None and len(model.graph.node) > 0
    assert os.listdir(tmp_path) == [] and os.getcwd() == str(tmp_path)
