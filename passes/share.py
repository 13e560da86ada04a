"""share: one basis shared by every MLP layer of a group of blocks (FiPS / Basis Sharing).

Consecutive blocks of the same width are grouped; each group's fc1 and fc2 weights are factorized over a
single shared U (closed-form whitened joint SVD, least-squares factors), optionally with sparse factors
and torch block-wise reconstruction. `mode=speed` executes the factors (fewer FLOPs: dense V, small rank);
`mode=storage` keeps the runtime graph's speed and shrinks the file (sparse V, rank may exceed d).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_graphsurgeon as gs

from edgec.passes.base import PassContext, PassOptionError, PassResult, build_options
from edgec.passes.mlp.discovery import MLPBlock, editable_blocks, layer_name
from edgec.passes.plans import share as plan
from edgec.passes.share_rewrite import Mode, SharedBasis, write_block
from edgec.passes.training.refine import TORCH_PATTERNS

COO_BYTES = 12.0        # an ONNX COO non-zero: a float32 value and an int64 linear index
MIN_STORED_SPARSITY = 0.7   # below this the compiler stores V dense (storage.MIN_ZEROS)


@dataclass(frozen=True)
class ShareOptions:
    params: float = 0.5          # the group's MLP weights kept, as a fraction of their dense bytes
    group: int = 2               # blocks per group (consecutive, same width)
    mode: Mode = "speed"          # speed (execute the factors) | storage (sparse V, smaller file, same speed)
    sparsity: float = -1.0       # zeros in the V factors; -1 = 0 for speed, 0.75 for storage
    rank: int = 0                # > 0: this rank for every group (no budget)
    max_cost_ratio: float = 0.6  # speed mode: keep a group dense if r·(d+h) > this × d·h (too little saved)
    train_steps: int = 0         # > 0: block-wise reconstruction with torch (AdamW, cosine, GMP of V)
    train_rows: int = 8192       # calibration rows per block for training
    lr: float = 1e-3

    def __post_init__(self):
        _validated(self)


class SharePass:
    name = "share"
    Options = ShareOptions
    needs = frozenset({"calibration"})
    lossless = False

    def run(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        opts = build_options(ShareOptions, ctx.options, self.name)
        sparsity = opts.sparsity if opts.sparsity >= 0 else (0.75 if opts.mode == "storage" else 0.0)
        square = [b for b in editable_blocks(graph) if b.d_in == b.d_out]
        blocks = [b for b in square if b.act.pattern in TORCH_PATTERNS]
        skipped = [f"block {b.index} ({b.act.pattern}): an activation the torch reconstruction lacks, left alone"
                   for b in square if b.act.pattern not in TORCH_PATTERNS]
        if not blocks:
            return PassResult(False, {"groups": 0},
                              skipped or ["no MLP block with equal input and output width to share"])
        weights = _block_weights(graph, blocks, ctx)
        notes = skipped + [f"mode {opts.mode}: " + ("factors executed (fewer FLOPs)" if opts.mode == "speed" else
                                                    "weights rebuilt from U and sparse V at load (smaller file, "
                                                    "same speed)")]
        solved, spectra = _best_grouping(weights, blocks, opts, sparsity, ctx, notes)
        stats = []
        if not opts.train_steps and sparsity > 0:
            target = sparsity if opts.rank else _closed_form_sparsity(solved, opts.params, sparsity)
            solved = _sparsify_closed_form(solved, weights, target)
        train_stats = _train(solved, blocks, graph, opts, sparsity, ctx, notes) if opts.train_steps else None
        if train_stats is not None:
            solved = train_stats.pop("groups")
        for members, basis, factors, rank in solved:
            label = layer_name(blocks[members[0]].fc1)
            shared = SharedBasis(graph, label, basis, blocks[members[0]].fc1.weight.dtype)
            for i, f in zip(members, factors, strict=True):
                write_block(graph, blocks[i].fc1, blocks[i].fc2, shared, f, opts.mode)
            stats.append({**_group_stats(label, members, blocks, basis, factors, rank),
                          "spectrum": plan.captured_curve(spectra[members[0]])})
        result = {"mode": opts.mode, "groups": len(stats), "blocks_shared": sum(len(s["blocks"]) for s in stats),
                  "dense_bytes": sum(s["dense_bytes"] for s in stats),
                  "stored_bytes": sum(s["stored_bytes"] for s in stats), "per_group": stats}
        if train_stats:
            result["training"] = train_stats
        return PassResult(bool(stats), result, notes)


def _validated(opts: ShareOptions) -> ShareOptions:
    if not 0 < opts.params <= 1:
        raise PassOptionError(f"pass 'share': params must lie in (0, 1], not {opts.params}")
    if opts.group < 1:
        raise PassOptionError(f"pass 'share': group must be at least 1, not {opts.group}")
    if opts.sparsity >= 1:
        raise PassOptionError(f"pass 'share': sparsity must be below 1, not {opts.sparsity}")
    if opts.mode == "speed" and opts.sparsity > 0:
        raise PassOptionError("pass 'share': sparse factors save no time on ONNX Runtime CPU; use mode=storage for them")
    return opts


def _block_weights(graph: gs.Graph, blocks: list[MLPBlock], ctx: PassContext) -> list[plan.BlockWeights]:
    names = sorted({t for b in blocks for t in (b.fc1.x.name, b.act.output.name)})
    grams = ctx.need_calibration("share").grams(graph, names)
    return [plan.BlockWeights(b.fc1.weight.astype(np.float64), b.fc1.bias, b.fc2.weight.astype(np.float64),
                              b.fc2.bias, grams[b.fc1.x.name].matrix, grams[b.act.output.name].matrix)
            for b in blocks]


def _best_grouping(weights, blocks, opts: ShareOptions, sparsity: float, ctx: PassContext, notes: list[str]):
    """Groups of `opts.group` blocks, or one block per basis where that leaves a smaller worst layer error at
    the same budget: blocks whose layers use different subspaces cannot share a basis of the budget's rank."""
    best: tuple | None = None
    # compared only where the closed form is the result (speed mode, dense factors, no training): sparse factors
    # and training spend the budget differently from what the closed-form errors measure
    sizes = [opts.group, 1] if opts.mode == "speed" and not opts.train_steps and sparsity == 0 else [opts.group]
    for size in dict.fromkeys(sizes):
        tried_notes: list[str] = []
        solved, spectra, worst = [], {}, 0.0
        for members in plan.groups([(b.d_in, b.hidden) for b in blocks], size):
            group = _solve_group([weights[i] for i in members], [blocks[i] for i in members], opts, sparsity,
                                 ctx, tried_notes)
            if group is not None:
                *group, spectra[members[0]], error = group
                solved.append((members, *group))
                worst = max(worst, error)
        if best is None or (solved and worst < best[2] * 0.9):       # sharing wins ties: fewer bytes moved
            best = (solved, spectra, worst, size, tried_notes)
    assert best is not None                  # `sizes` is never empty
    solved, spectra, worst, size, tried_notes = best
    notes += tried_notes
    if size != opts.group:
        notes.append(f"one basis per block: groups of {opts.group} left a worse worst-layer error at this budget")
    return solved, spectra


