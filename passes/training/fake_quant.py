"""int8 rounding inside training, as ONNX Runtime's dynamic int8 MatMul computes it (straight-through).

`quantize` (mode=dynamic) stores each MatMul/Gemm weight as int8 per output column (symmetric; 7 bits with
`reduce_range`) and quantizes the activation at run time to uint8 over the whole tensor (asymmetric, the
range always holding 0). Training through the same rounding lets the weights settle where int8 loses least;
gradients pass the rounding unchanged (the straight-through estimator).
"""

from __future__ import annotations

import torch


def _straight_through(x: torch.Tensor, rounded: torch.Tensor) -> torch.Tensor:
    return x + (rounded - x).detach()


def weight_int8(w: torch.Tensor, reduce_range: bool = False, axis: int = -1) -> torch.Tensor:
    """Per-channel symmetric int8 along `axis` (a MatMul's B [K, N]: one scale per output column N)."""
    limit = 64.0 if reduce_range else 127.0     # ONNX Runtime: [-64, 64] reduced, [-127, 127] symmetric
    dims = [d for d in range(w.dim()) if d != axis % w.dim()]
    scale = w.detach().abs().amax(dim=dims, keepdim=True).clamp_min(1e-12) / limit
    return _straight_through(w, torch.clamp(torch.round(w / scale), -limit, limit) * scale)


def activation_uint8(x: torch.Tensor) -> torch.Tensor:
    """Per-tensor asymmetric uint8 with the range widened to hold 0 (DynamicQuantizeLinear)."""
    lo = torch.clamp(x.detach().min(), max=0.0)
    hi = torch.clamp(x.detach().max(), min=0.0)
    scale = ((hi - lo) / 255.0).clamp_min(1e-12)
    zero = torch.clamp(torch.round(-lo / scale), 0, 255)
    q = torch.clamp(torch.round(x / scale) + zero, 0, 255)
    return _straight_through(x, (q - zero) * scale)
