"""Block-wise training of the MLP blocks from the original's cached block inputs and outputs (teacher forcing).

Each editable block of the compressed graph gets the original model's input rows of that block (captured
from the teacher on the training stream, real tokens only) and is trained to reproduce the original block
output: act(x W1 + b1) W2 + b2 ≈ y, AdamW with a cosine schedule, an equal share of the budget per block,
the best weights on held-out rows kept. A step costs one MLP on 1024 rows instead of the whole model, so a
CPU-minute sees far more samples than end-to-end distillation. Two uses: the fallback for graphs the torch
view cannot run, and (`recover.blockwise`) the first phase of a recovery whose rest trains end to end.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from edgec.passes.base import PassContext, PassResult
from edgec.passes.mlp.discovery import editable_blocks
from edgec.passes.mlp.edit import set_linear
from edgec.passes.training.loop import BestWeights, Budget, adamw, run_loop, sampled_rows
from edgec.passes.training.refine import torch_activation

MAX_ROWS = 32768        # rows (tokens) captured per tensor: 48 MB at d = 384
HELD_OUT = 0.1          # the fraction of rows that only scores
ROWS_PER_STEP = 1024
LR = 3e-4
SPARSE = 0.3            # a weight with at least this share of exact zeros keeps them (as end-to-end recovery does)


def train_blocks(graph: gs.Graph, ctx: PassContext, budget: Budget, why: str) -> PassResult:
    """The fallback: only the MLP blocks learn, each from the original's rows."""
    result = fit_blocks(graph, ctx, budget)
    result.notes.insert(0, f"{why}; fell back to block-wise training of the MLP blocks")
    return result


def fit_blocks(graph: gs.Graph, ctx: PassContext, budget: Budget, blocks: list | None = None) -> PassResult:
    """Train `blocks` (default: every MLP block the original can teach, `teachable_blocks`) on their cached rows,
    those whose input and output widths are the original's; a block's weights change only where its held-out
    error fell."""
    teacher = ctx.need_teacher("block-wise recovery")
    blocks = teachable_blocks(graph, teacher) if blocks is None else blocks
    if not blocks:
        return PassResult(False, {"mode": "block-wise", "blocks": []}, ["no MLP block the original model can teach"])
    rows = _capture(teacher, sorted({t for b in blocks for t in (b.fc1.x.name, b.fc2.y.name)}))
    per_block, notes, results = budget.share(len(blocks)), [], []
    for block in blocks:
        x, y = rows[block.fc1.x.name], rows[block.fc2.y.name]
        if x.shape[1] != block.fc1.weight.shape[0] or y.shape[1] != block.d_out:
            notes.append(f"block {block.index}: its input or output is narrower than the original's (channels "
                         "removed before it), so the original cannot teach it block by block")
            continue
        params, before, after, steps = _train(block, x, y, per_block, ctx.seed, ctx.train_device)
        if after < before:
            set_linear(graph, block.fc1, params[0], params[1])
            set_linear(graph, block.fc2, params[2], params[3])
        results.append({"block": block.index, "rel_error_before": round(before, 5), "rel_error_after": round(after, 5),
                        "steps": steps})
    improved = any(r["rel_error_after"] < r["rel_error_before"] for r in results)
    rows_used = len(next(iter(rows.values())))
    notes.append(f"block-wise: {len(results)} MLP blocks on {rows_used} rows of the original's activations, held-out "
                 "relative error " + ", ".join(f"{r['rel_error_before']:.3f} → {r['rel_error_after']:.3f}"
                                               for r in results))
    return PassResult(improved, {"mode": "block-wise", "rows": rows_used, "blocks": results}, notes)


def teachable_blocks(graph: gs.Graph, teacher, changed: frozenset[str] | None = None) -> list:
    """The MLP blocks whose input and output the original model has (by name) and whose activation torch runs;
    with `changed` (initializer names compression rewrote), only those whose fc1 or fc2 weight is among them."""
    return [b for b in editable_blocks(graph) if torch_activation(b.act.pattern) is not None
            and teacher.has_tensor(b.fc1.x.name) and teacher.has_tensor(b.fc2.y.name)
            and (changed is None or {b.fc1.weight_source.name, b.fc2.weight_source.name} & changed)]


def _capture(teacher, names: list[str]) -> dict[str, np.ndarray]:
    """Rows of the tensors `names` over the training stream, padding tokens left out, until MAX_ROWS."""
    out: dict[str, list[np.ndarray]] = {n: [] for n in names}
    count = 0
    for feed in teacher.training_feeds():
        mask = teacher.token_mask(feed)
        for name, value in zip(names, teacher.run(feed, names), strict=True):
            value = np.asarray(value, np.float32)
            if mask is not None and value.ndim >= 3 and value.shape[:2] == mask.shape:
                value = value[mask.astype(bool)]
            out[name].append(value.reshape(-1, value.shape[-1]))
        count += out[names[0]][-1].shape[0]
        if count >= MAX_ROWS:
            break
    return {n: np.concatenate(v)[:MAX_ROWS] for n, v in out.items()}


def _train(block, x: np.ndarray, y: np.ndarray, budget: Budget, seed: int, device: str = "cpu"):
    import torch

    torch.manual_seed(seed)
    act = torch_activation(block.act.pattern)
    order = np.random.default_rng(seed).permutation(len(x))
    held = order[:max(1, int(len(x) * HELD_OUT))] if len(x) > 1 else order
    fit = order[len(held):] if len(x) > len(held) else order
    xt, yt, xh, yh = (torch.from_numpy(a).to(device) for a in (x[fit], y[fit], x[held], y[held]))
    zeros = lambda n: np.zeros(n, np.float32)  # noqa: E731
    init = [block.fc1.weight, block.fc1.bias if block.fc1.bias is not None else zeros(block.hidden),
            block.fc2.weight, block.fc2.bias if block.fc2.bias is not None else zeros(block.d_out)]
    w1, b1, w2, b2 = params = [torch.nn.Parameter(torch.as_tensor(np.asarray(p, np.float32)).clone().to(device))
                               for p in init]
    masks = [(p, (p.detach() != 0).float()) for p in (w1, w2) if (p.detach() == 0).float().mean() >= SPARSE]

    def error() -> float:
        with torch.no_grad():
            return float(torch.linalg.norm(act(xh @ w1 + b1) @ w2 + b2 - yh) / torch.linalg.norm(yh))

    before = error()
    best = BestWeights({str(i): p for i, p in enumerate(params)}, -before)
    generator = torch.Generator().manual_seed(seed)

    def step_loss(step: int):
        x, y = sampled_rows(xt, yt, ROWS_PER_STEP, generator)
        return torch.mean((act(x @ w1 + b1) @ w2 + b2 - y) ** 2)

    def evaluate(step: int) -> bool:
        best.offer(-error())
        return False

    def keep_zeros(step: int) -> None:         # a sparse pass's zeros stay zeros
        with torch.no_grad():
            for p, mask in masks:
                p.mul_(mask)

    loop = run_loop(adamw([{"params": params, "peak": LR}], fused=True), step_loss, **budget.loop_budget(),
                    after_step=keep_zeros if masks else None, evaluate=evaluate, eval_every=50)
    best.offer(-error())
    best.restore()
    return [p.detach().cpu().numpy() for p in params], before, -best.score, loop.steps
