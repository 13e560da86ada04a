"""Feeds stacked into training batches (numpy only: recovery's torch loop and the zeroth-order tuner share it)."""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np


def training_batches(feeds: Iterable[dict], size: int) -> Iterator[dict]:
    """Stack consecutive feeds of equal shapes along axis 0 (the batch axis), up to `size`."""
    pending: list[dict] = []
    for feed in feeds:
        if pending and any(feed[k].shape[1:] != pending[0][k].shape[1:] for k in feed):
            yield _stack(pending)
            pending = []
        pending.append(feed)
        if len(pending) >= size:
            yield _stack(pending)
            pending = []
    if pending:
        yield _stack(pending)


def _stack(feeds: list[dict]) -> dict:
    return {k: np.concatenate([f[k] for f in feeds]) for k in feeds[0]} if len(feeds) > 1 else feeds[0]
