"""Shared pieces of the real-model sweep: deterministic input material (rendered text, speech-like
audio, simple scenes) and task-level checks that compare original and compiled outputs.

A check gets (feeds, original outputs per feed, compiled outputs per feed) and returns
(task kept?, one-line summary). Most checks combine a task criterion (top-1, decisions, decoded text,
matched boxes) with a bound on the largest error relative to the output's range, so that a compiled
model whose numbers drift by ~10 % of the range is flagged even when the task happens to survive.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

Feeds = list[dict[str, np.ndarray]]
Outputs = list[list[np.ndarray]]
Task = Callable[[Feeds, Outputs, Outputs], tuple[float, str]]

# realistic inputs per model: two thirds calibrate (edgec holds a quarter of those out), the rest judge. With 12,
# static int8 of a CNN never ran (4 calibration inputs set no trustworthy activation ranges): a user calibrating
# static int8 brings tens of images, not four
FEEDS = 24

WORDS = ("the quick brown fox jumps over lazy dog invoice total date amount paid order number "
         "street city phone email price tax receipt model compiler edge device 2024 17.50 42 "
         "OCR TEXT Hello World ONNX Runtime").split()


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# ---------------------------------------------------------------- text images


def font(size: int) -> ImageFont.ImageFont:
    """Pillow's bundled font (a scalable FreeType font when Pillow has FreeType, else the bitmap one)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: only the fixed bitmap font
        return ImageFont.load_default()


def phrase(r: np.random.Generator, words: int) -> str:
    return " ".join(str(w) for w in r.choice(WORDS, size=words))


