"""--train-text: a general corpus mixed into the training stream, a feed of each in turn."""

import pytest

from edgec.compiler.calibration.feeds import _mixed

from clirun import run_cli


def test_two_streams_alternate_and_the_longer_one_finishes():
    mixed = _mixed(lambda: iter([{"a": 1}, {"a": 2}]), lambda: iter([{"b": 1}, {"b": 2}, {"b": 3}, {"b": 4}]))
    assert [next(iter(f.items())) for f in mixed()] == [("a", 1), ("b", 1), ("a", 2), ("b", 2), ("b", 3), ("b", 4)]
    assert len(list(mixed())) == 6          # every call is a fresh pass


def test_recovery_trains_on_both_and_says_so(save, tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("torch")
    from test_eval_text import _texts, _token_model

    from edgec.samples.minilm import model_dir

    model, (prose, code) = save(_token_model()), _texts(tmp_path)
    code_, out = run_cli("compile", model, "--calib-text", prose, "--tokenizer", model_dir(), "--calib-count", 24,
                         "--train-text", code, "--passes", "cleanup,prune", "--pass-option", "prune.keep=0.5",
                         "--recover", "--train-minutes", "0.02", "--min-cosine", "0", "--no-measure",
                         "-o", tmp_path / "out.onnx")
    assert code_ == 0, out
    assert "alternating with" in out and "code.txt" in out


def test_train_text_needs_a_tokenizer(save, tmp_path):
    from test_eval_text import _texts, _token_model

    model, (prose, code) = save(_token_model()), _texts(tmp_path)
    code_, out = run_cli("compile", model, "--calib", prose, "--train-text", code)
    assert code_ == 2 and "--train-text needs --tokenizer" in out


def test_recovery_on_text_mixes_in_general_text_and_judges_it_by_default(save, tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    pytest.importorskip("torch")
    from test_eval_text import _texts, _token_model

    from edgec.compiler.calibration import general_text
    from edgec.samples.minilm import model_dir

    monkeypatch.setattr(general_text, "CACHE", tmp_path / "cache")
    model, (prose, _) = save(_token_model()), _texts(tmp_path)
    code_, out = run_cli("compile", model, "--calib-text", prose, "--tokenizer", model_dir(), "--calib-count", 24,
                         "--passes", "cleanup,prune", "--pass-option", "prune.keep=0.5", "--recover",
                         "--train-minutes", "0.02", "--min-cosine", "0", "--no-measure", "--format", "json",
                         "-o", tmp_path / "out.onnx")
    assert code_ == 0, out
    import json

    report = json.loads(out[out.index("{"):])
    assert any("general text (" in n and "second domain" in n for n in report["notes"])
    assert "general-text-v1-" in report["calibration"]["evaluation_source"] and report["fidelity_eval"]
    assert "judged, not gated" in " ".join(report["notes"])


def test_a_goal_search_makes_the_general_text_once_on_the_host(save, tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    pytest.importorskip("torch")
    import json

    from test_eval_text import _texts, _token_model

    from edgec.compiler.calibration import general_text
    from edgec.samples.minilm import model_dir

    monkeypatch.setattr(general_text, "CACHE", tmp_path / "cache")
    made = []
    files = general_text.general_text_files
    monkeypatch.setattr(general_text, "general_text_files", lambda cache: made.append(cache) or files(cache))
    model, (prose, _) = save(_token_model()), _texts(tmp_path)
    code_, out = run_cli("compile", model, "--calib-text", prose, "--tokenizer", model_dir(), "--calib-count", 24,
                         "--goal", "size=0.99", "--recover", "--train-steps", "1", "--min-cosine", "0",
                         "--no-measure", "--format", "json", "-o", tmp_path / "out.onnx")
    assert code_ in (0, 1), out
    report = json.loads(out[out.index("{"):])
    assert len(made) == 1 and any("general text (" in n for n in report["notes"])
