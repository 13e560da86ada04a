"""Image folders get the model's preprocessing: presets, a preprocessor_config.json, resize modes."""

import json

import numpy as np
import pytest
from PIL import Image

from edgec.compiler.calibration.image_prep import fitted, image_prep
from edgec.compiler.calibration.sources import image_source
from edgec.compiler.errors import InputError
from edgec.runtime.inputs import InputSpec


def test_imagenet_preset_normalizes_per_channel():
    prep = image_prep("imagenet", None, None)
    out = prep.normalize(np.full((2, 2, 3), 0.485, np.float32))
    assert out[0, 0, 0] == pytest.approx(0.0) and out[0, 0, 1] == pytest.approx((0.485 - 0.456) / 0.224)


def test_a_hugging_face_preprocessor_config_beside_the_model_is_used(tmp_path):
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(
        {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "do_center_crop": True}))
    prep = image_prep(None, None, tmp_path / "model.onnx")
    assert prep.known and prep.resize == "crop"
    assert prep.normalize(np.ones((1, 1, 3), np.float32))[0, 0, 0] == pytest.approx(1.0)


def test_without_preset_or_config_the_preprocessing_is_unknown(tmp_path):
    assert not image_prep(None, None, tmp_path / "model.onnx").known


@pytest.mark.parametrize("mode", ["stretch", "crop", "pad"])
def test_every_resize_mode_gives_the_input_size(mode):
    assert fitted(Image.new("RGB", (300, 120)), 64, 48, mode).size == (64, 48)


def test_image_source_applies_the_preset(tmp_path):
    for i in range(3):
        Image.new("RGB", (32, 32), (255, 255, 255)).save(tmp_path / f"{i}.png")
    spec = InputSpec("pixels", np.dtype(np.float32), (1, 3, 16, 16))
    source = image_source(tmp_path, [spec], count=3, prep=image_prep("signed", "pad", None))
    assert np.allclose(source.calibration[0]["pixels"], 1.0) and "pad" in source.label


def test_an_unknown_preset_is_an_input_error():
    with pytest.raises(InputError):
        image_prep("normalised", None, None)


@pytest.mark.parametrize("config", [[1, 2], {"image_mean": None}, {"image_std": [0.5, 0.5]},
                                    {"rescale_factor": "x"}, {"image_std": 0}])
def test_a_malformed_preprocessor_config_is_an_input_error(tmp_path, config):
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    with pytest.raises(InputError):
        image_prep(None, None, tmp_path / "model.onnx")


def test_single_numbers_in_a_config_apply_to_every_channel(tmp_path):
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"image_mean": 0.5, "image_std": 0.25}))
    prep = image_prep(None, None, tmp_path / "model.onnx")
    assert prep.mean == (0.5, 0.5, 0.5) and prep.std == (0.25, 0.25, 0.25)
