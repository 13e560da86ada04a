"""`edgec fold`: fold a fine-tuned model's weight deltas into its base, pruned (DARE, DAREx-q, magnitude)
or exact, verified against the fine-tuned model; and compact delta files for one base with many variants."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from edgec.compiler import modelio
from edgec.compiler.errors import InputError

MIN_DELTA_ELEMENTS = 256   # 1-D tensors and tiny ones (biases, norms) are folded exactly


@dataclass
class FoldReport:
    base: str
    tuned: str
    method: str
    drop: float
    matched: int = 0
    pruned_tensors: int = 0
    unmatched: list[str] = field(default_factory=list)
    q: float | None = None
    per_layer_q: dict[str, float] = field(default_factory=dict)
    kept_fraction: float = 1.0
    fidelity: list[dict] = field(default_factory=list)
    delta_file: str | None = None
    delta_bytes: int | None = None
    tuned_bytes: int = 0
    notes: list[str] = field(default_factory=list)


def match_initializers(base: onnx.ModelProto, tuned: onnx.ModelProto) -> tuple[dict[str, str], list[str]]:
    """tuned initializer name → base initializer name: same name and shape first, then the same input slot
    of the same-position node with the same op type and shape (exporters may rename weights)."""
    b_init = {t.name: tuple(t.dims) for t in base.graph.initializer}
    t_init = {t.name: tuple(t.dims) for t in tuned.graph.initializer}
    pairs = {n: n for n, shape in t_init.items() if b_init.get(n) == shape}
    if len(base.graph.node) == len(tuned.graph.node):
        for bn, tn in zip(base.graph.node, tuned.graph.node, strict=True):
            if bn.op_type != tn.op_type:
                continue
            for bi, ti in zip(bn.input, tn.input, strict=False):
                if ti in t_init and ti not in pairs and bi in b_init and b_init[bi] == t_init[ti]:
                    pairs[ti] = bi
    unmatched = sorted(set(t_init) - set(pairs))
    return pairs, unmatched


def compute_deltas(base: onnx.ModelProto, tuned: onnx.ModelProto, pairs: dict[str, str]) -> dict[str, tuple]:
    """name (in tuned) → (W_base, Δ) for float tensors that differ."""
    b = {t.name: t for t in base.graph.initializer}
    out = {}
    for t in tuned.graph.initializer:
        if t.name not in pairs:
            continue
        wt = numpy_helper.to_array(t)
        wb = numpy_helper.to_array(b[pairs[t.name]])
        if wt.dtype.kind != "f" or np.array_equal(wt, wb):
            continue
        out[t.name] = (wb, (wt.astype(np.float64) - wb.astype(np.float64)))
    return out


def folded_model(tuned: onnx.ModelProto, deltas: dict[str, tuple], masks: dict[str, np.ndarray],
                 scales: dict[str, float]) -> onnx.ModelProto:
    """The tuned graph with each pruned tensor replaced by W_base + s·(m ⊙ Δ)."""
    model = onnx.ModelProto()
    model.CopyFrom(tuned)
    for i, t in enumerate(model.graph.initializer):
        if t.name in masks:
            wb, d = deltas[t.name]
            value = wb.astype(np.float64) + scales[t.name] * np.where(masks[t.name], d, 0.0)
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(value.astype(wb.dtype), t.name))
    return model


def prunable(deltas: dict[str, tuple]) -> list[str]:
    return [n for n, (_, d) in deltas.items() if d.ndim >= 2 and d.size >= MIN_DELTA_ELEMENTS]


def load_pair(base_path: Path, tuned_path: Path) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    base, tuned = modelio.load_model(base_path), modelio.load_model(tuned_path)
    if len(base.graph.initializer) == 0:
        raise InputError(f"{base_path}: the base model has no weights to fold into")
    return base, tuned


def write_delta(path: Path, deltas: dict[str, tuple], masks: dict[str, np.ndarray], scales: dict[str, float]) -> int:
    """A compact variant: per tensor a packed bit mask and the surviving values (float16) × its scale.
    Exact (unpruned) deltas are stored whole in float32. Returns the bytes written."""
    arrays: dict[str, np.ndarray] = {}
    index = {}
    for k, (name, (_, d)) in enumerate(sorted(deltas.items())):
        if name in masks:
            m = masks[name]
            arrays[f"m{k}"] = np.packbits(m.ravel())
            arrays[f"v{k}"] = (d[m] * scales[name]).astype(np.float16)
        else:
            arrays[f"d{k}"] = d.astype(np.float32)
        index[name] = {"key": k, "shape": list(d.shape)}
    arrays["index"] = np.frombuffer(json.dumps(index).encode(), dtype=np.uint8)
    tmp = modelio.make_tempfile(path)
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)   # type: ignore[arg-type]
    Path(tmp).replace(path)
    return path.stat().st_size


def apply_delta(base: onnx.ModelProto, delta_path: Path) -> onnx.ModelProto:
    try:
        data = np.load(delta_path, allow_pickle=False)
        index = json.loads(bytes(data["index"]).decode())
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{delta_path}: not an edgec delta file ({exc})") from None
    model = onnx.ModelProto()
    model.CopyFrom(base)
    by_name = {t.name: i for i, t in enumerate(model.graph.initializer)}
    missing = sorted(set(index) - set(by_name))
    if missing:
        raise InputError(f"{delta_path}: the base has no weight(s) {missing[:3]}: is this the right base model?")
    for name, entry in index.items():
        k, shape = entry["key"], tuple(entry["shape"])
        init = model.graph.initializer[by_name[name]]
        wb = numpy_helper.to_array(init)
        if wb.shape != shape:
            raise InputError(f"{delta_path}: '{name}' has shape {shape} in the delta but {wb.shape} in the base")
        if f"d{k}" in data:
            d = data[f"d{k}"].astype(np.float64)
        else:
            m = np.unpackbits(data[f"m{k}"])[: int(np.prod(shape))].astype(bool).reshape(shape)
            d = np.zeros(shape)
            d[m] = data[f"v{k}"].astype(np.float64)
        init.CopyFrom(numpy_helper.from_array((wb + d).astype(wb.dtype), name))
    return model
