"""The unlabeled-data sources (text, images, hooks) that feed calibration and recovery distillation."""

import sys

import numpy as np
import pytest


def _token_specs(shape=("batch", "sequence"), dtype=np.int64):
    from edgec.runtime.inputs import InputSpec

    return [InputSpec(n, np.dtype(dtype), shape) for n in ("input_ids", "attention_mask", "token_type_ids")]


def test_text_source_tokenizes_and_streams(tmp_path):
    source = _numbered_text_source(tmp_path, 50, count=10)
    assert len(source.calibration) == 10
    assert set(source.calibration[0]) == {"input_ids", "attention_mask", "token_type_ids"}
    batches = list(source.training())
    assert sorted(b["input_ids"].shape[0] for b in batches) == [8, 16, 16]    # the 40 lines after the first 10
    assert len(list(source.training())) == 3                              # a fresh stream each time


def test_text_training_stream_is_shuffled_anew_on_every_pass(tmp_path):
    source = _numbered_text_source(tmp_path, 200, count=10)
    first, second = _numbers(source.training()), _numbers(source.training())
    assert sorted(first) == sorted(second) == list(range(10, 200))      # every training line once, no calibration line
    assert first != sorted(first) and second != first
    assert [_numbers([f]) for f in source.calibration] == [[i] for i in range(10)]   # calibration keeps file order
    early = [i for i, n in enumerate(first) if n < 105]       # the file's first half spreads over the whole pass
    assert np.mean(early) == pytest.approx(len(first) / 2, rel=0.2)


def test_text_batches_hold_lines_of_similar_length(tmp_path):
    pytest.importorskip("transformers")
    from edgec.compiler.calibration.sources import text_source
    from edgec.samples.minilm import model_dir

    rng = np.random.default_rng(0)
    path = tmp_path / "mixed.txt"
    path.write_text("\n".join(" ".join(["word"] * int(n)) for n in rng.integers(1, 60, 401)) + "\n")
    source = text_source(path, model_dir(), _token_specs(), count=1, batch=16)
    batches = list(source.training())
    real = sum(int(b["attention_mask"].sum()) for b in batches)
    padded = sum(b["attention_mask"].size for b in batches)
    assert sum(len(b["input_ids"]) for b in batches) == 400 and real / padded > 0.9    # random batches: ~0.5


def test_text_feeds_follow_a_model_exported_with_fixed_batch_length_and_int32_ids(tmp_path):
    pytest.importorskip("transformers")
    from edgec.compiler.calibration.sources import text_source
    from edgec.samples.minilm import model_dir

    path = tmp_path / "lines.txt"
    path.write_text("\n".join(f"sentence {i} " + "word " * (i % 40) for i in range(61)) + "\n")
    source = text_source(path, model_dir(), _token_specs((2, 24), np.int32), count=9)
    feeds = source.calibration + list(source.training())
    assert len(source.calibration) == 4                                # 9 lines: four pairs, the odd one left out
    assert {f[k].shape for f in feeds for k in f} == {(2, 24)}         # padded and truncated to the fixed shape
    assert {f[k].dtype for f in feeds for k in f} == {np.dtype(np.int32)}
    assert len(list(source.training())) == 26                          # the 52 training lines, in pairs


@pytest.mark.parametrize("side", ["right", "left"])
def test_batches_are_padded_as_the_tokenizer_pads(side):
    pytest.importorskip("transformers")
    from transformers import AutoTokenizer

    from edgec.compiler.calibration.sources import padded_rows
    from edgec.samples.minilm import model_dir

    tok = AutoTokenizer.from_pretrained(str(model_dir()), local_files_only=True, padding_side=side)
    lines = ["a short one", "a much longer line with many more words in it", "mid length line here"]
    expected = tok([lines[2], lines[1]], padding=True, return_tensors="np")
    got = padded_rows(tok(lines), [2, 1], tok)
    assert set(got) == set(expected) and all(np.array_equal(got[k], expected[k]) for k in got)


def test_line_offsets_index_the_non_empty_lines_after_the_calibration_ones(tmp_path):
    from edgec.compiler.calibration.sources import _line_at, line_offsets

    path = tmp_path / "mixed.txt"
    path.write_bytes(b"one\r\n\n  \ntwo\ncaf\xc3\xa9 \xff three\n\nfour")
    with open(path, "rb") as f:
        assert [_line_at(f, o) for o in line_offsets(path, skip=0)] == ["one", "two", "caf\u00e9 \ufffd three", "four"]
        assert [_line_at(f, o) for o in line_offsets(path, skip=2)] == ["caf\u00e9 \ufffd three", "four"]
    assert len(line_offsets(path, skip=9)) == 0


