"""The calibration spec the CLI builds, and the one FeedSet every verb takes its inputs from."""

import numpy as np
import pytest

from edgec.compiler.calibration.feeds import feed_set
from edgec.compiler.calibration.spec import CalibrationSpec
from edgec.compiler.errors import InputError
from edgec.runtime.session import SessionConfig, create_session

import models
from clirun import run_cli


def _session(model):
    return create_session(model.SerializeToString(), SessionConfig())


def test_one_source_at_most_and_text_needs_a_tokenizer(tmp_path):
    with pytest.raises(InputError, match="give one of"):
        CalibrationSpec(npz=tmp_path / "a.npz", hook="m:f")
    with pytest.raises(InputError, match="--tokenizer"):
        CalibrationSpec(text=tmp_path / "t.txt")
    with pytest.raises(InputError, match="image-preset"):
        CalibrationSpec(images=tmp_path, image_preset="sepia")
    assert CalibrationSpec().kind == "synthesized" and CalibrationSpec(hook="m:f").kind == "hook"


def test_the_cli_refuses_two_sources_before_it_reads_the_model(tmp_path):
    code, text = run_cli("compile", tmp_path / "absent.onnx", "--calib", tmp_path / "a.npz", "--calib-hook", "m:f")
    assert code == 2 and "give one of --calib" in text and "absent.onnx" not in text


def test_npz_feeds_split_into_fit_search_and_held_out_with_the_originals_outputs(tmp_path):
    model = models.mlp_model("gelu")
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=np.random.default_rng(0).standard_normal((12, 7, models.D)).astype(np.float32))
    session = _session(model)
    feeds = feed_set(session, 1000, CalibrationSpec(npz=calib), 0, tmp_path / "m.onnx", [])
    assert (len(feeds.fit), len(feeds.search), len(feeds.held_out)) == (4, 4, 4)
    assert feeds.calibration == feeds.fit + feeds.search and feeds.source == str(calib)
    np.testing.assert_array_equal(feeds.held_out[0]["x"], np.load(calib)["x"][8:9])
    assert list(feeds.training_feeds()) == feeds.fit          # no training stream: recovery trains on the fit part
    np.testing.assert_array_equal(feeds.search_outputs[1][0], session.run(None, feeds.search[1])[0])


def test_synthesized_feeds_without_running_the_original(tmp_path):
    model = models.mlp_model("gelu")
    feeds = feed_set(_session(model), 1000, CalibrationSpec(samples=6), 0, tmp_path / "m.onnx", [],
                     run_original=False)
    assert feeds.source == "synthesized" and len(feeds.calibration) + len(feeds.held_out) == 6
    assert feeds.search_outputs is None and feeds.held_out_outputs is None


def test_bad_feeds_are_input_errors_naming_what_is_wrong(tmp_path):
    model = models.mlp_model("gelu")
    bad = tmp_path / "nan.npz"
    x = np.zeros((4, 7, models.D), np.float32)
    x[2, 0, 0] = np.nan
    np.savez(bad, x=x)
    with pytest.raises(InputError, match="NaN or Inf"):
        feed_set(_session(model), 1000, CalibrationSpec(npz=bad), 0, tmp_path / "m.onnx", [])
    with pytest.raises(InputError, match=r"no input\(s\) \['sr'\]"):
        feed_set(_session(model), 1000, CalibrationSpec(input_values={"sr": 16000}), 0, tmp_path / "m.onnx", [])


def test_an_npz_of_images_trains_recovery_on_variants_of_the_fit_images_and_other_data_on_itself(tmp_path):
    cnn = models.wide_cnn_model()
    images = tmp_path / "images.npz"
    np.savez(images, **{f"{i}/x": np.random.default_rng(i).standard_normal((2, 3, 16, 16)).astype(np.float32)
                        for i in range(8)})
    feeds = feed_set(_session(cnn), 1000, CalibrationSpec(npz=images), 0, tmp_path / "cnn.onnx", [])
    variants = list(feeds.training_feeds())
    assert len(variants) > len(feeds.fit) and variants[0]["x"].shape == (2, 3, 16, 16)
    assert not any(np.array_equal(v["x"], f["x"]) for v in variants for f in feeds.fit)
    tokens = tmp_path / "tokens.npz"
    np.savez(tokens, x=np.random.default_rng(0).standard_normal((12, 7, models.D)).astype(np.float32))
    plain = feed_set(_session(models.mlp_model("gelu")), 1000, CalibrationSpec(npz=tokens), 0, tmp_path / "m.onnx", [])
    assert [f["x"].tolist() for f in plain.training_feeds()] == [f["x"].tolist() for f in plain.fit]


def test_an_image_folder_with_no_images_beyond_calibration_trains_on_variants(tmp_path):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    spec = CalibrationSpec(images=folder, count=8)
    feeds = feed_set(_session(models.wide_cnn_model()), 1000, spec, 0, tmp_path / "cnn.onnx", [])
    variants = list(feeds.training_feeds())
    assert len(variants) > len(feeds.fit) and variants[0]["x"].shape[1:] == (3, 16, 16)
