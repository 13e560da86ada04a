"""Each output is judged with a metric that fits it (issue: cosine of a one-value regressor is its sign)."""

import numpy as np
import pytest

from edgec.runtime.fidelity import compare_outputs, output_metric


def _rng():
    return np.random.default_rng(0)


def test_a_one_value_regressor_is_judged_by_its_range_not_its_sign():
    ref = [_rng().uniform(1, 5, size=(8, 1)).astype(np.float32) for _ in range(4)]
    off = [r * 1.3 for r in ref]                          # 30 % too large: same sign, cosine exactly 1
    fid = compare_outputs("y", ref, off)
    assert fid.metric == "range" and fid.cosine == pytest.approx(1.0)
    assert fid.score < 0.9


def test_non_negative_maps_and_probabilities_are_judged_by_range():
    rng = _rng()
    maps = [1 / (1 + np.exp(-rng.standard_normal((1, 64, 64)))) for _ in range(4)]
    moved = [np.clip(m + 0.1 * rng.standard_normal(m.shape), 0, 1) for m in maps]
    fid = compare_outputs("saliency", maps, moved)
    assert fid.metric == "range" and fid.cosine > 0.97 and fid.score < 0.95


def test_signed_vectors_keep_the_per_sample_cosine():
    ref = [_rng().standard_normal((2, 384)).astype(np.float32) for _ in range(3)]
    fid = compare_outputs("embedding", ref, [r + 1e-3 for r in ref])
    assert fid.metric == "cosine" and fid.score > 0.999 and fid.cosine > 0.999


def test_a_few_values_moved_far_fail_a_cosine_output():
    # an OCR line's logits: one step's winning class moved by 30 % of the range, the mean cosine hardly moves
    ref = [_rng().standard_normal((40, 1, 64)).astype(np.float32) for _ in range(3)]
    got = [r.copy() for r in ref]
    got[0][7, 0, 3] += 0.3 * float(np.ptp(np.concatenate([r.ravel() for r in ref])))
    fid = compare_outputs("logits", ref, got)
    assert fid.metric == "cosine" and fid.cosine > 0.995 and fid.score < 0.97


def test_integer_outputs_are_judged_by_agreement():
    ref = [np.array([1, 2, 3, 4]), np.array([0, 0, 1, 1])]
    got = [np.array([1, 2, 3, 0]), np.array([0, 0, 1, 1])]
    assert output_metric(ref) == "agreement"
    assert compare_outputs("label", ref, got).score == pytest.approx(7 / 8)


def test_non_finite_values_both_sides_share_are_equal_and_others_fail():
    ref = [np.array([[-np.inf, 1.0, np.nan, -2.0] * 4])]
    assert compare_outputs("masked", ref, [ref[0].copy()]).score == pytest.approx(1.0)
    broken = ref[0].copy()
    broken[0, 1] = np.nan
    assert not compare_outputs("masked", ref, [broken]).score >= 0.5


def test_class_probabilities_are_also_judged_by_top1_agreement():
    rng = _rng()
    logits = [rng.standard_normal((1, 40, 30)) for _ in range(3)]
    probs = [np.exp(x) / np.exp(x).sum(-1, keepdims=True) for x in logits]
    swapped = [p[..., ::-1].copy() for p in probs]       # every step's argmax moves, the RMS barely does
    fid = compare_outputs("ctc_probs", probs, swapped)
    assert fid.metric == "range" and fid.top1_agreement < 0.2 and fid.score == fid.top1_agreement


def test_outputs_whose_length_varies_between_samples_are_compared():
    ref = [np.arange(n, dtype=np.int64)[None] for n in (30, 32, 28)]
    assert compare_outputs("text_ids", ref, [r.copy() for r in ref]).score == 1.0
    emb = [np.random.default_rng(n).standard_normal((1, n)) for n in (30, 32, 28)]
    assert compare_outputs("frames", emb, [e.copy() for e in emb]).score == pytest.approx(1.0)


def test_a_few_values_moved_far_fail_the_range_score_though_the_rms_is_small():
    rng = _rng()
    maps = [rng.uniform(0, 1, size=(1, 100, 100)) for _ in range(2)]
    moved = [m.copy() for m in maps]
    moved[0][0, 5, 5] += 0.3                      # one value off by 30 % of the range
    fid = compare_outputs("map", maps, moved)
    assert fid.score == pytest.approx(1 - 0.3 / 5, abs=0.01) and fid.score < 0.99


