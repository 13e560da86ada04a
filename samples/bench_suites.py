"""What `make bench` compares: one suite per model, each a list of compile variants.

- minilm: the real all-MiniLM-L6-v2 (sentence embeddings; batch 1, sequence 128);
- vit: the sample ViT trained on scikit-learn's digits (logits and top-1 on the digits test split).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


@dataclass
class Variant:
    label: str
    group: str
    passes: list[str] = field(default_factory=list)
    options: dict[str, dict] = field(default_factory=dict)


@dataclass
class Suite:
    name: str
    title: str
    prepare: Callable[[Path], tuple[Path, Path]]        # folder → (model, calibration .npz)
    variants: list[Variant]
    gate_outputs: list[str] | None
    timing_dims: dict[str, int]
    accuracy: Callable[[Path, Path], float] | None = None    # (model, folder) → top-1 on a labelled test split


def references() -> list[Variant]:
    return [Variant("original (fp32)", "reference"),
            Variant("ORT transformer-optimized (fuse)", "reference", ["cleanup", "fuse"]),
            Variant("ORT int8 per-channel", "reference", ["cleanup", "quantize"]),
            Variant("ORT fused + int8 per-channel", "reference", ["cleanup", "fuse", "quantize"])]


def prune_variants() -> list[Variant]:
    out = []
    for keep in (0.75, 0.5, 0.4):
        for comp in (False, True):
            name = f"prune keep {keep:.0%}" + (" + LS compensation" if comp else " (no compensation)")
            out.append(Variant(name, "prune", ["cleanup", "prune"], {"prune": {"keep": keep, "compensate": comp}}))
        out.append(Variant(f"prune keep {keep:.0%} + LS + int8", "prune", ["cleanup", "prune", "quantize"],
                           {"prune": {"keep": keep}}))
    out.append(Variant("prune floor 0.995 + int8", "prune", ["cleanup", "prune", "quantize"],
                       {"prune": {"floor": 0.995}}))
    return out


def selector_variants() -> list[Variant]:
    """Who chooses what goes, side by side with prune's OBS rows: Frank–Wolfe for MLP units, group OBS for
    attention heads, and heads with MLP units together (training-free; recovery is `make bench-recover`)."""
    out = [Variant(f"prune keep {keep:.0%} Frank–Wolfe + LS", "selectors", ["cleanup", "prune"],
                   {"prune": {"keep": keep, "score": "frank-wolfe"}}) for keep in (0.75, 0.5)]
    out += [Variant(f"heads keep {keep:.0%} + LS", "selectors", ["cleanup", "heads"], {"heads": {"keep": keep}})
            for keep in (0.9, 0.75)]
    out += [Variant("heads floor 0.998 + prune floor 0.995 + int8", "selectors", ["cleanup", "heads", "prune", "quantize"],
                    {"heads": {"floor": 0.998}, "prune": {"floor": 0.995}}),
            Variant("heads keep 75% + prune keep 50% + int8", "selectors", ["cleanup", "heads", "prune", "quantize"],
                    {"heads": {"keep": 0.75}, "prune": {"keep": 0.5}})]
    return out


def lowrank_variants(budgets=(0.5, 0.4), methods=("svd", "whitened")) -> list[Variant]:
    return [Variant(f"lowrank {method} {params:.0%} params", "lowrank", ["cleanup", "lowrank"],
                    {"lowrank": {"params": params, "method": method, "max_rank_ratio": 1.0}})
            for params in budgets for method in methods]


def share_variants(budgets=(0.5, 0.4), steps: int = 600) -> list[Variant]:
    """Every variant at a budget stores the same MLP bytes as lowrank at that `params`."""
    out = []
    for params in budgets:
        share = {"params": params, "group": 2}
        out += [Variant(f"share {params:.0%} init (speed, groups of 2)", "share", ["cleanup", "share"],
                        {"share": share}),
                Variant(f"share {params:.0%} + reconstruction", "share", ["cleanup", "share"],
                        {"share": {**share, "train_steps": steps, "lr": 3e-4}}),
                Variant(f"share {params:.0%} storage, 75%-sparse V + recon", "share", ["cleanup", "share"],
                        {"share": {**share, "mode": "storage", "train_steps": steps}})]
    return out


def sparse_variants() -> list[Variant]:
    return [Variant(f"sparse {spec} (wanda + LS, storage)", "sparse", ["cleanup", "sparse"],
                    {"sparse": {"pattern": spec}}) for spec in ("0.5", "2:4", "0.8")]


def _prepare_minilm(folder: Path) -> tuple[Path, Path]:
    from edgec.compiler.export import export
    from edgec.samples.minilm import write_calibration

    base, calib = folder / "minilm.onnx", folder / "sentences.npz"
    if not base.exists():
        export("minilm", base)
    write_calibration(calib)
    return base, calib


def _prepare_vit(folder: Path) -> tuple[Path, Path]:
    from edgec.samples.digits import make

    if not (folder / "vit_digits.onnx").exists():
        make(folder)
    return folder / "vit_digits.onnx", folder / "calib.npz"


def _vit_accuracy(model: Path, folder: Path) -> float:
    import numpy as np

    from edgec.samples.digits import top1

    test = np.load(folder / "test.npz")
    return top1(model, test["pixel_values"], test["labels"])


def suites() -> dict[str, Suite]:
    minilm = Suite("minilm", "all-MiniLM-L6-v2, batch 1, sequence 128", _prepare_minilm,
                   references() + prune_variants() + selector_variants() + lowrank_variants() + share_variants()
                   + sparse_variants(),
                   ["sentence_embedding"], {"batch": 1, "sequence": 128})
    vit_variants = [v for v in references() if "fuse" not in v.passes] + [
        Variant("prune floor 0.995", "prune", ["cleanup", "prune"], {"prune": {"floor": 0.995}}),
        Variant("prune floor 0.995 + int8", "prune", ["cleanup", "prune", "quantize"], {"prune": {"floor": 0.995}}),
        Variant("heads floor 0.998 + prune floor 0.995 + int8", "selectors", ["cleanup", "heads", "prune", "quantize"],
                {"heads": {"floor": 0.998}, "prune": {"floor": 0.995}}),
        *lowrank_variants((0.4,), ("whitened",)), *share_variants((0.4,), steps=300)]
    vit = Suite("vit", "sample ViT trained on digits (d 96, 4 blocks), batch 1", _prepare_vit, vit_variants,
                None, {"batch": 1}, _vit_accuracy)
    return {s.name: s for s in (minilm, vit)}
