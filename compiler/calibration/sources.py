"""The user's unlabeled data as model feeds: text files (tokenized), image folders, or a Python hook.

Each source gives a small list of calibration feeds (the first `count` items: statistics for the passes
and the verification split) and a *stream* of training feeds over everything after them (read lazily,
re-opened on every pass over the data, never held in memory), used by recovery distillation. Files are
often grouped (by topic, source, length); the stream is shuffled with a new order on every pass — text by
permuting an index of where each line starts (8 bytes a line; lines are read by seeking), images by
permuting their paths. A hook's feeds come in its own order.
Text batches are made of lines of similar token length (sorted within a window of the shuffled stream):
padding to the longest line of a random batch wastes much of the compute on short sentences
(samples/RESULTS.md#recovery).
"""

from __future__ import annotations

import array
import functools
import importlib
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from edgec.compiler.calibration.image_prep import PRESETS, ImagePrep, fitted
from edgec.compiler.calibration.loading import Feed
from edgec.compiler.errors import InputError
from edgec.runtime.inputs import InputSpec

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
LENGTH_WINDOW = 64          # batches' worth of lines sorted by token length together


@dataclass
class DataSource:
    label: str
    calibration: list[Feed]
    training: Callable[[], Iterable[Feed]]


def text_source(path: Path, tokenizer_dir: Path | None, specs: list[InputSpec], count: int,
                max_length: int = 128, batch: int = 16, training_only: bool = False) -> DataSource:
    """The first `count` lines for calibration, the rest as the training stream (all of them with
    `training_only`: a general corpus that only trains)."""
    if tokenizer_dir is None:
        raise InputError("--calib-text needs --tokenizer DIR (a Hugging Face tokenizer folder)")
    if not Path(path).is_file():
        raise InputError(f"{path}: no such text file")
    tokenizer = _tokenizer(tokenizer_dir)
    dtypes = {s.name: s.dtype for s in specs}
    names = set(dtypes)
    fixed_batch, fixed_length = _fixed_text_dims(specs)
    batch = fixed_batch or batch
    max_length = fixed_length or max_length

    def tokenized(lines: list[str]):
        return tokenizer(lines, truncation=True, max_length=max_length)

    def batch_feed(encoding, rows) -> Feed:
        """The model's feed of some rows of an encoding, padded to the longest of them (or the fixed length)."""
        padded = padded_rows(encoding, rows, tokenizer, fixed_length)
        feed = {k: v.astype(dtypes[k]) for k, v in padded.items() if k in names}
        if "token_type_ids" in names and "token_type_ids" not in feed:
            feed["token_type_ids"] = np.zeros_like(feed["input_ids"])
        missing = names - set(feed)
        if missing:
            raise InputError(f"--calib-text: the tokenizer gives no {sorted(missing)} (the model's inputs)")
        return feed

    def encode(lines: list[str]) -> Feed:
        return batch_feed(tokenized(lines), range(len(lines)))

    def lines() -> Iterator[str]:       # read as bytes, as the training stream does (same line breaks)
        with open(path, "rb") as f:
            yield from (text for text in (_decoded(raw) for raw in f) if text)

    head = list(itertools.islice(lines(), count))
    if not head:
        raise InputError(f"{path}: no text lines")

    passes = itertools.count()
    skip = 0 if training_only else count
    training_lines = functools.cache(lambda: line_offsets(path, skip=skip))     # indexed on the first pass

    def training() -> Iterator[Feed]:
        rng = np.random.default_rng(next(passes))
        order = rng.permutation(training_lines())
        with open(path, "rb") as f:
            for at in range(0, len(order), batch * LENGTH_WINDOW):
                encoding = tokenized([_line_at(f, offset) for offset in order[at:at + batch * LENGTH_WINDOW]])
                lengths = [len(ids) for ids in encoding["input_ids"]]
                groups = np.array_split(np.argsort(lengths, kind="stable"), range(batch, len(lengths), batch))
                for k in rng.permutation(len(groups)):
                    if not fixed_batch or len(groups[k]) == fixed_batch:    # a fixed batch takes no remainder
                        yield batch_feed(encoding, groups[k])

    step = fixed_batch or 1    # a model exported for a fixed batch gets calibration feeds of that many lines
    calibration = [encode(head[i:i + step]) for i in range(0, len(head) - step + 1, step)]
    if not calibration:
        raise InputError(f"{path}: fewer lines than the model's fixed batch of {step}")
    return DataSource(f"{path} (text)", calibration, training)


def _fixed_text_dims(specs: list[InputSpec]) -> tuple[int | None, int | None]:
    """The batch and sequence length a model's token inputs were exported with, where fixed (else None)."""
    shapes = [s.shape for s in specs if len(s.shape) == 2]
    batch = [d[0] for d in shapes if isinstance(d[0], int) and d[0] > 0]
    length = [d[1] for d in shapes if isinstance(d[1], int) and d[1] > 0]
    return (batch[0] if batch else None), (length[0] if length else None)


def _tokenizer(folder: Path):
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise InputError("--calib-text needs the transformers package (pip install 'edgec[hf]')") from None
    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - transformers raises many kinds
        raise InputError(f"{folder}: not a tokenizer folder ({str(exc).splitlines()[0][:120]})") from None