def test_detection_channels_of_different_units_are_judged_one_by_one():
    rng = _rng()
    boxes = rng.uniform(0, 640, size=(1, 4, 500))
    scores = rng.uniform(0, 1, size=(1, 80, 500))
    ref = [np.concatenate([boxes, scores], axis=1)]
    got = [ref[0].copy()]
    got[0][:, 4:] = rng.uniform(0, 1, size=(1, 80, 500))      # every class score replaced
    assert compare_outputs("yolo", ref, got).score < 0.9


def test_a_one_dimensional_batch_of_predictions_is_judged_by_range():
    ref = [np.linspace(1, 5, 32)]
    fid = compare_outputs("price", ref, [ref[0] * 1.3])
    assert fid.metric == "range" and fid.score < 0.9


def test_string_labels_and_zipmap_probabilities_are_compared():
    from edgec.runtime.fidelity import comparable

    labels = [np.array(["cat", "dog", "dog"], dtype=object)]
    other = [np.array(["cat", "dog", "cat"], dtype=object)]
    assert compare_outputs("label", labels, other).score == pytest.approx(2 / 3)
    zipmap = comparable([{0: 0.9, 1: 0.1}, {0: 0.2, 1: 0.8}])
    assert zipmap.shape == (2, 2) and zipmap[1, 1] == pytest.approx(0.8)


def test_an_all_zero_output_tolerates_rounding_noise():
    ref = [np.zeros((2, 16, 4, 4))]
    assert compare_outputs("unused", ref, [ref[0] + 1e-8]).score == 1.0


def test_a_regressor_is_judged_by_how_many_predictions_stay_within_the_gate_not_by_its_rms():
    rng = _rng()
    ref = [rng.uniform(0, 1, size=(16, 1)) for _ in range(4)]              # range ≈ 1
    # RMS 0.7 % of the range: the range score would pass a 0.99 gate, yet a sixth of the predictions move by
    # more than 1 % of the range (what an int8 surrogate did in the sweep)
    off = [r + 0.007 * rng.standard_normal(r.shape) for r in ref]
    fid = compare_outputs("y", ref, off)
    assert fid.metric == "range" and fid.score < 0.985
    close = [r + 0.002 * rng.standard_normal(r.shape) for r in ref]      # 99 % within 1 % of the range
    assert compare_outputs("y", ref, close).score > 0.99


def test_a_probability_by_construction_is_judged_against_the_unit_interval():
    # a wake-word score on audio without the word: values near 1e-4, their spread smaller than any int8 noise
    ref = [np.array([[1e-4 + 1e-5 * i]], np.float32) for i in range(8)]
    got = [r + np.float32(2e-4) for r in ref]
    assert compare_outputs("p", ref, got).score < 0.5                       # against the feeds' spread: damage
    assert compare_outputs("p", ref, got, unit=True).score > 0.999          # against [0, 1]: nothing a user sees
    moved = [r + np.float32(0.05) for r in ref]
    assert compare_outputs("p", ref, moved, unit=True).score < 0.95         # 5 % of the interval still counts


def _ocr_logits(rng, steps=80, classes=37):
    """Per-step logits whose winner clears the runner-up by far (a recognizer's): one class peaks at 8, the rest
    stay near 0."""
    logits = rng.standard_normal((steps, 1, classes)).astype(np.float32)
    logits[np.arange(steps), 0, rng.integers(0, classes, steps)] += 8.0
    return logits


def test_logits_with_a_decisive_argmax_are_also_judged_by_top1_agreement():
    rng = _rng()
    ref = [_ocr_logits(rng) for _ in range(4)]
    step, winner = 5, int(np.argmax(ref[0][5, 0]))
    ref[0][step, 0, (winner + 1) % 37] = ref[0][step, 0, winner] - 0.05    # one close step …
    got = [r.copy() for r in ref]
    got[0][step, 0, (winner + 1) % 37] += 0.1                               # … reads another class
    fid = compare_outputs("logits", ref, got)
    assert fid.metric == "cosine" and fid.cosine > 0.999
    assert fid.score == pytest.approx(319 / 320) and fid.top1_agreement == pytest.approx(319 / 320)


def test_an_embedding_whose_argmax_means_nothing_is_not_judged_by_it():
    rng = _rng()
    ref = [rng.standard_normal((2, 384)).astype(np.float32) for _ in range(4)]
    got = [r + 0.02 * rng.standard_normal(r.shape).astype(np.float32) for r in ref]
    fid = compare_outputs("embedding", ref, got)
    assert fid.top1_agreement is not None and fid.top1_agreement < 1
    assert fid.score > 0.99
