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
