"""lowrank: factorize the MLP linear layers into activation-first low-rank pairs (Swift-SVD / whitened form).

Ranks come from a global budget (`params`: fraction of MLP parameters kept) allocated by each layer's
output-error spectrum, or from a fidelity floor (`floor`, bisection on that budget). In the default
speed mode a layer is factorized only when its rank is well below the break-even, where the smaller
shapes really run faster on ONNX Runtime CPU (latency tracks FLOPs there); the rest stay dense.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import onnx_graphsurgeon as gs

from edgec.passes.base import PassContext, PassOptionError, PassResult, build_options
from edgec.passes.mlp.discovery import editable_blocks, layer_name
from edgec.passes.mlp.edit import Factorized, factorize_linear
from edgec.passes.mlp.linear import Linear
from edgec.passes.plans import lowrank as plan
from edgec.passes.plans.budget_search import describe, smallest_budget
from edgec.passes.training.refine import refine_block, torch_activation


@dataclass(frozen=True)
class LowRankOptions:
    params: float = 0.5          # fraction of the MLP layers' parameters kept
    method: plan.Method = "whitened"     # whitened (data-aware, Swift-SVD) | svd (plain truncated SVD)
    floor: float = 0.0           # > 0: search the smallest `params` that keeps this calibration score
    max_rank_ratio: float = 0.6  # speed mode: factorize only if rank ≤ this × break-even rank; 1 = size mode
    rank: int = 0                # > 0: this rank for every layer (clipped to its size), no budget, no cap
    refine_steps: int = 0        # > 0: Adam steps of teacher-forced block-output reconstruction (needs torch)
    refine_rows: int = 8192      # calibration rows used for the refinement

    def __post_init__(self):
        if not 0 < self.params <= 1:
            raise PassOptionError(f"pass 'lowrank': params must lie in (0, 1], not {self.params}")
        if not 0 < self.max_rank_ratio <= 1:
            raise PassOptionError(f"pass 'lowrank': max_rank_ratio must lie in (0, 1], not {self.max_rank_ratio}")


class LowRankPass:
    name = "lowrank"
    Options = LowRankOptions
    needs = frozenset({"calibration", "fidelity"})
    lossless = False

    def run(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        opts = build_options(LowRankOptions, ctx.options, self.name)
        blocks = editable_blocks(graph)
        if not blocks:
            return PassResult(False, {"layers": 0}, ["no MLP block to factorize"])
        layers = [lin for b in blocks for lin in (b.fc1, b.fc2)]
        spectra, means = self._spectra(graph, blocks, opts, ctx)
        notes: list[str] = []
        params, trace = opts.params, None
        if opts.floor:
            params, trace = self._search(graph, spectra, means, opts, ctx)
            notes.append(describe("params", opts.floor, trace, params))
        if opts.rank > 0:
            ranks = [min(opts.rank, s.max_rank) for s in spectra]
        else:
            ranks = plan.allocate(spectra, params, ctx.rank_multiple)
        targets = _block_io(graph, blocks, opts, ctx) if opts.refine_steps > 0 else None
        stats, done = _factorize(graph, layers, spectra, means, ranks, opts, notes)
        stats["params_budget"] = params
        if trace is not None:
            stats["search"] = {"knob": "params", "floor": opts.floor, "points": [list(p) for p in trace]}
        if targets is not None:
            stats["refined"] = _refine(graph, blocks, done, targets, opts, ctx, notes)
        return PassResult(stats["factorized"] > 0, stats, notes)

    def _spectra(self, graph, blocks, opts: LowRankOptions, ctx: PassContext):
        names = [t for b in blocks for t in (b.fc1.x.name, b.act.output.name)]
        grams = ctx.need_calibration("lowrank method=whitened").grams(graph, sorted(set(names))) if opts.method == "whitened" else {}
        spectra, means = [], []
        for b in blocks:
            for lin, tensor in ((b.fc1, b.fc1.x.name), (b.fc2, b.act.output.name)):
                g = grams.get(tensor)
                spectra.append(plan.spectrum(lin.weight, None if g is None else g.matrix,
                                             0 if g is None else g.rows, opts.method))
                means.append(None if g is None else plan.centered_covariance(g.matrix, g.rows)[1])
        return spectra, means

    def _search(self, graph, spectra, means, opts: LowRankOptions, ctx: PassContext):
        probe = ctx.need_fidelity("lowrank floor")

        def score_at(params: float) -> float:
            trial = graph.copy()
            layers = [lin for b in editable_blocks(trial) for lin in (b.fc1, b.fc2)]
            ranks = plan.allocate(spectra, params, ctx.rank_multiple)
            _factorize(trial, layers, spectra, means, ranks, opts, [])
            return probe(trial)

        return smallest_budget(score_at, opts.floor)


def _factorize(graph: gs.Graph, layers: list[Linear], spectra, means, ranks: list[int], opts: LowRankOptions,
               notes: list[str]) -> tuple[dict, dict[int, Factorized]]:
    stats: dict[str, Any] = {"factorized": 0, "dense": 0, "layers": []}
    done: dict[int, Factorized] = {}
    for lin, spec, mean, rank in zip(layers, spectra, means, ranks, strict=True):
        label = layer_name(lin)
        cap = spec.max_rank if opts.rank > 0 else int(opts.max_rank_ratio * plan.break_even(spec))
        entry = {"layer": label, "shape": f"{spec.in_features}x{spec.out_features}", "max_rank": spec.max_rank,
                 "effective_rank": plan.effective_rank(spec), "spectrum": plan.captured_curve(spec)}
        if rank == 0 or rank > cap:
            why = "budget gives it no rank" if rank == 0 else f"rank {rank} > {cap} saves too little time"
            notes.append(f"{label}: kept dense ({why})")
            stats["dense"] += 1
            stats["layers"].append({**entry, "rank": None, "why": why})
            continue
        a, b, bias = plan.factors(lin.weight, lin.bias, spec, rank, mean)
        done[id(lin)] = factorize_linear(graph, lin, a, b, bias)
        stats["factorized"] += 1
        stats["layers"].append({**entry, "rank": rank, "rel_error": round(spec.rel_error(rank), 5)})
    return stats, done


def _block_io(graph, blocks, opts: LowRankOptions, ctx: PassContext) -> dict:
    """Each block's input and output rows from the *original* graph (the teacher), captured once."""
    names = sorted({t for b in blocks for t in (b.fc1.x.name, b.fc2.y.name)})
    rows = ctx.need_calibration("lowrank refinement").activations(graph, names, opts.refine_rows)
    return {b.index: (rows[b.fc1.x.name], rows[b.fc2.y.name]) for b in blocks}


def _refine(graph: gs.Graph, blocks, done: dict[int, Factorized], targets: dict, opts: LowRankOptions,
            ctx: PassContext, notes: list[str]) -> list:
    """Train the factors of every block whose two layers were both factorized."""
    try:
        import torch  # noqa: F401
    except ImportError:
        notes.append("refinement skipped: torch is not installed")
        return []
    results = []
    for block in blocks:
        fc1, fc2 = done.get(id(block.fc1)), done.get(id(block.fc2))
        if fc1 is None or fc2 is None or torch_activation(block.act.pattern) is None:
            continue
        x, y = targets[block.index]
        trained, before, after = refine_block(x, y, fc1.read() + fc2.read(), block.act.pattern,
                                              opts.refine_steps, seed=ctx.seed)
        fc1.write(graph, *trained[:3])   # type: ignore[arg-type]
        fc2.write(graph, *trained[3:])   # type: ignore[arg-type]
        results.append({"block": block.index, "rel_error_before": round(before, 5), "rel_error_after": round(after, 5)})
    if not results:
        notes.append("refinement found no block with both layers factorized")
    return results