def text_line(text: str, height: int, r: np.random.Generator, ink: int = 20) -> np.ndarray:
    """Grey-scale uint8 image of one line of dark text on a light, slightly noisy background."""
    size = int(height * 0.7)
    face = font(size)
    width = int(face.getlength(text)) + height
    img = Image.new("L", (width, height), 245)
    ImageDraw.Draw(img).text((height // 2, (height - size) // 2 - size // 10), text, fill=ink, font=face)
    arr = np.asarray(img, dtype=np.float32) + r.normal(0, 4, (height, width))
    return np.clip(arr, 0, 255).astype(np.uint8)


def text_page(height: int, width: int, r: np.random.Generator, lines: int) -> np.ndarray:
    """A page with `lines` lines of text at random indents and sizes."""
    page = np.full((height, width), 250, np.uint8)
    y = int(r.integers(8, 30))
    for _ in range(lines):
        line = text_line(phrase(r, int(r.integers(2, 6))), int(r.integers(24, 48)), r)
        line = line[:, : width - 20]
        x = int(r.integers(5, max(6, width - line.shape[1] - 5)))
        if y + line.shape[0] >= height:
            break
        page[y : y + line.shape[0], x : x + line.shape[1]] = line
        y += line.shape[0] + int(r.integers(6, 30))
    return page


def resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    mode_img = Image.fromarray(img)
    return np.asarray(mode_img.resize((width, height), Image.BILINEAR))


def scene(height: int, width: int, r: np.random.Generator, shapes: int = 6) -> np.ndarray:
    """An RGB uint8 'photo': a sky-to-ground gradient with lit ellipses and rectangles, plus sensor noise."""
    top, bottom = r.uniform(60, 220, 3), r.uniform(20, 160, 3)
    t = np.linspace(0, 1, height)[:, None, None]
    img = Image.fromarray(np.broadcast_to(top * (1 - t) + bottom * t, (height, width, 3)).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(shapes):
        x0, y0 = r.integers(0, width - 20), r.integers(0, height - 20)
        w, h = r.integers(width // 10, width // 2), r.integers(height // 10, height // 2)
        colour = tuple(int(c) for c in r.integers(30, 255, 3))
        shape = draw.ellipse if r.random() < 0.5 else draw.rectangle
        shape([int(x0), int(y0), int(x0 + w), int(y0 + h)], fill=colour)
    arr = np.asarray(img, dtype=np.float32) + r.normal(0, 3, (height, width, 3))
    return np.clip(arr, 0, 255).astype(np.uint8)


def face_patch(size: int, r: np.random.Generator) -> np.ndarray:
    """A crude frontal face: skin-tone oval, darker eyes/brows, nose shadow and mouth (RGB uint8)."""
    skin = np.array([r.uniform(150, 230), r.uniform(110, 180), r.uniform(80, 150)])
    img = Image.fromarray(np.full((size, size, 3), r.uniform(40, 200, 3), np.uint8))
    d, s = ImageDraw.Draw(img), size
    d.ellipse([s * 0.15, s * 0.05, s * 0.85, s * 0.98], fill=tuple(int(c) for c in skin))
    dark = tuple(int(c) for c in skin * 0.35)
    for cx in (0.35, 0.65):
        d.ellipse([s * (cx - 0.08), s * 0.38, s * (cx + 0.08), s * 0.46], fill=dark)
        d.line([s * (cx - 0.1), s * 0.31, s * (cx + 0.1), s * 0.3], fill=dark, width=max(1, s // 30))
    d.polygon([(s * 0.5, s * 0.45), (s * 0.44, s * 0.63), (s * 0.56, s * 0.63)], fill=tuple(int(c) for c in skin * 0.8))
    d.ellipse([s * 0.38, s * 0.73, s * 0.62, s * 0.8], fill=(int(skin[0] * 0.6), 40, 50))
    return np.asarray(img)


def person_patch(size: int, r: np.random.Generator) -> np.ndarray:
    """A head-and-shoulders portrait: clothes, neck, hair and a `face_patch`, softly blurred (RGB uint8)."""
    img = Image.new("RGB", (size, size), tuple(int(c) for c in r.uniform(40, 200, 3)))
    d, s = ImageDraw.Draw(img), size
    skin = np.array([r.uniform(170, 235), r.uniform(120, 180), r.uniform(90, 150)])
    d.ellipse([s * 0.05, s * 0.75, s * 0.95, s * 1.4], fill=tuple(int(c) for c in r.uniform(20, 230, 3)))
    d.rectangle([s * 0.42, s * 0.55, s * 0.58, s * 0.8], fill=tuple(int(c) for c in skin * 0.9))
    d.ellipse([s * 0.27, s * 0.05, s * 0.73, s * 0.45], fill=tuple(int(c) for c in r.uniform(10, 90, 3)))
    face = face_patch(int(s * 0.42), r)
    fh, fw = face.shape[:2]
    mask = Image.new("L", (fw, fh), 0)
    ImageDraw.Draw(mask).ellipse([fw * 0.15, fh * 0.05, fw * 0.85, fh * 0.98], fill=255)
    img.paste(Image.fromarray(face), (int(s * 0.29), int(s * 0.14)), mask)
    return np.asarray(img.filter(ImageFilter.GaussianBlur(1)))


# ---------------------------------------------------------------- audio


def speech_like(sr: int, seconds: float, r: np.random.Generator, speech_frac: float = 0.6) -> np.ndarray:
    """Float32 mono in [-1, 1]: voiced 'syllables' (harmonics of a gliding f0 with formant-ish
    emphasis, 4-6 Hz amplitude modulation) alternating with low-level noise/silence."""
    n = int(sr * seconds)
    out = r.normal(0, 0.002, n).astype(np.float32)
    pos = int(r.integers(0, sr // 2))
    while pos < n:
        seg = int(sr * r.uniform(0.3, 1.2))
        if r.random() < speech_frac:
            out[pos : pos + seg] += voiced(sr, seg, r)[: n - pos]
        pos += seg + int(sr * r.uniform(0.1, 0.6))
    return np.clip(out, -1, 1)


def voiced(sr: int, n: int, r: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / sr
    f0 = r.uniform(90, 240) * (1 + 0.15 * np.sin(2 * np.pi * r.uniform(0.5, 2) * t))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    formants = r.uniform([400, 1100, 2300], [900, 1900, 3200])
    sig = np.zeros(n)
    for k in range(1, 25):
        fk = k * f0.mean()
        if fk > sr / 2 - 200:
            break
        gain = sum(np.exp(-((fk - f) / 180.0) ** 2) for f in formants) + 0.05
        sig += gain / k**0.5 * np.sin(k * phase)
    env = np.clip(np.sin(np.pi * np.arange(n) / n), 0, 1) * (0.6 + 0.4 * np.sin(2 * np.pi * r.uniform(4, 6) * t))
    sig = sig * env / (np.abs(sig).max() + 1e-9) * r.uniform(0.2, 0.7)
    return (sig + r.normal(0, 0.01, n)).astype(np.float32)


# ---------------------------------------------------------------- checks


def rel_err(orig: Outputs, comp: Outputs, index: int) -> float:
    """Largest |orig - comp| over all feeds for output `index`, relative to that output's range."""
    a = [np.asarray(o[index], dtype=np.float64) for o in orig]
    b = [np.asarray(c[index], dtype=np.float64) for c in comp]
    if any(x.shape != y.shape for x, y in zip(a, b, strict=True)):
        return float("inf")
    spread = max(float(x.max() - x.min()) for x in a if x.size) or 1.0
    err = max(float(np.abs(x - y).max()) if x.size else 0.0 for x, y in zip(a, b, strict=True))
    return err / spread


def checked(task: Task, need: float, tol: float, outputs: tuple[int, ...] = (0,)) -> Callable:
    """A check: the task score must reach `need` and the error on `outputs` stay within `tol` of range."""

    def check(feeds: Feeds, orig: Outputs, comp: Outputs) -> tuple[bool, str]:
        if len(orig) != len(comp) or any(len(o) != len(c) for o, c in zip(orig, comp, strict=True)):
            return False, "output count differs"
        score, summary = task(feeds, orig, comp)
        err = max(rel_err(orig, comp, i) for i in outputs) if outputs else 0.0
        return bool(score >= need and err <= tol), f"{summary}; max err {100 * err:.2g}% of range"

    return check


def top1(index: int = 0, axis: int = -1) -> Task:
    def task(feeds, orig, comp):
        a = np.concatenate([np.argmax(o[index], axis=axis).ravel() for o in orig])
        b = np.concatenate([np.argmax(c[index], axis=axis).ravel() for c in comp])
        same = int((a == b).sum()) if a.shape == b.shape else 0
        return same / max(1, a.size), f"top-1 agree {same}/{a.size}"

    return task


def decisions(index: int, threshold: float, what: str = "decisions") -> Task:
    """Binary decisions (value > threshold) of output `index` must agree."""

    def task(feeds, orig, comp):
        a = np.concatenate([(np.asarray(o[index]) > threshold).ravel() for o in orig])
        b = np.concatenate([(np.asarray(c[index]) > threshold).ravel() for c in comp])
        same = int((a == b).sum()) if a.shape == b.shape else 0
        return same / max(1, a.size), f"{what} agree {100 * same / max(1, a.size):.1f}% of {a.size}"

    return task


def mask_iou(index: int, threshold: float) -> Task:
    """Intersection-over-union of the binarised maps (union over all feeds)."""

    def task(feeds, orig, comp):
        inter = union = 0
        for o, c in zip(orig, comp, strict=True):
            a, b = np.asarray(o[index]) > threshold, np.asarray(c[index]) > threshold
            if a.shape != b.shape:
                return 0.0, "mask shapes differ"
            inter, union = inter + int((a & b).sum()), union + int((a | b).sum())
        iou = inter / union if union else 1.0
        return iou, f"mask IoU {iou:.3f} ({union} px)"

    return task


def ctc_collapse(ids: np.ndarray, blank: int) -> tuple[int, ...]:
    """Greedy CTC: merge repeats, drop blanks."""
    ids = np.asarray(ids).ravel()
    keep = np.ones(ids.size, bool)
    keep[1:] = ids[1:] != ids[:-1]
    return tuple(int(i) for i in ids[keep] if i != blank)


def sequences(decode: Callable[[list[np.ndarray]], list[tuple]], what: str = "decoded text") -> Task:
    """`decode` maps one feed's outputs to a list of label sequences; all must be identical."""

    def task(feeds, orig, comp):
        a = [s for o in orig for s in decode(o)]
        b = [s for c in comp for s in decode(c)]
        same = sum(x == y for x, y in zip(a, b, strict=True)) if len(a) == len(b) else 0
        return same / max(1, len(a)), f"{what} identical {same}/{len(a)}"

    return task


def embedding_agreement(index: int = 0, pool: Callable[[np.ndarray], np.ndarray] | None = None) -> Task:
    """Cosine of each row with its original (the score) and nearest-neighbour agreement within every feed."""

    def task(feeds, orig, comp):
        cosines, nn_same, nn_total = [], 0, 0
        for o, c in zip(orig, comp, strict=True):
            a, b = (pool(o[index]), pool(c[index])) if pool else (o[index], c[index])
            a, b = _unit(a.reshape(a.shape[0], -1)), _unit(b.reshape(b.shape[0], -1))
            cosines.append((a * b).sum(1))
            sa, sb = a @ a.T - 2 * np.eye(len(a)), b @ b.T - 2 * np.eye(len(b))
            nn_same += int((sa.argmax(1) == sb.argmax(1)).sum())
            nn_total += len(a)
        low = float(np.concatenate(cosines).min())
        # near-duplicate rows may swap neighbours legitimately: 90 % agreement is required, not all
        return low if nn_same >= 0.9 * nn_total else 0.0, f"min cosine {low:.4f}, NN agree {nn_same}/{nn_total}"

    return task


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-12)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of [x0, y0, x1, y1] boxes."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: (x[:, 2] - x[:, 0]).clip(0) * (x[:, 3] - x[:, 1]).clip(0)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter + 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    order, keep = np.argsort(-scores), []
    while order.size:
        keep.append(order[0])
        order = order[1:][box_iou(boxes[order[:1]], boxes[order[1:]])[0] < iou]
    return np.array(keep, dtype=int)


def matched_boxes(detect: Callable[[list[np.ndarray]], list[tuple[np.ndarray, np.ndarray]]]) -> Task:
    """`detect` turns one feed's outputs into [(boxes, classes)] per image after the package's
    threshold + NMS; the share of boxes (both ways) with a same-class partner at IoU >= 0.5 is the score."""

    def task(feeds, orig, comp):
        hit = total = 0
        for o, c in zip(orig, comp, strict=True):
            for (ba, ca), (bb, cb) in zip(detect(o), detect(c), strict=True):
                for x, cx, y, cy in ((ba, ca, bb, cb), (bb, cb, ba, ca)):
                    total += len(x)
                    if len(x) and len(y):
                        ok = (box_iou(x, y) >= 0.5) & (cx[:, None] == cy[None, :])
                        hit += int(ok.any(1).sum())
        share = hit / total if total else 1.0
        return share, f"boxes IoU>=0.5 for {100 * share:.0f}% of {total // 2} boxes"

    return task
