"""Block-wise quantization of embedding rows: the layouts GatherBlockQuantized reads, and their error."""

import numpy as np
import pytest

from edgec.passes.plans.embedding import block_size, quantize_table


@pytest.mark.parametrize("bits,bound", [(8, 1 / 254), (4, 1 / 14)])
def test_every_value_rounds_to_within_half_a_step_of_its_block(bits, bound):
    table = np.random.default_rng(0).standard_normal((64, 96)).astype(np.float32)
    q = quantize_table(table, bits, 32)
    assert q.scales.shape == (64, 3) and q.data.dtype == np.uint8
    assert q.data.shape == ((64, 96) if bits == 8 else (64, 48))
    blocks_max = np.abs(table.reshape(64, 3, 32)).max(-1, keepdims=True)
    error = np.abs(q.dequantized() - table).reshape(64, 3, 32)
    assert (error <= blocks_max * bound + 1e-6).all()


def test_eight_bits_store_the_zero_point_and_four_bits_pack_two_values_a_byte_low_nibble_first():
    table = np.array([[-7, 1, 2, 3, 4, 5, 6, 7, 0, 0, 0, 0, 0, 0, 0, 7]], np.float32)
    q4 = quantize_table(table, 4, 16)
    assert q4.zero_points is None and q4.data[0, 0] == 1 | (9 << 4)      # −7 + 8 and 1 + 8, low nibble first
    np.testing.assert_allclose(q4.dequantized(), table, atol=1e-6)
    q8 = quantize_table(table, 8, 16)
    assert (q8.zero_points == 128).all()
    np.testing.assert_allclose(q8.dequantized(), table, atol=7 / 127)


def test_all_zero_blocks_and_block_sizes():
    q = quantize_table(np.zeros((2, 32), np.float32), 8, 16)
    assert np.isfinite(q.scales).all() and not q.dequantized().any()
    assert block_size(384, 32) == 32 and block_size(48, 32) == 16 and block_size(40, 32) is None
    with pytest.raises(ValueError):
        quantize_table(np.zeros((2, 32), np.float32), 2, 16)
