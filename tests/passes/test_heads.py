"""The heads pass: whole heads leave Q/K/V, the output projection and the Reshape constants; the rewrite
computes exactly what the original computes with those heads' output rows zeroed."""

import sys
from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest

from edgec.passes import PassContext, PassOptionError, get_pass
from edgec.passes.attention.discovery import find_attention

import models
from calib import OrtCalibration, apply_pass, rel_err

HARDENING = Path(__file__).resolve().parents[1] / "hardening"


def _masked_like(original: onnx.ModelProto, pruned: onnx.ModelProto) -> onnx.ModelProto:
    """The original with each block's output projection zeroed on the heads the pruned model lost: it must
    compute what the pruned model computes (without compensation)."""
    graph = gs.import_onnx(original)
    after = find_attention(gs.import_onnx(pruned)).blocks
    for block, cut in zip(find_attention(graph).blocks, after, strict=True):
        kept = {tuple(np.round(cut.q.weight[:, h * cut.head_dim], 6)) for h in range(cut.heads)}
        for h in range(block.heads):
            if tuple(np.round(block.q.weight[:, h * block.head_dim], 6)) not in kept:
                rows = slice(h * block.head_dim, (h + 1) * block.head_dim)
                block.o.weight[rows] = 0
                block.o.weight_source.values = block.o.weight
    return gs.export_onnx(graph)


@pytest.mark.parametrize("heads", [2, 4])
def test_removed_heads_equal_zeroed_output_rows(heads):
    model = models.attention_model(blocks=2, heads=heads)
    feeds = models.feeds(model, 8, seq=12)
    pruned, result = apply_pass("heads", model, feeds, keep=0.5, compensate=False, scope="layer")
    assert result.changed and result.stats["heads_after"] == heads, result
    onnx.checker.check_model(pruned)
    for block in find_attention(gs.import_onnx(pruned)).blocks:
        assert block.heads == heads // 2 and block.q.weight.shape == (models.D, models.D // 2)
        assert block.o.weight.shape == (models.D // 2, models.D)
    assert rel_err(_masked_like(model, pruned), pruned, feeds) < 1e-5


def test_least_squares_compensation_lowers_the_error():
    model = models.attention_model(blocks=2, heads=4)
    feeds = models.feeds(model, 16, seq=12)
    plain, _ = apply_pass("heads", model, feeds, keep=0.5, compensate=False)
    solved, _ = apply_pass("heads", model, feeds, keep=0.5)
    assert rel_err(model, solved, feeds) < rel_err(model, plain, feeds)


def test_keep_everything_is_a_no_op():
    model = models.attention_model()
    _, result = apply_pass("heads", model, models.feeds(model, 4), keep=1.0)
    assert not result.changed and "nothing to remove" in result.notes[-1]


def test_a_model_without_attention_is_a_no_op_with_the_reason():
    model = models.mlp_model()
    _, result = apply_pass("heads", model, models.feeds(model, 4), keep=0.5)
    assert not result.changed and "no attention block" in result.notes[-1]


def test_a_per_head_term_the_edit_cannot_slice_leaves_the_block_alone():
    model = models.attention_model(blocks=1, heads=4, head_bias=True)
    feeds = models.feeds(model, 6, seq=10)
    pruned, result = apply_pass("heads", model, feeds, keep=0.5)
    assert not result.changed and any("left alone" in n for n in result.notes)
    assert rel_err(model, pruned, feeds) < 1e-6


def test_floor_search_asks_the_probe():
    model = models.attention_model(blocks=2, heads=4)
    seen = []

    def fidelity(graph):       # a stand-in probe: fidelity falls as heads go
        count = sum(b.heads for b in find_attention(graph).blocks)
        seen.append(count)
        return count / 8

    graph = gs.import_onnx(model)
    ctx = PassContext(calibration=OrtCalibration(models.feeds(model, 8, seq=10)), fidelity=fidelity,
                      options={"floor": 0.7})
    result = get_pass("heads").run(graph, ctx)
    assert result.changed and sum(b.heads for b in find_attention(graph).blocks) == 6
    assert seen and "chose" in result.notes[-1]


def test_bad_options_are_refused():
    model = models.attention_model()
    for options in ({"keep": 0}, {"min_heads": 0}, {"scope": "everywhere"}):
        with pytest.raises(PassOptionError):
            apply_pass("heads", model, models.feeds(model, 2), **options)


@pytest.mark.slow
@pytest.mark.parametrize("name,exporter,opset", [("vit", "dynamo", 18), ("clip_text", "legacy", 14),
                                                 ("whisper_encoder", "legacy", 17), ("t5_gated", "legacy", 17)])
def test_real_exports_lose_heads_or_say_why(tmp_path, name, exporter, opset):
    """T5 adds a per-head position bias computed in the graph: its blocks must be left alone, unharmed."""
    pytest.importorskip("transformers")
    from clirun import run_cli

    sys.path.insert(0, str(HARDENING))
    src = tmp_path / f"{name}.onnx"
    code, out = run_cli("export", f"hf_models:{name}", "-o", src, "--exporter", exporter, "--opset", opset)
    assert code == 0, out
    dst = tmp_path / "out.onnx"
    code, out = run_cli("compile", src, "--allow-synthetic", "--passes", "cleanup,heads", "--pass-option",
                        "heads.keep=0.5", "--pass-option", "heads.compensate=false", "--min-cosine", "0",
                        "--no-measure", "-o", dst)
    assert code == 0, out
    import json

    heads = json.loads(dst.with_suffix(".report.json").read_text())["passes"][1]
    if name == "t5_gated":
        assert heads["stats"]["blocks"] == 0 and any("left alone" in n for n in heads["notes"])
    else:
        assert heads["stats"]["blocks"] == 2 and heads["stats"]["heads_after"] == 4, heads


def test_a_floor_search_never_probes_a_block_the_edit_cannot_reproduce():
    """With a per-head term the edit cannot slice, the search must not hand ONNX Runtime a broken graph."""
    model = models.attention_model(blocks=2, heads=4, head_bias=True)
    probed = []

    def fidelity(graph):
        import onnx_graphsurgeon as gs_

        models.run(gs_.export_onnx(graph), models.feeds(model, 1)[0])       # raises on a broken graph
        probed.append(sum(b.heads for b in find_attention(graph).blocks))
        return 1.0

    graph = gs.import_onnx(model)
    ctx = PassContext(calibration=OrtCalibration(models.feeds(model, 6, seq=10)), fidelity=fidelity,
                      options={"floor": 0.9})
    result = get_pass("heads").run(graph, ctx)
    assert not result.changed and probed and all(count == 8 for count in probed)
    assert any("left alone" in n for n in result.notes)
