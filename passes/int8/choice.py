"""Which int8 model a compile keeps: of the candidates that met the floor, the one that runs fastest here, and only
where it beats the float graph in two timings (machines are shared and noisy)."""

from __future__ import annotations

from dataclasses import dataclass

import onnx_graphsurgeon as gs

from edgec.passes.base import PassContext
from edgec.passes.int8.mixed import MixedResult
from edgec.passes.int8.recipes import Recipe

# int8 must time under this × the float graph to count as faster: on the sweep, one int8 Gemm in a CNN measured
# 0.995–0.999× and then 1.00–1.02× in the compile's own timing (noise, not speed)
NOISE = 0.97


@dataclass
class Candidate:
    recipe: Recipe
    result: MixedResult
    layers: list[str]             # the weighted layers the recipe could quantize
    notes: list[str]
    tag: str = ""                 # what sets it apart from the recipe's other candidate ("input layers float")

    @property
    def label(self) -> str:
        return self.recipe.label + (f" [{self.tag}]" if self.tag else "")

    @property
    def quantized(self) -> int:
        """The weighted layers it quantizes (its float nodes may include a wide recipe's Adds and pooling too)."""
        return len(set(self.layers) - set(self.result.float_layers))


def fastest(graph: gs.Graph, candidates: list[Candidate], ctx: PassContext, stats: dict,
            notes: list[str]) -> Candidate | None:
    """The candidate that runs fastest here, or None when the float graph is faster than every one; without a
    latency probe, the one that quantizes the most layers (ties: the higher score)."""
    if ctx.latency is None or len(graph.nodes) == 0:
        return max(candidates, key=lambda c: (c.quantized, c.result.score))
    float_ms, *int8_ms = ctx.latency([graph, *(gs.import_onnx(c.result.model) for c in candidates)])
    stats["latency_vs_float"] = {c.label: round(ms / float_ms, 3) for c, ms in zip(candidates, int8_ms,
                                                                                         strict=True)}
    best = min(range(len(candidates)), key=lambda i: int8_ms[i])
    label, first = candidates[best].label, int8_ms[best] / float_ms
    if first > NOISE:
        notes.append(f"int8 kept float: the fastest recipe ({label}) measured {first:.3f}× the float graph's latency "
                     f"here (a gain is under {NOISE}×)")
        return None
    # a gain must hold in a second timing: one timing of a model whose int8 changes little reads under NOISE
    # about one time in four (a ResNet's int8 classifier head alone: 0.96× in the pass, 1.13× in the sweep)
    again_float, again_int8 = ctx.latency([graph, gs.import_onnx(candidates[best].result.model)])
    second = again_int8 / again_float
    stats["latency_confirmed"] = round(second, 3)
    if second > NOISE:
        notes.append(f"int8 kept float: the fastest recipe ({label}) measured {first:.3f}× the float graph's latency, "
                     f"then {second:.3f}× (a gain must hold under {NOISE}× in both timings)")
        return None
    return candidates[best]
