"""The files a compile reads, packed as bytes so that a task can run on a machine that shares no filesystem
with the host (a Ray worker, a process pool): the model with its external data, and every file or folder the
calibration spec names. Unpacked into a temporary folder on the worker under the same names; `restore_paths`
maps the worker's paths in a report back to the user's."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from edgec.compiler.calibration.spec import CalibrationSpec
from edgec.compiler.errors import InputError

SPEC_PATHS = ("npz", "text", "tokenizer", "images", "eval_text", "train_text")
# weights beside a tokenizer (an HF model folder given as --tokenizer) are not needed to tokenize
SKIPPED_IN_TOKENIZER = {".safetensors", ".bin", ".onnx", ".pt", ".pth", ".h5", ".msgpack", ".ot", ".data"}


@dataclass(frozen=True)
class Bundle:
    files: dict[str, bytes]             # path relative to the bundle's root → contents
    model: str                          # the model's relative path
    spec: CalibrationSpec               # paths relative to the root
    originals: dict[str, str]           # relative path → the user's path (for reports)

    @property
    def size(self) -> int:
        return sum(len(b) for b in self.files.values())

    def unpack(self, root: Path) -> tuple[Path, CalibrationSpec]:
        """Write the files under `root`; the model's path and the spec with paths under `root`."""
        for rel, data in self.files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        moved: dict[str, Any] = {f: root / getattr(self.spec, f) for f in SPEC_PATHS
                                 if getattr(self.spec, f) is not None}
        for name in ("tokenizer", "images"):     # a folder with no file shipped still exists
            if name in moved:
                moved[name].mkdir(parents=True, exist_ok=True)
        return root / self.model, dataclasses.replace(self.spec, **moved)

    def restore_paths(self, value: Any, root: Path) -> Any:
        """`value` (a report, in place where it can be) with the worker's paths under `root` replaced by the user's."""
        pairs = sorted(((str(root / rel), user) for rel, user in self.originals.items()), key=lambda p: -len(p[0]))
        return _replace_strings(value, pairs + [(str(root), ".")])


def pack(model: Path, spec: CalibrationSpec) -> Bundle:
    files: dict[str, bytes] = {}
    originals: dict[str, str] = {}
    rel_model = f"model/{model.name}"
    _add_model(model, rel_model, files)
    originals[rel_model] = str(model)
    relative: dict[str, Any] = {}
    for i, field in enumerate(SPEC_PATHS):
        path = getattr(spec, field)
        if path is None:
            continue
        rel = f"{field}{i}/{Path(path).name or field}"
        relative[field] = Path(rel)
        originals[rel] = str(path)
        _add_path(Path(path), rel, files, skip=SKIPPED_IN_TOKENIZER if field == "tokenizer" else set())
    return Bundle(files, rel_model, dataclasses.replace(spec, **relative), originals)


def _add_model(model: Path, rel: str, files: dict[str, bytes]) -> None:
    """The model file and the external data files it names (read as they are; the worker loads them)."""
    try:
        files[rel] = model.read_bytes()
        proto = onnx.load_model_from_string(files[rel]) if _small(files[rel]) else None
    except OSError as exc:
        raise InputError(f"{model}: cannot read ({exc.strerror or exc})") from None
    except Exception:  # noqa: BLE001 - a corrupt file: the worker's compile reports it like a local one
        return
    for location in _external_locations(proto) if proto is not None else []:
        source = model.parent / location
        if source.is_file():
            files[str(Path(rel).parent / location)] = source.read_bytes()


def _small(data: bytes) -> bool:
    return len(data) < 2 ** 31


def _external_locations(model: onnx.ModelProto) -> set[str]:
    found = set()
    for tensor in onnx.external_data_helper._get_all_tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            found |= {e.value for e in tensor.external_data if e.key == "location"}
    return found


def _add_path(path: Path, rel: str, files: dict[str, bytes], skip: set[str]) -> None:
    """A file, or a folder's files (recursively, minus the suffixes in `skip`); a missing one is left for the
    worker's compile to report as a local compile would."""
    if path.is_file():
        files[rel] = path.read_bytes()
    elif path.is_dir():
        for item in sorted(path.rglob("*")):
            if item.is_file() and item.suffix.lower() not in skip:
                files[str(Path(rel) / item.relative_to(path))] = item.read_bytes()


def _replace_strings(value: Any, pairs: list[tuple[str, str]]) -> Any:
    if isinstance(value, str):
        for old, new in pairs:
            value = value.replace(old, new)
        return value
    if isinstance(value, dict):
        return {k: _replace_strings(v, pairs) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_replace_strings(v, pairs) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            object.__setattr__(value, f.name, _replace_strings(getattr(value, f.name), pairs))
        return value
    return value
