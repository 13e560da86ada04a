"""Where a compile's calibration inputs come from: one frozen spec, built and checked by the CLI before any
model is loaded (which source, how many items, how synthesized inputs are shaped)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgec.compiler.errors import InputError

IMAGE_PRESETS = ("imagenet", "clip", "unit", "signed", "raw")
IMAGE_RESIZES = ("stretch", "crop", "pad")


@dataclass(frozen=True)
class CalibrationSpec:
    npz: Path | None = None          # --calib: arrays keyed by input name
    text: Path | None = None         # --calib-text: one text per line, tokenized with `tokenizer`
    tokenizer: Path | None = None
    images: Path | None = None       # --calib-dir: a folder of images
    hook: str | None = None          # --calib-hook: module:function yielding feed dicts
    count: int = 96                  # items of a text / image / hook source used for calibration
    samples: int = 24                # synthesized feeds when no source is given
    image_preset: str | None = None  # how --calib-dir pixels are normalized
    image_resize: str | None = None  # how --calib-dir images are fitted to the input
    eval_text: Path | None = None    # --eval-text: a second held-out source (another domain), judged like the first
    eval_count: int = 256            # lines of it used
    eval_gated: bool = True          # the gate covers it (False: judged only — the default general text)
    train_text: Path | None = None   # --train-text: a general corpus mixed into the training stream (recovery)
    dims: dict[str, int] = field(default_factory=dict)             # --dim NAME=VALUE for synthesized feeds
    input_values: dict[str, object] = field(default_factory=dict)  # --input NAME=VALUE for synthesized feeds

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.npz, self.text, self.images, self.hook)) > 1:
            raise InputError("give one of --calib, --calib-text, --calib-dir and --calib-hook")
        for flag, path in (("--calib-text", self.text), ("--eval-text", self.eval_text),
                           ("--train-text", self.train_text)):
            if path is not None and self.tokenizer is None:
                raise InputError(f"{flag} needs --tokenizer DIR (a Hugging Face tokenizer folder)")
        if self.count < 1 or self.samples < 1:
            raise InputError(f"calibration item counts must be ≥ 1 (got {self.count}, {self.samples})")
        if self.image_preset not in (None, *IMAGE_PRESETS):
            raise InputError(f"--image-preset {self.image_preset}: one of {', '.join(IMAGE_PRESETS)}")
        if self.image_resize not in (None, *IMAGE_RESIZES):
            raise InputError(f"--image-resize {self.image_resize}: one of {', '.join(IMAGE_RESIZES)}")

    @property
    def kind(self) -> str:
        """npz | text | images | hook | synthesized"""
        for kind, value in (("npz", self.npz), ("text", self.text), ("images", self.images), ("hook", self.hook)):
            if value is not None:
                return kind
        return "synthesized"

    @property
    def hint(self) -> str:
        """What to tell a user whose inputs ONNX Runtime refuses."""
        return "check the arrays in --calib" if self.npz else "give real inputs with --calib FILE.npz"