def _solve_group(weights, blocks, opts: ShareOptions, sparsity: float, ctx: PassContext, notes: list[str]):
    d, h, n = blocks[0].d_in, blocks[0].hidden, len(blocks)
    label = layer_name(blocks[0].fc1)
    stored_sparse = opts.mode == "storage" and sparsity >= MIN_STORED_SPARSITY
    # budgets are in stored bytes: factors stored dense cost every entry, zero or not
    rank = opts.rank or plan.rank_for_budget(d, h, n, opts.params, sparsity if stored_sparse else 0.0,
                                             COO_BYTES if stored_sparse else 4.0)
    if opts.mode == "speed" and not opts.rank:
        rank = _round(rank, ctx.rank_multiple, int(opts.max_cost_ratio * d * h // (d + h)))
        if rank * (d + h) > opts.max_cost_ratio * d * h:
            notes.append(f"{label}: group of {n} kept dense (rank {rank} would save too little time)")
            return None
    init_rank = min(rank, d)
    if rank > init_rank and not opts.train_steps:
        notes.append(f"{label}: rank {rank} > d = {d} helps only with training; closed form uses {d} and "
                     f"spends the rest of the budget on non-zeros")
        rank = init_rank
    basis, factors, sigma, weighting, worst = plan.best_shared_basis(weights, init_rank)
    notes.append(f"{label}: {n} block(s), rank {init_rank}, slices at {weighting} (worst layer error {worst:.3f} "
                 "on calibration)")
    return (*plan.padded(basis, factors, rank), rank, sigma, worst)


def _round(rank: int, multiple: int, cap: int) -> int:
    """The nearest multiple of the target's tile where it stays within `cap`, else the rank as the budget gives
    it: flooring 30 to 16 would throw away half the budget (and most of a rank-32 group's weights)."""
    nearest = max(multiple, int(round(rank / multiple)) * multiple) if multiple > 1 else rank
    return nearest if nearest <= cap else min(rank, cap) if rank <= cap else nearest


def _sparsify_closed_form(solved, weights, sparsity: float):
    """Global Wanda-style pruning of every factor of every group, then a least-squares re-solve."""
    scores = {}
    for members, basis, factors, _ in solved:
        for i, f in zip(members, factors, strict=True):
            scores[i] = plan.factor_scores(weights[i], basis, f)
    cut = plan.global_threshold([s for pair in scores.values() for s in pair], sparsity)
    out = []
    for members, basis, factors, rank in solved:
        new = [plan.sparsify(weights[i], basis, f, scores[i][0] > cut, scores[i][1] > cut)
               for i, f in zip(members, factors, strict=True)]
        out.append((members, basis, new, rank))
    return out


def _closed_form_sparsity(solved, params: float, sparsity: float) -> float:
    """The factor sparsity that spends the byte budget: more than `sparsity` asked for when the closed form
    capped the rank at d (the unspent bytes buy non-zeros), never under the 70 % that sparse storage needs."""
    budget = basis_bytes = entries = 0.0
    for members, basis, factors, _ in solved:
        budget += params * 4 * 2 * len(members) * basis.shape[0] * factors[0].v1.shape[1]
        basis_bytes += 4 * basis.size
        entries += sum(f.v1.size + f.v2t.size for f in factors)
    if entries == 0 or sparsity < MIN_STORED_SPARSITY:
        return sparsity
    kept = (budget - basis_bytes) / (COO_BYTES * entries)
    return float(np.clip(1 - kept, MIN_STORED_SPARSITY, 0.999))


def _train(solved, blocks, graph, opts: ShareOptions, sparsity: float, ctx: PassContext, notes: list[str]):
    try:
        from edgec.passes.training import share as share_train
    except ImportError:
        notes.append("reconstruction skipped: torch is not installed")
        return None
    names = sorted({t for b in blocks for t in (b.fc1.x.name, b.fc2.y.name)})
    rows = ctx.need_calibration("share reconstruction").activations(graph, names, opts.train_rows)
    groups = [share_train.TrainGroup(basis, factors, [blocks[i].act.pattern for i in members],
                                     [(rows[blocks[i].fc1.x.name], rows[blocks[i].fc2.y.name]) for i in members])
              for members, basis, factors, _ in solved]
    settings = share_train.TrainSettings(opts.train_steps, lr=opts.lr, sparsity=sparsity, seed=ctx.seed)
    with ctx.progress("share: block-wise reconstruction", opts.train_steps) as advance:
        trained, before, after = share_train.train(groups, settings, advance)
    notes.append(f"block-wise reconstruction, {opts.train_steps} steps: held-out relative block error "
                 f"{before:.4f} → {after:.4f}")
    out = [(members, g.basis, g.factors, rank) for (members, _, _, rank), g in zip(solved, trained, strict=True)]
    return {"groups": out, "steps": opts.train_steps, "rel_error_before": round(before, 5),
            "rel_error_after": round(after, 5)}


def _group_stats(label, members, blocks, basis, factors, rank) -> dict:
    d, h = basis.shape[0], blocks[members[0]].hidden
    nonzeros = sum(int(np.count_nonzero(f.v1) + np.count_nonzero(f.v2t)) for f in factors)
    entries = sum(f.v1.size + f.v2t.size for f in factors)
    sparsity = 1 - nonzeros / entries
    v_bytes = nonzeros * COO_BYTES if sparsity >= MIN_STORED_SPARSITY else entries * 4
    return {"group": label, "blocks": [blocks[i].index for i in members], "rank": rank, "d": d, "hidden": h,
            "factor_sparsity": round(sparsity, 4), "dense_bytes": 4 * 2 * len(members) * d * h,
            "stored_bytes": int(4 * basis.size + v_bytes)}