def _numbered_text_source(folder, lines: int, count: int):
    pytest.importorskip("transformers")
    from edgec.compiler.calibration.sources import text_source
    from edgec.samples.minilm import model_dir

    path = folder / "lines.txt"
    path.write_text("\n".join(f"sentence {i}" for i in range(lines)) + "\n")
    return text_source(path, model_dir(), _token_specs(), count=count, batch=16)


def _numbers(feeds) -> list[int]:
    """The number in every `sentence N` line of the batches (the token after [CLS] and `sentence`)."""
    from transformers import AutoTokenizer

    from edgec.samples.minilm import model_dir

    tok = AutoTokenizer.from_pretrained(str(model_dir()), local_files_only=True)
    out = []
    for feed in feeds:
        for ids, mask in zip(feed["input_ids"], feed["attention_mask"], strict=True):
            out.append(int(tok.decode(ids[mask.astype(bool)], skip_special_tokens=True).split()[1]))
    return out


def test_image_source_resizes_to_the_input(tmp_path):
    from PIL import Image

    from edgec.compiler.calibration.sources import image_source
    from edgec.runtime.inputs import InputSpec

    for i in range(5):
        Image.fromarray(np.full((40, 50, 3), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    spec = InputSpec("pixel_values", np.dtype(np.float32), ("batch", 3, 32, 32))
    source = image_source(tmp_path, [spec], count=3)
    assert [f["pixel_values"].shape for f in source.calibration] == [(1, 3, 32, 32)] * 3
    assert len(list(source.training())) == 2
    assert source.calibration[1]["pixel_values"].max() == pytest.approx(40 / 255)


def test_images_follow_a_channels_last_input_and_a_fixed_batch(tmp_path):
    from PIL import Image

    from edgec.compiler.calibration.sources import image_source
    from edgec.runtime.inputs import InputSpec

    for i in range(7):
        image = np.zeros((40, 50, 3), np.uint8)
        image[..., 2] = 40 * i                                       # only the blue channel lit
        Image.fromarray(image).save(tmp_path / f"{i}.png")
    spec = InputSpec("image", np.dtype(np.float32), (2, 24, 32, 3))  # TensorFlow-style NHWC, batch fixed at 2
    source = image_source(tmp_path, [spec], count=4)
    feeds = source.calibration + list(source.training())
    assert len(source.calibration) == 2 and len(feeds) == 3            # 4 + 3 images in pairs, one left out
    assert {f["image"].shape for f in feeds} == {(2, 24, 32, 3)}
    assert source.calibration[1]["image"][1, :, :, 2].max() == pytest.approx(120 / 255)
    assert source.calibration[1]["image"][..., :2].max() == 0.0
    assert "NHWC" in source.label


def test_hook_source(tmp_path, monkeypatch):
    from edgec.compiler.calibration.sources import hook_source

    (tmp_path / "my_feeds.py").write_text(
        "import numpy as np\n"
        "def feeds(specs):\n"
        "    for i in range(6):\n"
        "        yield {'x': np.full((1, 4, 16), i, np.float32)}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    source = hook_source("my_feeds:feeds", [], count=4)
    assert len(source.calibration) == 4 and len(list(source.training())) == 2
    sys.modules.pop("my_feeds", None)


def test_a_corrupt_image_is_a_clear_error(tmp_path):
    from edgec.compiler.calibration.sources import image_source
    from edgec.compiler.errors import InputError
    from edgec.runtime.inputs import InputSpec

    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    spec = InputSpec("pixel_values", np.dtype(np.float32), ("batch", 3, 32, 32))
    with pytest.raises(InputError, match="broken.png: not a readable image"):
        image_source(tmp_path, [spec], count=3)




def test_an_npz_keyed_by_an_input_name_with_a_slash_feeds_it(tmp_path):
    from edgec.compiler.calibration.loading import load_npz_feeds
    from edgec.runtime.inputs import InputSpec

    specs = [InputSpec("gpu_0/data_0", np.dtype(np.float32), (1, 3, 4, 4))]
    path = tmp_path / "calib.npz"
    np.savez(path, **{"gpu_0/data_0": np.ones((3, 3, 4, 4), np.float32)})
    assert [f["gpu_0/data_0"].shape for f in load_npz_feeds(path, specs)] == [(1, 3, 4, 4)] * 3
    np.savez(path, **{f"{i}/gpu_0/data_0": np.ones((1, 3, 4, 4), np.float32) for i in range(2)})
    assert len(load_npz_feeds(path, specs)) == 2
