"""Attention discovery on hand-built graphs and on Hugging Face encoders as each exporter writes them."""

import sys
from pathlib import Path

import onnx
import onnx_graphsurgeon as gs
import pytest

from edgec.passes.attention.discovery import find_attention

import models

HARDENING = Path(__file__).resolve().parents[2] / "hardening"


def test_finds_every_block_with_its_head_split():
    found = find_attention(gs.import_onnx(models.attention_model(blocks=3, heads=2)))
    assert [(b.heads, b.head_dim) for b in found.blocks] == [(2, 8)] * 3
    assert not found.near_misses
    block = found.blocks[0]
    assert block.q.out_features == block.k.out_features == block.v.out_features == block.o.in_features == models.D
    assert any(n.op == "Reshape" for n in block.region)


def test_a_classifier_softmax_is_not_a_near_miss():
    found = find_attention(gs.import_onnx(models.no_mlp_model()))
    assert not found.blocks and not found.near_misses


def test_attention_the_discovery_cannot_read_is_a_near_miss_with_the_reason():
    model = models.attention_model(blocks=1)
    for node in model.graph.node:           # K's projection weight becomes a computed tensor
        if node.op_type == "MatMul" and node.input[1].startswith("c_"):
            node.op_type = "Add"
            break
    found = find_attention(gs.import_onnx(model))
    assert not found.blocks and [m.op for m in found.near_misses] == ["Softmax"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    pytest.importorskip("transformers")
    from clirun import run_cli

    sys.path.insert(0, str(HARDENING))
    folder = tmp_path_factory.mktemp("hf")

    def export(name: str, exporter: str, opset: int) -> onnx.ModelProto:
        path = folder / f"{name}.onnx"
        if not path.exists():
            code, out = run_cli("export", f"hf_models:{name}", "-o", path, "--exporter", exporter, "--opset", opset)
            assert code == 0, out
        return onnx.load(path)
    return export


@pytest.mark.slow
@pytest.mark.parametrize("name,exporter,opset", [("vit", "dynamo", 18), ("clip_text", "legacy", 14),
                                                 ("whisper_encoder", "legacy", 17), ("wav2vec2", "legacy", 14)])
def test_finds_the_heads_of_real_exports(exported, name, exporter, opset):
    found = find_attention(gs.import_onnx(exported(name, exporter, opset)))
    assert [(b.heads, b.head_dim) for b in found.blocks] == [(4, 16), (4, 16)]


@pytest.mark.slow
def test_grouped_query_attention_is_a_near_miss_with_its_reason(exported):
    found = find_attention(gs.import_onnx(exported("llama", "dynamo", 18)))
    assert not found.blocks
    assert all("grouped-query" in m.reason for m in found.near_misses) and len(found.near_misses) == 2
