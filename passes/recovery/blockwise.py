"""Recovery fallback for graphs the torch view cannot run: block-wise training of the MLP blocks.

Each editable block of the compressed graph gets the original model's input rows of that block (captured
from the teacher on the training stream) and is trained to reproduce the original block output:
act(x W1 + b1) W2 + b2 ≈ y, Adam with a cosine schedule, an equal share of the time budget per block.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from edgec.passes.base import PassContext, PassResult
from edgec.passes.mlp.discovery import editable_blocks
from edgec.passes.mlp.edit import set_linear
from edgec.passes.training.loop import Budget, adamw, run_loop, sampled_rows
from edgec.passes.training.refine import torch_activation

MAX_ROWS = 16384


def train_blocks(graph: gs.Graph, ctx: PassContext, budget: Budget, why: str) -> PassResult:
    notes = [f"{why}; fell back to block-wise training of the MLP blocks"]
    teacher = ctx.need_teacher("block-wise recovery")
    blocks = [b for b in editable_blocks(graph) if torch_activation(b.act.pattern) is not None
              and teacher.has_tensor(b.fc1.x.name) and teacher.has_tensor(b.fc2.y.name)]
    if not blocks:
        return PassResult(False, {"mode": "block-wise", "blocks": []},
                          notes + ["no MLP block the original model can teach"])
    rows = _capture(teacher, sorted({t for b in blocks for t in (b.fc1.x.name, b.fc2.y.name)}))
    per_block = budget.share(len(blocks))
    results = []
    for block in blocks:
        x, y = rows[block.fc1.x.name], rows[block.fc2.y.name]
        if x.shape[1] != block.fc1.weight.shape[0] or y.shape[1] != block.d_out:
            notes.append(f"block {block.index}: its input or output is narrower than the original's (channels "
                         "removed before it), so the original cannot teach it block by block")
            continue
        params, before, after = _train(block, x, y, per_block, ctx.seed)
        if after < before:
            set_linear(graph, block.fc1, params[0], params[1])
            set_linear(graph, block.fc2, params[2], params[3])
        results.append({"block": block.index, "rel_error_before": round(before, 5), "rel_error_after": round(after, 5)})
    changed = any(r["rel_error_after"] < r["rel_error_before"] for r in results)
    return PassResult(changed, {"mode": "block-wise", "blocks": results}, notes)


def _capture(teacher, names: list[str]) -> dict[str, np.ndarray]:
    out: dict[str, list[np.ndarray]] = {n: [] for n in names}
    count = 0
    for feed in teacher.training_feeds():
        for name, value in zip(names, teacher.run(feed, names), strict=True):
            out[name].append(np.asarray(value, np.float32).reshape(-1, np.asarray(value).shape[-1]))
        count += out[names[0]][-1].shape[0]
        if count >= MAX_ROWS:
            break
    return {n: np.concatenate(v)[:MAX_ROWS] for n, v in out.items()}


def _train(block, x: np.ndarray, y: np.ndarray, budget: Budget, seed: int):
    import torch

    torch.manual_seed(seed)
    act = torch_activation(block.act.pattern)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    zeros = lambda n: np.zeros(n, np.float32)  # noqa: E731
    init = [block.fc1.weight, block.fc1.bias if block.fc1.bias is not None else zeros(block.hidden),
            block.fc2.weight, block.fc2.bias if block.fc2.bias is not None else zeros(block.d_out)]
    w1, b1, w2, b2 = params = [torch.nn.Parameter(torch.as_tensor(np.asarray(p, np.float32)).clone()) for p in init]

    def error() -> float:
        with torch.no_grad():
            return float(torch.linalg.norm(act(xt @ w1 + b1) @ w2 + b2 - yt) / torch.linalg.norm(yt))

    before = error()
    generator = torch.Generator().manual_seed(seed)

    def step_loss(step: int):
        x, y = sampled_rows(xt, yt, 1024, generator)
        return torch.mean((act(x @ w1 + b1) @ w2 + b2 - y) ** 2)

    run_loop(adamw([{"params": params, "peak": 1e-4}]), step_loss, **budget.loop_budget())
    return [p.detach().numpy() for p in params], before, error()
