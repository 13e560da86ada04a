"""A real base / fine-tuned pair made on this machine: the sample ViT trained on a synthetic shapes task,
then fine-tuned briefly on a harder variant of it. Used by `edgec fold` tests and the DARE benchmark.

    python -m edgec.samples.finetune OUT_DIR   →   OUT_DIR/base.onnx, OUT_DIR/tuned.onnx, OUT_DIR/inputs.npz
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from edgec.samples.models import TinyViT

SIZE = 32
TUNE_LR = 5e-5   # a gentle fine-tune: small deltas, as in supervised fine-tuning of a pretrained model


def small_vit() -> TinyViT:
    """The sample ViT's architecture at a size that trains in seconds on 2 cores."""
    torch.manual_seed(0)
    return TinyViT(image=SIZE, patch=8, dim=96, depth=2, heads=3, classes=8)


def shapes_batch(rng: np.random.Generator, n: int, fine: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Images with one bright square: the label is its quadrant (coarse task) or quadrant × colour (fine)."""
    images = rng.random((n, 3, SIZE, SIZE), dtype=np.float32) * 0.2
    quadrant = rng.integers(0, 4, n)
    colour = rng.integers(0, 2, n)
    half = SIZE // 2
    for i in range(n):
        y, x = (quadrant[i] // 2) * half + rng.integers(2, 8), (quadrant[i] % 2) * half + rng.integers(2, 8)
        images[i, colour[i], y:y + 6, x:x + 6] = 1.0
    labels = quadrant * 2 + colour if fine else quadrant
    return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))


def train(model: torch.nn.Module, steps: int, lr: float, fine: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        x, y = shapes_batch(rng, 32, fine)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def accuracy(model: torch.nn.Module, fine: bool, seed: int = 123) -> float:
    x, y = shapes_batch(np.random.default_rng(seed), 256, fine)
    with torch.no_grad():
        return float((model(x).argmax(-1) == y).float().mean())


def make_pair(out: Path, base_steps: int = 150, tune_steps: int = 150) -> dict:
    from edgec.compiler.export import torch_export

    out.mkdir(parents=True, exist_ok=True)
    model = small_vit()
    train(model, base_steps, 1e-3, fine=False, seed=1)
    torch_export(model, model.example_inputs(), out / "base.onnx", "legacy", 17)
    base_acc = accuracy(model, fine=True)
    train(model, tune_steps, TUNE_LR, fine=True, seed=2)
    torch_export(model, model.example_inputs(), out / "tuned.onnx", "legacy", 17)
    x, _ = shapes_batch(np.random.default_rng(7), 48, fine=True)
    np.savez(out / "inputs.npz", pixel_values=x.numpy())
    return {"base_fine_accuracy": base_acc, "tuned_fine_accuracy": accuracy(model, fine=True)}


if __name__ == "__main__":
    print(make_pair(Path(sys.argv[1] if len(sys.argv) > 1 else "build/finetune")))
