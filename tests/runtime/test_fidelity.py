import numpy as np
import pytest

from edgec.runtime.fidelity import compare_outputs


def _samples(n=8, shape=(1, 10), seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(n)]


def test_identical_outputs_are_perfect():
    ref = _samples()
    fid = compare_outputs("y", ref, [r.copy() for r in ref])
    assert fid.cosine == pytest.approx(1.0) and fid.rel_l2 == 0 and fid.max_abs == 0
    assert fid.top1_agreement == 1.0 and fid.nn_agreement == 1.0
    assert fid.similarity_spearman == pytest.approx(1.0)


def test_noise_lowers_every_metric_consistently():
    ref = _samples(16)
    rng = np.random.default_rng(1)
    noisy = [r + 0.5 * rng.standard_normal(r.shape).astype(np.float32) for r in ref]
    fid = compare_outputs("y", ref, noisy)
    assert 0.5 < fid.cosine < 0.99
    assert fid.min_cosine <= fid.cosine
    expected = np.linalg.norm(np.concatenate(noisy) - np.concatenate(ref)) / np.linalg.norm(np.concatenate(ref))
    assert fid.rel_l2 == pytest.approx(expected, rel=1e-5)
    assert fid.similarity_spearman < 1.0


def test_top1_agreement_counts_argmax_matches():
    ref = [np.array([[0.0, 1.0, 0.0]]), np.array([[1.0, 0.0, 0.0]])]
    got = [np.array([[0.0, 1.0, 0.0]]), np.array([[0.0, 0.0, 1.0]])]
    assert compare_outputs("logits", ref, got).top1_agreement == 0.5


def test_nan_output_fails_loudly():
    ref = _samples(4)
    got = [r.copy() for r in ref]
    got[2][0, 0] = np.nan
    fid = compare_outputs("y", ref, got)
    assert not fid.cosine >= 0.0 and fid.max_abs == float("inf")


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        compare_outputs("y", [np.zeros((1, 3))], [np.zeros((1, 4))])


def test_padding_tokens_are_left_out_of_per_token_outputs():
    from edgec.runtime.fidelity import compare_outputs, token_mask

    rng = np.random.default_rng(0)
    ref = rng.standard_normal((1, 6, 4))
    got = ref.copy()
    got[0, 4:] = rng.standard_normal((2, 4)) * 100          # garbage only at the two padding positions
    feed = {"input_ids": np.ones((1, 6), np.int64), "attention_mask": np.array([[1, 1, 1, 1, 0, 0]])}
    mask = token_mask(feed)
    assert compare_outputs("h", [ref], [got], [mask]).cosine == pytest.approx(1.0)
    assert compare_outputs("h", [ref], [got]).cosine < 0.5
    pooled = rng.standard_normal((1, 4))                      # not per-token: compared whole
    assert compare_outputs("p", [pooled], [pooled + 1], [mask]).cosine < 1.0


def test_relative_l2_pools_pairs_in_float64_and_leaves_out_what_it_cannot_measure():
    from edgec.runtime.fidelity import relative_l2

    ref = [np.array([3.0, 4.0], np.float32), np.array([0.0, 0.0], np.float32)]
    got = [np.array([3.0, 4.0], np.float32), np.array([0.0, 5.0], np.float32)]
    assert relative_l2(ref, got) == pytest.approx(1.0)               # ‖(0, 0, 0, 5)‖ / ‖(3, 4, 0, 0)‖
    assert relative_l2([ref[0]], [ref[0] * 1.5]) == pytest.approx(0.5)
    tiny = np.full(4, 1e-30, np.float32)                                # float32 squares would underflow to 0
    assert relative_l2([tiny], [tiny * 2]) == pytest.approx(1.0)
    assert relative_l2([np.array([1, 2])], [np.array([1, 3])]) is None         # integer reference: not measured
    assert relative_l2([np.ones(3, np.float32)], [np.ones(4, np.float32)]) is None   # shapes differ
    assert relative_l2([np.zeros(3, np.float32)], [np.ones(3, np.float32)]) is None  # no energy to compare with