def image_source(folder: Path, specs: list[InputSpec], count: int, prep: ImagePrep | None = None) -> DataSource:
    if not Path(folder).is_dir():
        raise InputError(f"{folder}: no such folder")
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    image_specs = [s for s in specs if len(s.shape) == 4]
    if len(specs) != 1 or not image_specs:
        raise InputError("--calib-dir needs a model with one image input (NCHW or NHWC)")
    spec = image_specs[0]
    prep = prep or PRESETS["unit"]
    channels_last = _channels_last(spec.shape)
    dims = spec.shape[1:] if not channels_last else (spec.shape[3], spec.shape[1], spec.shape[2])
    channels, height, width = (d if isinstance(d, int) and d > 0 else default
                               for d, default in zip(dims, (3, 224, 224), strict=True))
    batch = spec.shape[0] if isinstance(spec.shape[0], int) and spec.shape[0] > 0 else 1

    def load(path: Path) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as img:
                img = fitted(img.convert("L" if channels == 1 else "RGB"), width, height, prep.resize)
                array = np.asarray(img, np.float32) / 255.0
        except (OSError, UnidentifiedImageError) as exc:
            raise InputError(f"{path}: not a readable image ({str(exc).splitlines()[0][:120]})") from None
        array = prep.normalize(array[:, :, None] if array.ndim == 2 else array)      # H, W, C
        return array if channels_last else array.transpose(2, 0, 1)

    def feeds(paths: list[Path]) -> Iterator[Feed]:
        """`batch` images a feed (a model exported for a fixed batch takes exactly that many)."""
        for at in range(0, len(paths) - batch + 1, batch):
            yield {spec.name: np.stack([load(p) for p in paths[at:at + batch]]).astype(spec.dtype)}

    passes = itertools.count()
    calibration_files, training_files = files[:count], files[count:]

    def training() -> Iterator[Feed]:
        order = np.random.default_rng(next(passes)).permutation(len(training_files))
        return feeds([training_files[i] for i in order])

    calibration = list(feeds(calibration_files))
    if not calibration:
        raise InputError(f"{folder}: fewer images than the model's fixed batch of {batch}")
    layout = "NHWC" if channels_last else "NCHW"
    return DataSource(f"{folder} (images, {layout}, {prep.resize}, {prep.label})", calibration, training)


def _channels_last(shape: tuple) -> bool:
    """NHWC when the last dimension looks like channels (1, 3 or 4) and the second does not."""
    def is_channels(d) -> bool:
        return isinstance(d, int) and d in (1, 3, 4)
    return is_channels(shape[3]) and not is_channels(shape[1])


def padded_rows(encoding, rows, tokenizer, width: int | None = None) -> dict[str, np.ndarray]:
    """Some rows of an unpadded tokenizer encoding as int64 arrays, padded the way the tokenizer pads, to the
    longest of them or to `width`."""
    rows = list(rows)
    width = width or max(len(encoding["input_ids"][i]) for i in rows)
    pads = {"input_ids": tokenizer.pad_token_id or 0, "token_type_ids": getattr(tokenizer, "pad_token_type_id", 0)}
    out = {}
    for key, sequences in encoding.items():
        array = np.full((len(rows), width), pads.get(key, 0), np.int64)
        for r, i in enumerate(rows):
            values = sequences[i]
            if tokenizer.padding_side == "left":
                array[r, width - len(values):] = values
            else:
                array[r, :len(values)] = values
        out[key] = array
    return out


def line_offsets(path: Path, skip: int) -> np.ndarray:
    """Byte offsets where the non-empty lines after the first `skip` non-empty ones start."""
    offsets, seen, position = array.array("q"), 0, 0       # 8 bytes a line, also while indexing
    with open(path, "rb") as f:
        for raw in f:
            if _decoded(raw):
                if seen >= skip:
                    offsets.append(position)
                seen += 1
            position += len(raw)
    return np.frombuffer(offsets, np.int64) if offsets else np.zeros(0, np.int64)


def _line_at(f, offset: int) -> str:
    f.seek(int(offset))
    return _decoded(f.readline())


def _decoded(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").strip()


def hook_source(spec: str, specs: list[InputSpec], count: int) -> DataSource:
    """`module:function` — a function taking the model's input specs (or nothing) and yielding feed dicts."""
    module_name, _, function_name = spec.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise InputError(f"--calib-hook {spec}: cannot import it ({exc})") from None

    def stream() -> Iterator[Feed]:
        try:
            try:
                items = function(specs)
            except TypeError:
                items = function()
            for feed in items:
                yield {k: np.asarray(v) for k, v in feed.items()}
        except Exception as exc:  # noqa: BLE001 - the user's code: any failure is an input error
            raise InputError(f"--calib-hook {spec} failed: {type(exc).__name__}: {exc}") from None

    head = list(itertools.islice(stream(), count))
    if not head:
        raise InputError(f"--calib-hook {spec}: yielded no feeds")
    return DataSource(f"{spec} (hook)", head, lambda: itertools.islice(stream(), count, None))
