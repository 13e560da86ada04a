"""Block-wise reconstruction of shared-basis factors with torch (the FiPS objective, MLP blocks).

Every compressed MLP block gets the original block's input rows (captured once from the calibration set)
and is trained to match the original block's output: the loss is the sum over blocks of the MSE divided
by the target's mean square (so wide-output blocks do not drown the rest). AdamW with a cosine schedule;
optional gradual magnitude pruning (cubic schedule, global over every factor, every `prune_every` steps
until 75 % of training) to a target sparsity of the V factors. U is trained and stays shared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from edgec.passes.plans.share import BlockFactors
from edgec.passes.training.loop import Schedule, adamw, run_loop
from edgec.passes.training.refine import torch_activation


@dataclass
class TrainGroup:
    basis: np.ndarray                       # [d, r]
    factors: list[BlockFactors]
    patterns: list[str]                     # each block's activation
    data: list[tuple[np.ndarray, np.ndarray]]   # each block's (input rows, output rows)


@dataclass
class TrainSettings:
    steps: int
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch: int = 512
    sparsity: float = 0.0      # target fraction of zeros in the V factors (GMP), 0 = dense
    prune_every: int = 25
    seed: int = 0


def train(groups: list[TrainGroup], settings: TrainSettings,
          progress: Callable[[int], None] = lambda step: None) -> tuple[list[TrainGroup], float, float]:
    """Returns the trained groups and the held-out relative error (√ of the mean loss) before and after."""
    import torch

    torch.manual_seed(settings.seed)
    model = _Model(groups)
    fit, val = _split(groups, torch)
    before = model.error(val)
    generator = torch.Generator().manual_seed(settings.seed)
    prune_until = int(0.75 * settings.steps)

    def gradual_pruning(step: int) -> None:
        if settings.sparsity > 0 and step % settings.prune_every == 0 and step <= prune_until:
            model.prune(settings.sparsity * (1 - (1 - step / max(prune_until, 1)) ** 3))

    optimizer = adamw([{"params": model.parameters(), "peak": settings.lr}], settings.weight_decay)
    run_loop(optimizer, lambda step: model.loss(fit, settings.batch, generator), steps=settings.steps,
             schedule=Schedule(floor=0.01), before_step=gradual_pruning, after_step=lambda step: model.apply_masks(),
             progress=lambda steps, elapsed: progress(steps))
    if settings.sparsity > 0:
        model.prune(settings.sparsity)
    return model.export(groups), before, model.error(val)


def _split(groups: list[TrainGroup], torch):
    """The last tenth of every block's rows is held out for the before/after figures."""
    fit, val = [], []
    for g in groups:
        for x, y in g.data:
            cut = max(1, len(x) * 9 // 10) if len(x) > 1 else len(x)
            xt, yt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)
            fit.append((xt[:cut], yt[:cut]))
            val.append((xt[cut:] if cut < len(x) else xt, yt[cut:] if cut < len(x) else yt))
    return fit, val


class _Model:
    def __init__(self, groups: list[TrainGroup]):
        import torch

        self.torch = torch
        p = lambda a: torch.nn.Parameter(torch.as_tensor(np.asarray(a), dtype=torch.float32).clone())  # noqa: E731
        self.bases, self.blocks = [], []      # blocks: (group index, v1, c1, v2t, c2, activation)
        for gi, g in enumerate(groups):
            self.bases.append(p(g.basis))
            for f, pattern in zip(g.factors, g.patterns, strict=True):
                self.blocks.append((gi, p(f.v1), p(f.c1), p(f.v2t), p(f.c2), torch_activation(pattern)))
        self.masks: list[tuple] = [(None, None) for _ in self.blocks]

    def parameters(self):
        return self.bases + [t for b in self.blocks for t in b[1:5]]

    def forward(self, k: int, x):
        gi, v1, c1, v2t, c2, act = self.blocks[k]
        u = self.bases[gi]
        return act(x @ u @ v1 + c1) @ v2t @ u.T + c2

    def loss(self, fit, batch: int, generator):
        total = 0.0
        for k, (x, y) in enumerate(fit):
            idx = self.torch.randint(0, len(x), (min(batch, len(x)),), generator=generator)
            target = y[idx]
            total = total + self.torch.mean((self.forward(k, x[idx]) - target) ** 2) / (target.pow(2).mean() + 1e-12)
        return total

    def error(self, val) -> float:
        with self.torch.no_grad():
            errs = [float(((self.forward(k, x) - y) ** 2).sum() / (y.pow(2).sum() + 1e-12)) for k, (x, y) in
                    enumerate(val)]
        return float(np.sqrt(np.mean(errs)))

    def prune(self, sparsity: float) -> None:
        """Global magnitude pruning over every V factor to `sparsity` (masks only ever grow sparser)."""
        if sparsity <= 0:
            return
        with self.torch.no_grad():
            weights = [t for b in self.blocks for t in (b[1], b[3])]
            pooled = self.torch.cat([w.abs().flatten() for w in weights])
            k = int(round(sparsity * pooled.numel()))
            if k == 0:
                return
            threshold = self.torch.kthvalue(pooled, k).values
            masks = [w.abs() > threshold for w in weights]
            self.masks = [(masks[2 * i], masks[2 * i + 1]) for i in range(len(self.blocks))]
        self.apply_masks()

    def apply_masks(self) -> None:
        with self.torch.no_grad():
            for (m1, m2), b in zip(self.masks, self.blocks, strict=True):
                if m1 is not None:
                    b[1].mul_(m1)
                    b[3].mul_(m2)

    def export(self, groups: list[TrainGroup]) -> list[TrainGroup]:
        out, k = [], 0
        for gi, g in enumerate(groups):
            factors = []
            for _ in g.factors:
                _, v1, c1, v2t, c2, _ = self.blocks[k]
                factors.append(BlockFactors(*(t.detach().double().numpy() for t in (v1, c1, v2t, c2))))
                k += 1
            out.append(TrainGroup(self.bases[gi].detach().double().numpy(), factors, g.patterns, g.data))
        return out
