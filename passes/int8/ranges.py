"""Whether a few calibration inputs pin down static int8's activation ranges.

Static int8 fixes each activation's range from the calibration inputs; an input that later goes beyond it is
clipped. With fewer than `quantize.MIN_STATIC_FEEDS` inputs the ranges are only trusted when they are stable:
the ranges of half the inputs (even-numbered) must cover the other half's activations, and the other way round,
to within MAX_RANGE_GROWTH of their span at every layer's input and output. Measured on the sweep's 4-input
calibration sets: a captcha CRNN whose static int8 damaged unseen inputs grows 0.77 (an OCR line's range is set
by its characters); an EEG CNN + BiLSTM whose static int8 kept the task 0.15 (samples/RESULTS.md#static-int8).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from edgec.passes.base import CalibrationSource, Feed

MAX_RANGE_GROWTH = 0.2
MIN_FEEDS = 4          # two per half


def layer_tensors(graph: gs.Graph, ops: tuple[str, ...]) -> list[str]:
    """The float activations int8 layers of `ops` read and write (no constants)."""
    names: dict[str, None] = {}
    for node in graph.nodes:
        if node.op in ops:
            for t in [*node.inputs[:1], *node.outputs[:1]]:
                if isinstance(t, gs.Variable) and t.dtype in (np.float32, None):
                    names[t.name] = None
    return list(names)


def range_growth(graph: gs.Graph, calibration: CalibrationSource, ops: tuple[str, ...]) -> tuple[float, str]:
    """The worst growth, as a share of the covering half's span (0 included, as uint8 ranges are), of one half
    of the calibration inputs' activation range beyond the other's; and at which tensor ('' when none)."""
    names = layer_tensors(graph, ops)
    if not names or len(calibration.feeds) < MIN_FEEDS:
        return (0.0 if not names else float("inf")), ""
    worst, where = 0.0, ""
    for name, per_feed in calibration.ranges(graph, names).items():
        even, odd = per_feed[::2], per_feed[1::2]
        growth = max(_growth(even, odd), _growth(odd, even))
        if growth > worst:
            worst, where = growth, name
    return worst, where


def _growth(cover: np.ndarray, other: np.ndarray) -> float:
    low, high = min(float(cover[:, 0].min()), 0.0), max(float(cover[:, 1].max()), 0.0)
    beyond = max(float(other[:, 1].max()) - high, low - float(other[:, 0].min()), 0.0)
    span = high - low
    return beyond / span if span > 0 else (0.0 if beyond == 0 else float("inf"))


# ONNX Runtime's histogram calibration (percentile, entropy) sizes its bins on the first collection step and, when a
# later input reaches further, appends bins of the same width: a tensor near zero on the first input (a recurrent
# state at a stream's start) and large later needed hundreds of millions of bins (a 1 MB voice-activity model
# calibrated at 4.5 GB). The first input is chosen to keep that growth small, or the histogram methods are skipped.
MAX_HISTOGRAM_GROWTH = 64.0     # 2048 bins × 64 ≈ 1.5 MB per tensor
HISTOGRAM_METHODS = ("percentile", "entropy")
# … and its calibration session returns every activation of a feed at once: a text detector at 736×960 held 1.8 GB
MAX_HISTOGRAM_FEED_BYTES = 512 * 2**20


def histogram_first_feed(graph: gs.Graph, calibration: CalibrationSource, ops: tuple[str, ...],
                         first_of: int | None = None) -> tuple[int, float]:
    """The calibration feed (of the first `first_of`) to collect first, and the largest factor by which any tensor's
    magnitude over all feeds exceeds its magnitude on that feed (the bins ONNX Runtime's histograms grow by)."""
    names = layer_tensors(graph, ops)
    if not names or not calibration.feeds:
        return 0, 1.0
    magnitudes = np.stack([np.abs(r).max(axis=1) for r in calibration.ranges(graph, names).values()])  # [t, feeds]
    overall = magnitudes.max(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        growth = np.where(overall > 0, overall / magnitudes, 1.0).max(axis=0)       # per candidate first feed
    first = int(np.argmin(growth[:first_of]))
    return first, float(growth[first])


def method_feeds(methods: Sequence[str], model: onnx.ModelProto, calibration: CalibrationSource | None, feeds: list[Feed],
                 ops: tuple[str, ...], notes: list[str], first_of: int | None = None) -> list[tuple[str, list[Feed]]]:
    """Each calibration method with its feeds (those of `calibration`): the histogram methods collect first the feed
    (of the first `first_of`) that keeps their bins' growth smallest, and are left out (with a note) where even that
    one grows them too far."""
    if not set(methods) & set(HISTOGRAM_METHODS) or calibration is None:
        return [(m, feeds) for m in methods]
    graph = gs.import_onnx(model)
    held = 4 * sum(calibration.sizes(graph, layer_tensors(graph, ops)).values())       # float32 bytes of one feed
    first, growth = histogram_first_feed(graph, calibration, ops, first_of) if held <= MAX_HISTOGRAM_FEED_BYTES \
        else (0, 0.0)
    why = (f"ONNX Runtime's histograms hold every activation of an input at once ({held / 2**20:.0f} MB here)"
           if held > MAX_HISTOGRAM_FEED_BYTES else
           f"an activation's magnitude varies {growth:.3g}× across the calibration inputs (ONNX Runtime's histograms "
           "would grow by as many times their bins)" if growth > MAX_HISTOGRAM_GROWTH else "")
    if why:
        notes.append(f"{'/'.join(m for m in methods if m in HISTOGRAM_METHODS)} ranges not tried: {why}")
        return [(m, feeds) for m in methods if m not in HISTOGRAM_METHODS] or [("minmax", feeds)]
    ordered = [feeds[first], *feeds[:first], *feeds[first + 1:]]
    return [(m, ordered if m in HISTOGRAM_METHODS else feeds) for m in methods]
