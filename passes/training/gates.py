"""Adaptive dropout (after Adaptive Dropout for Pruning Conformers): learned retention of MLP units and heads.

Every gated tensor (an MLP's hidden activation, an attention block's joined context) is multiplied by a mask
with one entry per unit (a head's `head_dim` features share one). The mask is a Gumbel-sigmoid sample
σ((β + logit u) / τ) of the unit's retention logit β, so the distillation loss says how much each unit is
worth; a regulariser α · mean (β − c(t))² pulls every β toward a target c(t) that falls over the budget, so
units the outputs do not need drift out first. After `soft` of the budget the units with the highest β in
each pool (all MLP units together, all heads together) are chosen, the masks become exactly those units
(1 kept, 0 removed) and the weights train on for the rest of the budget as the pruned network they will be.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from edgec.passes.base import TeacherSource
from edgec.passes.batching import training_batches
from edgec.passes.training.distill import cycled, distill_loss
from edgec.passes.training.loop import Budget, Schedule, adamw, run_loop
from edgec.passes.training.view import TorchView, to_torch_feed


@dataclass(frozen=True)
class Gate:
    tensor: str        # name of the gated tensor (its last axis holds units × group features)
    units: int
    group: int = 1     # features per unit (head_dim for heads)
    pool: str = "mlp"  # units compete for the budget within their pool
    block: int = 0     # the block's index in its pool's discovery order
    axis: int = -1     # the axis of the units (1: a convolution's channels)
    also: tuple[str, ...] = ()    # more tensors that carry the same units (a channel group's other consumers' inputs)

    @property
    def tensors(self) -> tuple[str, ...]:
        return (self.tensor, *self.also)


@dataclass(frozen=True)
class GateSettings:
    minutes: float
    keep: dict[str, float]             # pool → fraction of its units kept
    steps: int = 0                     # > 0: a budget of optimizer steps instead of minutes (reproducible)
    min_keep: float = 0.1              # never fewer than this fraction of a block's units (at least one)
    lr: float = 1e-4                   # weights
    gate_lr: float = 0.05              # retention logits
    temperature: float = 0.5
    alpha: float = 0.01
    start: float = 3.0                 # β and the target start here (σ(3) ≈ 0.95) …
    end: float = -3.0                  # … and the target falls to here by the end of the soft phase
    soft: float = 0.7                  # fraction of the budget with learned masks; the rest trains hard masks
    batch: int = 8
    seed: int = 0
    pool_min_keep: dict[str, float] = field(default_factory=dict)   # pool → its own min_keep
    multiple: dict[str, int] = field(default_factory=dict)          # pool → unit counts rounded up to this


@dataclass
class GateResult:
    kept: dict[str, np.ndarray] = field(default_factory=dict)     # tensor → sorted kept unit indices
    order: dict[str, np.ndarray] = field(default_factory=dict)    # tensor → units by learned retention, best first
    steps: int = 0
    seconds: float = 0.0
    retention: dict[str, list[float]] = field(default_factory=dict)   # tensor → σ(β) summary [min, median, max]


def train_gates(view: TorchView, teacher: TeacherSource, outputs: list[str], gates: list[Gate],
                settings: GateSettings) -> GateResult:
    """Train weights and gates together (the view's weights are updated in place); returns the chosen units."""
    torch.manual_seed(settings.seed)
    logits = {g.tensor: torch.nn.Parameter(torch.full((g.units,), settings.start, device=view.device)) for g in gates}
    hard: dict[str, torch.Tensor] = {}
    samples: dict[str, torch.Tensor] = {}      # this step's mask of each gate, shared by all the tensors it gates
    target = {"value": settings.start}
    for g in gates:
        for name in g.tensors:
            view.hooks[name] = _masking(g, logits[g.tensor], hard, samples, settings.temperature)
    optimizer = adamw([{"params": [p for _, p in view.named_weights()], "peak": settings.lr},
                       {"params": list(logits.values()), "peak": settings.gate_lr}], fused=True)
    batches = training_batches(cycled(teacher), settings.batch)
    budget, start = Budget(settings.steps, settings.minutes * 60), time.perf_counter()
    result = GateResult()

    def step_loss(step: int) -> torch.Tensor:
        feed = next(batches)
        wanted = dict(zip(outputs, teacher.run(feed, outputs), strict=True))
        loss = distill_loss(view(to_torch_feed(feed)), wanted, outputs, [], 0.0, teacher.token_mask(feed))
        if hard:
            return loss
        pull = torch.stack([torch.mean((b - target["value"]) ** 2) for b in logits.values()]).mean()
        return loss + settings.alpha * pull

    def before(step: int) -> None:
        samples.clear()
        fraction = budget.spent(step, time.perf_counter() - start)
        target["value"] = settings.start + (settings.end - settings.start) * min(fraction / settings.soft, 1.0)
        if not hard and fraction >= settings.soft:
            _harden(gates, logits, settings, hard, result)

    try:
        loop = run_loop(optimizer, step_loss, **budget.loop_budget(), schedule=Schedule(0.05), before_step=before)
    finally:
        for g in gates:
            for name in g.tensors:
                view.hooks.pop(name, None)
    if not hard:                       # a budget too short to reach the hard phase still chooses
        _harden(gates, logits, settings, hard, result)
    for g in gates:
        r = torch.sigmoid(logits[g.tensor].detach()).cpu().numpy()
        result.retention[g.tensor] = [round(float(np.min(r)), 3), round(float(np.median(r)), 3),
                                      round(float(np.max(r)), 3)]
    result.steps, result.seconds = loop.steps, loop.seconds
    return result


def _masking(gate: Gate, beta: torch.nn.Parameter, hard: dict[str, torch.Tensor], samples: dict[str, torch.Tensor],
             temperature: float):
    def apply(value: torch.Tensor) -> torch.Tensor:
        if gate.tensor in hard:
            mask = hard[gate.tensor]
        elif gate.tensor in samples:
            mask = samples[gate.tensor]
        else:
            u = torch.rand_like(beta).clamp(1e-6, 1 - 1e-6)
            mask = samples[gate.tensor] = torch.sigmoid((beta + torch.log(u) - torch.log1p(-u)) / temperature)
        return value * _along(gate, mask.repeat_interleave(gate.group), value)
    return apply


def _along(gate: Gate, mask: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """The mask shaped to multiply `value` along the gate's axis."""
    mask = mask.to(value.device, value.dtype)
    if gate.axis in (-1, value.dim() - 1):
        return mask
    shape = [1] * value.dim()
    shape[gate.axis] = -1
    return mask.reshape(shape)


def fixed_mask(gate: Gate, kept: np.ndarray):
    """A hook that keeps exactly these units of the gated tensor (1) and zeroes the rest."""
    mask = torch.zeros(gate.units)
    mask[torch.from_numpy(np.asarray(kept))] = 1.0
    features = mask.repeat_interleave(gate.group)
    return lambda value: value * _along(gate, features, value)


def _harden(gates: list[Gate], logits: dict, settings: GateSettings, hard: dict, result: GateResult) -> None:
    """Choose each pool's units by learned retention; from now on the masks are exactly that choice."""
    for pool in sorted({g.pool for g in gates}):
        members = [g for g in gates if g.pool == pool]
        betas = {g.tensor: logits[g.tensor].detach().cpu().numpy().copy() for g in members}
        counts = allocate([betas[g.tensor] for g in members], settings.keep[pool],
                          settings.pool_min_keep.get(pool, settings.min_keep), settings.multiple.get(pool, 1))
        for g, count in zip(members, counts, strict=True):
            order = np.argsort(-betas[g.tensor], kind="stable")
            result.order[g.tensor] = order
            result.kept[g.tensor] = np.sort(order[:count])
            mask = torch.zeros(g.units)
            mask[torch.from_numpy(result.kept[g.tensor])] = 1.0
            hard[g.tensor] = mask.to(logits[g.tensor].device)


def allocate(betas: list[np.ndarray], keep: float, min_keep: float, multiple: int = 1) -> list[int]:
    """Units per block: the `keep` fraction of all units with the highest logits, at least `min_keep` of
    each block (and one); with `multiple` > 1 each count is then rounded up to a multiple of it (at most the
    block's units: convolutions run channels in blocks of 8)."""
    floors = [max(1, int(np.ceil(min_keep * len(b)))) for b in betas]
    total = max(int(round(keep * sum(len(b) for b in betas))), sum(floors))
    counts = list(floors)
    ranked = sorted(((-float(v), i, j) for i, b in enumerate(betas) for j, v in enumerate(np.sort(b)[::-1])
                     if j >= floors[i]))
    for _, i, _ in ranked[:total - sum(floors)]:
        counts[i] += 1
    if multiple > 1:
        counts = [min(len(b), -(-c // multiple) * multiple) for c, b in zip(counts, betas, strict=True)]
    return counts
