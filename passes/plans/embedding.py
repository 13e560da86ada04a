"""Block-wise quantization of an embedding table's rows (the pure half of the `embed` pass).

Each row is cut into blocks of `block` values along the hidden axis; a block keeps one float scale and
symmetric integers: 8-bit (−127…127, stored as uint8 with zero point 128) or 4-bit (−7…7 + 8, two per byte,
low nibble first) — the layouts ONNX Runtime's GatherBlockQuantized reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_BLOCK = 16      # GatherBlockQuantized's smallest block


@dataclass(frozen=True)
class QuantizedTable:
    data: np.ndarray         # uint8 [rows, cols] (8-bit) or [rows, cols / 2] (4-bit, packed)
    scales: np.ndarray       # float32 [rows, cols / block]
    zero_points: np.ndarray | None   # uint8 [rows, cols / block] for 8-bit; None for 4-bit (the kernel's default 8)
    bits: int
    block: int

    def dequantized(self) -> np.ndarray:
        """The float table the graph computes with (to measure the rounding before writing it)."""
        rows = self.scales.shape[0]
        if self.bits == 8:
            q = self.data.astype(np.int16) - 128
        else:
            q = np.empty((rows, self.data.shape[1] * 2), np.int16)
            q[:, 0::2], q[:, 1::2] = self.data & 0xF, self.data >> 4
            q -= 8
        blocks = q.reshape(rows, -1, self.block).astype(np.float32)
        return (blocks * self.scales[..., None]).reshape(rows, -1)


def block_size(cols: int, wanted: int) -> int | None:
    """The largest power-of-two block ≤ `wanted` (and ≥ 16) that divides the row, or None."""
    block = wanted
    while block >= MIN_BLOCK:
        if cols % block == 0:
            return block
        block //= 2
    return None


def quantize_table(table: np.ndarray, bits: int, block: int) -> QuantizedTable:
    if bits not in (4, 8):
        raise ValueError(f"embedding tables quantize to 4 or 8 bits, not {bits}")
    rows, cols = table.shape
    blocks = table.astype(np.float32).reshape(rows, cols // block, block)
    limit = 127 if bits == 8 else 7
    scales = np.abs(blocks).max(-1) / limit
    scales[scales == 0] = 1.0                     # an all-zero block: any scale reproduces it
    q = np.clip(np.rint(blocks / scales[..., None]), -limit, limit).astype(np.int16).reshape(rows, cols)
    if bits == 8:
        zero = np.full(scales.shape, 128, np.uint8)
        return QuantizedTable((q + 128).astype(np.uint8), scales.astype(np.float32), zero, 8, block)
    u = (q + 8).astype(np.uint8)
    return QuantizedTable((u[:, 0::2] | (u[:, 1::2] << 4)).astype(np.uint8), scales.astype(np.float32), None, 4,
                          block)
