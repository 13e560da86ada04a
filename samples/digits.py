"""The sample ViT trained on real data: scikit-learn's bundled handwritten digits (1,797 images, 8×8),
upsampled to 32×32 RGB. Gives compile tests and benchmarks a model whose top-1 accuracy means something.

    python -m edgec.samples.digits OUT_DIR  →  OUT_DIR/vit_digits.onnx, calib.npz (train split), test.npz
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

SIZE = 32


def load_digits_split(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images, train labels, test images, test labels); images [N, 3, 32, 32] float32 in [0, 1]."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = np.kron(data.images / 16.0, np.ones((SIZE // 8, SIZE // 8))).astype(np.float32)
    images = np.repeat(images[:, None], 3, axis=1)
    order = np.random.default_rng(seed).permutation(len(images))
    cut = int(0.75 * len(images))
    train, test = order[:cut], order[cut:]
    return images[train], data.target[train], images[test], data.target[test]


def digits_vit():
    import torch

    from edgec.samples.models import TinyViT

    torch.manual_seed(0)
    return TinyViT(image=SIZE, patch=8, dim=96, depth=4, heads=3, classes=10)


def train_vit(steps: int = 800, seed: int = 0):
    import torch

    x, y, _, _ = load_digits_split(seed)
    model = digits_vit()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    rng = np.random.default_rng(seed)
    model.train()
    for _ in range(steps):
        idx = rng.integers(0, len(x), 64)
        loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x[idx])), torch.from_numpy(y[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


def top1(model_path: Path | str, images: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of an ONNX classifier under ONNX Runtime (CPU)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    logits = np.concatenate([sess.run(None, {name: images[i:i + 64]})[0] for i in range(0, len(images), 64)])
    return float((logits.argmax(-1) == labels).mean())


def make(out: Path, steps: int = 800, calib_images: int = 256) -> dict:
    """Train, export (legacy exporter, opset 17) and write the calibration / test splits."""
    from edgec.compiler.export import torch_export

    out.mkdir(parents=True, exist_ok=True)
    model = train_vit(steps)
    path = out / "vit_digits.onnx"
    torch_export(model, model.example_inputs(), path, "legacy", 17)
    x, _, x_test, y_test = load_digits_split()
    np.savez(out / "calib.npz", pixel_values=x[:calib_images])
    np.savez(out / "test.npz", pixel_values=x_test, labels=y_test)
    return {"model": str(path), "test_top1": top1(path, x_test, y_test)}


if __name__ == "__main__":
    print(make(Path(sys.argv[1] if len(sys.argv) > 1 else "build/digits")))
