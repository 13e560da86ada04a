"""Optional refinement of factorized MLP blocks with torch: teacher-forced block-output reconstruction.

Each block gets the original block's input rows X (captured once) and is trained so that
act(X A1 B1 + b1) A2 B2 + b2 matches the original block output Y (MSE, AdamW, cosine schedule: passes.training).
torch is imported lazily: without it, refinement is skipped with a note.
"""

from __future__ import annotations

import numpy as np

from edgec.passes.training.loop import adamw, run_loop, sampled_rows

ACTIVATIONS = ("gelu", "erf-gelu", "gelu-tanh", "tanh-gelu", "fast-gelu", "relu", "silu", "quick-gelu", "hardswish")


TORCH_PATTERNS = frozenset({"gelu", "erf-gelu", "relu", "silu", "hardswish", "gelu-tanh", "tanh-gelu", "fast-gelu",
                            "quick-gelu"})     # the activations torch_activation has (asked without importing torch)


def torch_activation(pattern: str):
    import torch.nn.functional as F

    table = {"gelu": F.gelu, "erf-gelu": F.gelu, "relu": F.relu, "silu": F.silu, "hardswish": F.hardswish,
             "gelu-tanh": lambda t: F.gelu(t, approximate="tanh"), "tanh-gelu": lambda t: F.gelu(t, approximate="tanh"),
             "fast-gelu": lambda t: F.gelu(t, approximate="tanh"), "quick-gelu": lambda t: t * (1.702 * t).sigmoid()}
    return table.get(pattern)


def refine_block(x: np.ndarray, y: np.ndarray, params: list[np.ndarray | None], pattern: str, steps: int,
                 lr: float = 1e-3, seed: int = 0) -> tuple[list[np.ndarray | None], float, float]:
    """params = [A1, B1, b1, A2, B2, b2] (b may be None). Returns the trained params and the relative
    reconstruction error before and after; keeps the original params if training did not help."""
    import torch

    act = torch_activation(pattern)
    torch.manual_seed(seed)
    xt, yt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)
    tensors = [None if p is None else torch.nn.Parameter(torch.as_tensor(p, dtype=torch.float32).clone())
               for p in params]
    a1, b1, c1, a2, b2, c2 = tensors

    def forward(rows):
        h = rows @ a1 @ b1 + (0 if c1 is None else c1)
        out = act(h) @ a2 @ b2
        return out + (0 if c2 is None else c2)

    def rel_error() -> float:
        with torch.no_grad():
            return float(torch.linalg.norm(forward(xt) - yt) / torch.linalg.norm(yt))

    before = rel_error()
    trainable = [t for t in tensors if t is not None]
    generator = torch.Generator().manual_seed(seed)

    def step_loss(step: int):
        x, y = sampled_rows(xt, yt, 1024, generator)
        return torch.mean((forward(x) - y) ** 2)

    run_loop(adamw([{"params": trainable, "peak": lr}]), step_loss, steps=steps)
    after = rel_error()
    if not after < before:
        return params, before, before
    return [None if t is None else t.detach().numpy().astype(np.float64) for t in tensors], before, after
