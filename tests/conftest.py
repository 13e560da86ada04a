"""Shared fixtures. The tests folder is on sys.path (rootdir conftest), so `import models` works."""

from __future__ import annotations

import hashlib
from pathlib import Path

import onnx
import pytest


@pytest.fixture
def save(tmp_path: Path):
    """Write a ModelProto to tmp_path/<name>.onnx and return the path."""

    def _save(model: onnx.ModelProto, name: str = "model") -> Path:
        path = tmp_path / f"{name}.onnx"
        onnx.save_model(model, str(path))
        return path

    return _save


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
