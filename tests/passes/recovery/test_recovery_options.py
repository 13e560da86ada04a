"""Recovery's settings derived from the model and its feeds."""

import numpy as np


def test_large_inputs_stack_fewer_feeds_a_step():
    from edgec.passes.recovery.options import MAX_STEP_VALUES, feeds_per_step

    assert feeds_per_step({"ids": np.zeros((16, 128), np.int64)}) > 8          # text: the option decides
    assert feeds_per_step({"x": np.zeros((4, 3, 224, 224), np.float32)}) == 3
    assert feeds_per_step({"x": np.zeros((1, 3, 2048, 2048), np.float32)}) == 1 and MAX_STEP_VALUES > 0
