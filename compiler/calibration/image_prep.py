"""How a folder of images becomes model input: resize mode, pixel scale, mean/std normalization.

A model trained on normalized pixels and calibrated on raw [0, 1] ones is compressed for inputs it never
sees, and its fidelity is judged on them too. The preprocessing comes from a preset (`--image-preset`),
or from the Hugging Face `preprocessor_config.json` beside the model, else raw [0, 1] pixels with a warning.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgec.compiler.errors import InputError

RESIZE_MODES = ("stretch", "crop", "pad")


@dataclass(frozen=True)
class ImagePrep:
    label: str
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)    # on [0, 1] pixels
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    scale: float = 1.0                            # [0, 1] pixels times this before mean/std (255: raw 0..255)
    resize: str = "stretch"                       # stretch | crop (shorter side, centre crop) | pad (letterbox)
    known: bool = True                            # False: nobody said how the model wants its pixels

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """[H, W, C] pixels in [0, 1] → what the model takes."""
        channels = pixels.shape[-1]
        mean, std = np.asarray(self.mean[:channels], np.float32), np.asarray(self.std[:channels], np.float32)
        return (pixels * self.scale - mean) / std


PRESETS = {
    "imagenet": ImagePrep("imagenet mean/std", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "clip": ImagePrep("CLIP mean/std", (0.4815, 0.4578, 0.4082), (0.2686, 0.2613, 0.2758)),
    "unit": ImagePrep("[0, 1] pixels"),
    "signed": ImagePrep("[-1, 1] pixels", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "raw": ImagePrep("0..255 pixels", scale=255.0),
}
UNKNOWN = ImagePrep("[0, 1] pixels, no mean/std: no --image-preset and no preprocessor_config.json beside "
                    "the model", known=False)


def image_prep(preset: str | None, resize: str | None, model_path: Path | None) -> ImagePrep:
    if preset is not None and preset not in PRESETS:
        raise InputError(f"--image-preset {preset}: expected one of {', '.join(PRESETS)}")
    if resize is not None and resize not in RESIZE_MODES:
        raise InputError(f"--image-resize {resize}: expected one of {', '.join(RESIZE_MODES)}")
    config = Path(model_path).with_name("preprocessor_config.json") if model_path else None
    prep = PRESETS[preset] if preset else (_from_hf_config(config) if config and config.is_file() else UNKNOWN)
    return prep if resize is None else ImagePrep(**{**prep.__dict__, "resize": resize})


def _from_hf_config(path: Path) -> ImagePrep:
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable preprocessor config ({exc})") from None
    if not isinstance(config, dict):
        raise InputError(f"{path}: a preprocessor config is a JSON object")
    normalize = config.get("do_normalize", True)
    mean = _floats(path, config, "image_mean", 0.0) if normalize else (0.0,) * 3
    std = _floats(path, config, "image_std", 1.0) if normalize else (1.0,) * 3
    rescale = _floats(path, config, "rescale_factor", 1 / 255)[0] if config.get("do_rescale", True) else 1.0
    if 0.0 in std:
        raise InputError(f"{path}: image_std holds a zero")
    resize = "crop" if config.get("do_center_crop") else "stretch"
    return ImagePrep(f"{path.name}: mean {mean}, std {std}", mean, std, rescale * 255.0, resize)


def _floats(path: Path, config: dict, key: str, default: float) -> tuple[float, ...]:
    """A number or a list of 1 or 3 numbers (per channel), as three floats; the default when absent."""
    value = config.get(key, default)
    values = value if isinstance(value, list) else [value]
    if len(values) not in (1, 3) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise InputError(f"{path}: '{key}' must be a number or a list of 1 or 3 numbers, not {value!r}")
    return tuple(float(v) for v in values) * (3 // len(values))


def fitted(img, width: int, height: int, mode: str):
    """A PIL image resized to (width, height) by `mode`."""
    from PIL import Image

    if mode == "stretch":
        return img.resize((width, height))
    if mode == "crop":
        ratio = max(width / img.width, height / img.height)
        img = img.resize((max(width, round(img.width * ratio)), max(height, round(img.height * ratio))))
        left, top = (img.width - width) // 2, (img.height - height) // 2
        return img.crop((left, top, left + width, top + height))
    ratio = min(width / img.width, height / img.height)
    inner = img.resize((max(1, round(img.width * ratio)), max(1, round(img.height * ratio))))
    canvas = Image.new(img.mode, (width, height), 114 if img.mode == "L" else (114, 114, 114))
    canvas.paste(inner, ((width - inner.width) // 2, (height - inner.height) // 2))
    return canvas
