"""More training images from few: label-free variants of the user's image feeds for recovery's distillation.

Distillation needs inputs, not labels: the student learns the original's outputs on whatever it is shown. With
the handful of images a `--calib` file holds, end-to-end training memorizes them (a width-pruned CNN's
held-out score falls while its training loss does). Variants near the images' own distribution — shifted and
rescaled crops, mirrored, brightness and contrast moved, two images blended, a little noise, images regrouped
across batches — give the teacher new inputs to answer every step. Only inputs that look like images
(floating point, rank 4, one small channel axis, spatial sides ≥ 8) vary; the rest of a feed is kept.
"""

from __future__ import annotations

import itertools
from typing import Callable, Iterator

import numpy as np

from edgec.compiler.calibration.loading import Feed

VARIANTS_PER_PASS = 64      # feeds per pass over the stream (the cycle draws new ones on every pass)
MAX_CHANNELS = 4


def image_axes(value: np.ndarray) -> tuple[int, int, int] | None:
    """(channel axis, height axis, width axis) of an NCHW or NHWC image batch, None for anything else."""
    if value.ndim != 4 or not np.issubdtype(value.dtype, np.floating):
        return None
    if value.shape[1] <= MAX_CHANNELS and min(value.shape[2:]) >= 8:
        return 1, 2, 3
    if value.shape[3] <= MAX_CHANNELS and min(value.shape[1:3]) >= 8:
        return 3, 1, 2
    return None


def has_images(feeds: list[Feed]) -> bool:
    return bool(feeds) and any(image_axes(np.asarray(v)) is not None for v in feeds[0].values())


def augmented_training(feeds: list[Feed], seed: int, count: int = VARIANTS_PER_PASS) -> Callable[[], Iterator[Feed]]:
    """A training stream: each call yields `count` new variants, each from one feed (its images regrouped and
    blended with another feed's where shapes agree)."""
    passes = itertools.count()

    def stream() -> Iterator[Feed]:
        rng = np.random.default_rng([seed, next(passes)])
        for _ in range(count):
            base = feeds[int(rng.integers(len(feeds)))]
            other = feeds[int(rng.integers(len(feeds)))]
            yield {name: _vary(np.asarray(value), np.asarray(other.get(name, value)), rng)
                   for name, value in base.items()}

    return stream


def _vary(value: np.ndarray, other: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    axes = image_axes(value)
    if axes is None:
        return value
    c, h, w = axes
    images = np.moveaxis(value, (c, h, w), (1, 2, 3)).astype(np.float32)        # NCHW working copy
    if other.shape == value.shape:
        pool = np.concatenate([images, np.moveaxis(other, (c, h, w), (1, 2, 3)).astype(np.float32)])
        images = pool[rng.permutation(len(pool))[: len(images)]]                    # regroup across feeds
    out = np.stack([_vary_one(img, images[int(rng.integers(len(images)))], rng) for img in images])
    return np.moveaxis(out, (1, 2, 3), (c, h, w)).astype(value.dtype)


def _vary_one(image: np.ndarray, partner: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One CHW image: crop-and-rescale, mirror, photometric moves, blend, noise (each drawn at random)."""
    out = _rescaled_crop(image, rng)
    if rng.random() < 0.5:
        out = out[:, :, ::-1]
    spread = float(out.std()) or 1.0
    mean = out.mean(axis=(1, 2), keepdims=True)
    out = (out - mean) * rng.uniform(0.75, 1.25) + mean + rng.uniform(-0.2, 0.2) * spread   # contrast, brightness
    if rng.random() < 0.3:
        weight = rng.uniform(0.6, 0.9)
        out = weight * out + (1 - weight) * _rescaled_crop(partner, rng)
    if rng.random() < 0.3:
        out = out + rng.normal(0.0, 0.03 * spread, out.shape)
    lo, hi = float(image.min()), float(image.max())       # stay within the inputs' own range (normalized or not)
    return np.clip(out, lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo)).astype(np.float32)


def _rescaled_crop(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random crop of 70–100 % of each side, resized back (bilinear) to the image's size."""
    _, height, width = image.shape
    ch, cw = (max(2, int(round(side * rng.uniform(0.7, 1.0)))) for side in (height, width))
    top, left = int(rng.integers(height - ch + 1)), int(rng.integers(width - cw + 1))
    crop = image[:, top:top + ch, left:left + cw]
    return _bilinear(crop, height, width)


def _bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    _, h, w = image.shape
    ys, xs = np.linspace(0, h - 1, height), np.linspace(0, w - 1, width)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = (ys - y0)[None, :, None], (xs - x0)[None, None, :]
    top = image[:, y0][:, :, x0] * (1 - fx) + image[:, y0][:, :, x1] * fx
    bottom = image[:, y1][:, :, x0] * (1 - fx) + image[:, y1][:, :, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)
