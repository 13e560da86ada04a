"""Tabular models of the sweep (ai.onnx.ml converters): onnxruntime's own iris logistic regression
(IR 3, ZipMap output) and the `surfaces` hyper-parameter surrogates (skl2onnx, opset 21)."""

from __future__ import annotations

import numpy as np
import onnx

from edgec.samples.sweep_inputs import FEEDS, checked, rng, top1

# Iris class-conditional means/stds of (sepal length, sepal width) in cm.
_IRIS = {0: ((5.01, 3.43), (0.35, 0.38)), 1: ((5.94, 2.77), (0.52, 0.31)), 2: ((6.59, 2.97), (0.64, 0.32))}


def iris_feeds(model: onnx.ModelProto) -> list[dict]:
    """Three flowers per run: the model's input is fixed at [3, 2] (sepal length, sepal width)."""
    r, feeds = rng(601), []
    for i in range(FEEDS):
        rows = [r.normal(*_IRIS[(i + k) % 3]) for k in range(3)]
        feeds.append({"float_input": np.round(np.array(rows, np.float32), 1)})
    return feeds


def dense(value) -> np.ndarray:
    """ZipMap outputs arrive as a list of {class: probability} dicts; make them an array."""
    if isinstance(value, (list, np.ndarray)) and len(value) and isinstance(value[0], dict):
        return np.array([[row[k] for k in sorted(row)] for row in value], np.float64)
    return np.asarray(value)


def _iris_check(feeds, orig, comp) -> tuple[bool, str]:
    """Predicted labels must match; the probabilities (after ZipMap) within 5 % of their range."""
    orig = [[dense(x) for x in o] for o in orig]
    comp = [[dense(x) for x in c] for c in comp]
    same = sum(int((o[0] == c[0]).sum()) for o, c in zip(orig, comp, strict=True) if o[0].shape == c[0].shape)
    total = sum(o[0].size for o in orig)
    label_ok, summary = same == total, f"labels agree {same}/{total}"
    check = checked(top1(1), need=1.0, tol=0.05, outputs=(1,))
    ok, detail = check(feeds, orig, comp)
    return label_ok and ok, f"{summary}, probabilities {detail}"


def surrogate_feeds(model: onnx.ModelProto) -> list[dict]:
    """gradient_boosting_regressor surrogate: rows of (cv, dataset, max_depth, n_estimators) as the
    surfaces search space has them (dataset 0 = diabetes); 16 configurations per run."""
    r, feeds = rng(602), []
    for _ in range(FEEDS):
        rows = np.stack([r.choice([2, 3, 4, 5, 8, 10], 16), np.zeros(16), r.integers(1, 11, 16),
                         r.choice(np.arange(10, 310, 10), 16)], 1)
        feeds.append({"input": rows.astype(np.float32)})
    return feeds


def validity_feeds(model: onnx.ModelProto) -> list[dict]:
    """k_neighbors_classifier validity tree: (algorithm 0-3, cv 2-10, dataset 0-2, n_neighbors 1-150)."""
    r, feeds = rng(603), []
    for _ in range(FEEDS):
        rows = np.stack([r.integers(0, 4, 16), r.choice([2, 3, 4, 5, 8, 10], 16), r.integers(0, 3, 16),
                         r.integers(1, 151, 16)], 1)
        feeds.append({"input": rows.astype(np.float32)})
    return feeds


def _within(index: int, frac: float):
    """Share of predictions within `frac` of the output range (over the whole sweep) of the original."""

    def task(feeds, orig, comp):
        a = np.concatenate([np.ravel(o[index]) for o in orig]).astype(np.float64)
        b = np.concatenate([np.ravel(c[index]) for c in comp]).astype(np.float64)
        span = float(a.max() - a.min()) or 1.0
        share = float((np.abs(a - b) <= frac * span).mean()) if a.shape == b.shape else 0.0
        return share, f"{100 * share:.1f}% of {a.size} predictions within {100 * frac:g}% of range"

    return task


IRIS = (iris_feeds, _iris_check)
SURFACES_GBR = (surrogate_feeds, checked(_within(0, 0.01), need=0.99, tol=0.05))
SURFACES_VALIDITY = (validity_feeds, checked(top1(1), need=1.0, tol=0.05, outputs=(1,)))
