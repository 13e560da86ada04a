"""What the ways of recovery share: which outputs judge the result, which intermediate tensors teach, and how the
group-affine ways name their sites (slots) and report them."""

from __future__ import annotations

from collections import Counter

import onnx_graphsurgeon as gs

from edgec.passes.base import TeacherSource
from edgec.passes.mlp.discovery import editable_blocks
from edgec.passes.recovery.affines import group_count
from edgec.passes.recovery.sites import Site
from edgec.runtime.zo.tuner import SiteSlot


def judged_outputs(teacher: TeacherSource, outputs: list[str]) -> list[str]:
    """The outputs the user's gate judges (every output teaches; the best weights are chosen on these)."""
    return [n for n in outputs if teacher.judged is None or n in teacher.judged] or outputs


def intermediates(graph: gs.Graph, match: str, outputs: list[str], teacher: TeacherSource) -> list[str]:
    """Tensors both graphs compute that the student is taught to match (see RecoverOptions.match)."""
    if match == "none":
        return []
    tensors = [matched_tensor(b.fc2.y, "mlp" if match == "mlp" else "layer") for b in editable_blocks(graph)]
    if match == "norms":
        tensors += [n.outputs[0] for n in graph.nodes if n.op == "LayerNormalization"]
    names = list(dict.fromkeys(t.name for t in tensors))
    return [n for n in names if n not in outputs and teacher.has_tensor(n)]


def matched_tensor(mlp_output: gs.Variable, where: str) -> gs.Variable:
    """The MLP block's output, or (where=layer) the residual stream it is added into."""
    tensor = mlp_output
    if where == "layer":
        for op in ("Add", "LayerNormalization"):
            users = tensor.outputs
            if len(users) != 1 or users[0].op != op:
                break
            tensor = users[0].outputs[0]
    return tensor


def slots_for(sites: list[Site], groups: int) -> list[SiteSlot]:
    """The tuning graph's view of each site: the tensor, its γ/β input names, the unmodulated tensor's name."""
    return [SiteSlot(output=s.output, channels=s.channels, groups=group_count(s.channels, groups),
                     gamma=f"grasp/{i}/gamma", beta=f"grasp/{i}/beta" if s.shifts else None,
                     raw=f"{s.output}/grasp_in", label=s.label, shape=tuple(s.shape)) for i, s in enumerate(sites)]



def site_stats(sites: list[Site], slots: list[SiteSlot]) -> dict:
    return {"sites": len(sites), "site_kinds": dict(Counter(s.kind for s in sites)),
            "groups_per_site": {s.label or s.output: slot.groups for s, slot in zip(sites, slots, strict=True)}}
