"""Mixed precision: the fewest, most sensitive layers kept float until the int8 model meets a fidelity floor.

One sensitive layer (a network's first convolution, the classifier at its end, a projection with outlier
activations) can hold a whole model's int8 below its floor; keeping the whole model float for it throws
away the speed of every other layer. The layers are cut into at most `groups` runs in graph order; each run's
sensitivity is the score of the model with only that run int8 (its own damage, as a per-layer sensitivity
analysis measures it); the most damaging runs are then kept float, the fewest that meet the floor found by
bisection; then each float layer is tried int8 again, one at a time. At most 2 + groups + log2(groups) quantized
models are scored, plus one per float layer re-tried (within as long again as the search took, and `seconds`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Generic, Sequence, TypeVar

import numpy as np

MIN_RETRY_SECONDS = 1.0
M = TypeVar("M")    # what `build` makes and `score` judges: an onnx.ModelProto, a graphsurgeon Graph


@dataclass
class MixedResult(Generic[M]):
    model: M
    score: float
    float_layers: list[str] = field(default_factory=list)
    scored: int = 0                       # quantized models scored on the way


def fewest_float_layers(layers: Sequence[str], build: Callable[[Sequence[str]], M], score: Callable[[M], float],
                        floor: float, groups: int = 16, max_float_share: float = 0.5,
                        seconds: float = float("inf"), cost: Callable[[str], float] | None = None) -> MixedResult[M] | None:
    """The all-int8 model when it meets `floor`, else the one with the fewest float runs of `layers` that does
    (never more than `max_float_share` of them), else None. `build(float_layers)` quantizes all but those;
    `seconds` bounds the search (None when it runs out before a model meets the floor); `cost(layer)` (its
    weight's size) orders the re-try of float layers, the costliest first."""
    start = time.monotonic()
    deadline = start + seconds
    full = build([])
    result = MixedResult(full, score(full), scored=1)
    if result.score >= floor:
        return result
    if not layers or max_float_share <= 0:
        return None
    runs = [list(r) for r in np.array_split(np.array(layers, dtype=object), min(groups, len(layers)))]
    alone = []                                          # the score with only this run int8
    for run in runs:
        if time.monotonic() > deadline:
            return None
        alone.append(score(build([x for x in layers if x not in set(run)])))
    order = [runs[int(i)] for i in np.argsort(alone, kind="stable")]   # the most damaging run first
    most = max(k for k in range(len(runs) + 1) if sum(map(len, order[:k])) <= max_float_share * len(layers))
    result.scored += len(runs)
    best = _fewest_runs(order, most, build, score, floor, result, deadline)
    if best is None:
        return None
    now = time.monotonic()          # the re-try takes at most as long again as the search so far (≥ a second: a
                                    # search of instant scores would otherwise leave it a few microseconds)
    return _requantized(best, build, score, floor, min(deadline, now + max(now - start, MIN_RETRY_SECONDS)), cost)


def _requantized(best: MixedResult[M], build, score, floor: float, deadline: float,
                  cost: Callable[[str], float] | None = None) -> MixedResult[M]:
    """Runs go float whole; one layer of a run is often all it needed. Each float layer is tried int8 again — the
    costliest first where `cost` is given (a float layer's time is what mixed precision gives up), else the layers of
    the least damaging run first (the last to go float) — and stays int8 where the floor still holds."""
    float_layers = list(best.float_layers)
    tries = list(reversed(best.float_layers))
    if cost is not None:
        tries.sort(key=lambda layer: -cost(layer))       # stable: among equals, the least damaging run first
    for layer in tries:
        if time.monotonic() > deadline or len(float_layers) <= 1:
            break
        trial = [x for x in float_layers if x != layer]
        model = build(trial)
        value = score(model)
        best.scored += 1
        if value >= floor:
            float_layers = trial
            best.model, best.score, best.float_layers = model, value, trial
    return best


def _fewest_runs(order: list[list[str]], most: int, build, score, floor: float, result: MixedResult[M],
                 deadline: float) -> MixedResult[M] | None:
    """Bisection over k: the first k runs of `order` float, the fewest that meet the floor (the score rises
    nearly monotonically with k as the most damaging runs go float first); k = most is tried first."""
    if not most or time.monotonic() > deadline:
        return None
    widest = [x for run in order[:most] for x in run]
    model = build(widest)
    value, result.scored = score(model), result.scored + 1
    if value < floor:          # even the most float allowed misses the floor: nothing to bisect (a static ViT's int8)
        return None
    best = MixedResult(model, value, widest, 0)
    low, high = 1, most - 1
    while low <= high and time.monotonic() <= deadline:
        k = (low + high) // 2
        float_layers = [x for run in order[:k] for x in run]
        model = build(float_layers)
        value, result.scored = score(model), result.scored + 1
        if value >= floor:
            best, high = MixedResult(model, value, float_layers, 0), k - 1
        else:
            low = k + 1
    if best is not None:
        best.scored = result.scored
    return best
