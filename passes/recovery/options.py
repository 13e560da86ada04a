"""recover's options, and the typed settings each way of recovery takes from them (the only place they are
converted: a default lives once, here or in the setting's own dataclass)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal, get_args

import numpy as np

from edgec.passes.base import PassContext, PassOptionError
from edgec.passes.training.loop import Budget
from edgec.runtime.zo.tuner import ZOSettings

if TYPE_CHECKING:
    from edgec.passes.training.distill import DistillSettings

Match = Literal["layer", "norms", "mlp", "none"]
MATCHES = get_args(Match)
Params = Literal["full", "grasp"]
Method = Literal["backprop", "zo"]
Sites = Literal["linear", "mlp"]


@dataclass(frozen=True)
class RecoverOptions:
    minutes: float = 5.0         # training budget (wall clock)
    steps: int = 0               # > 0: a budget of optimizer steps instead (minutes ignored): the same weights
                                 # on any machine and any executor (compile --train-steps)
    lr: float = 1e-4             # on MiniLM larger rates diverge or are noisier, smaller ones learn slower
                                 # (samples/RESULTS.md#recovery)
    intermediate: float = 3.0    # weight of the intermediate matching next to the output distillation
    batch: int = 8               # feeds stacked per step when their shapes agree (--calib-text feeds are
                                 # already batches of 16 lines of similar length); fewer for large inputs
                                 # (feeds_per_step)
    eval_every: int = 100
    patience: int = 15
    rewritten_lr: float = 5.0    # lr multiplier for the weights compression rewrote (a much larger one
                                 # overshoots on MiniLM: samples/RESULTS.md#recovery)
    train_rest: bool = True      # False: train only the weights compression rewrote
    warmup: float = 0.05         # fraction of the budget for a linear learning-rate warm-up
    match: Match = "layer"         # intermediate matching: layer (the residual stream after each compressed block:
                                 # its Add, or the LayerNormalization that follows) | norms (layer + every
                                 # LayerNormalization output) | mlp (block outputs) | none
    # > 0: the last fraction of the budget trains through ONNX Runtime's dynamic int8 rounding (straight-through),
    # for a model that is quantized next; 7-bit weights where reduce_range says (auto: as quantize's auto)
    int8_tail: float = 0.0
    int8_reduce_range: Literal["auto", "true", "false"] = "auto"
    # > 0: this first fraction of the budget trains each MLP block alone on the original's cached block inputs and
    # outputs (recovery.blockwise: many more samples per CPU-minute), the rest end to end (params=full)
    blockwise: float = 0.3
    # GRASP: train only one scale γ and shift β per group of `groups` channels at each site (every linear
    # layer's output, or the MLP blocks' with sites=mlp; LayerNorm outputs too with norms), folded into the
    # layers' constants afterwards. method=zo (implies params=grasp) tunes them by forward passes through
    # ONNX Runtime only: no torch, any graph ONNX Runtime runs, int8 ones included.
    params: Params = "full"
    method: Method = "backprop"
    groups: int = 8
    sites: Sites = "linear"
    norms: bool = False
    affine_lr: float = 2e-4      # Adam's step on the dimensionless γ − 1 and β / rms(site) (backprop, zo spsa);
                                 # 2e-3 walked away from the best on MiniLM (samples/RESULTS.md#forward-only-recovery)
    # zo's step rule (runtime.zo.steps, runtime.zo.jacobian); auto: gauss-newton where sites round (int8, QDQ), else
    # jacobian — each won where the other found nothing (samples/RESULTS.md#forward-only-recovery)
    zo_optimizer: Literal["auto", "gauss-newton", "spsa", "jacobian"] = "auto"
    queries: int = 8             # zo: random directions per step (two forward passes each)
    epsilon: float = 0.0         # zo: perturbation size; 0: by forward_only.step_rule (1e-3 for the
                                 # jacobian rule on a float graph, else 1e-2: a smaller probe reads rounding noise)

    def __post_init__(self):
        if self.lr <= 0 or self.rewritten_lr <= 0 or not 0 <= self.warmup < 1:
            raise PassOptionError("pass 'recover': lr and rewritten_lr must be > 0 and warmup in [0, 1)")
        if not 0 <= self.blockwise < 1:
            raise PassOptionError(f"pass 'recover': blockwise must lie in [0, 1), not {self.blockwise}")
        if not 0 <= self.int8_tail < 1:
            raise PassOptionError(f"pass 'recover': int8_tail must lie in [0, 1), not {self.int8_tail}")
        if self.steps < 0:
            raise PassOptionError(f"pass 'recover': steps must be ≥ 0, not {self.steps}")
        if self.groups < 1 or self.queries < 1 or self.epsilon < 0 or self.affine_lr <= 0:
            raise PassOptionError("pass 'recover': groups and queries must be ≥ 1, epsilon ≥ 0 and affine_lr > 0")


@dataclass(frozen=True)
class AffineSettings:
    """The group affines' layout (GRASP: backprop or forward-only; `edgec recover` too): RecoverOptions' defaults."""
    groups: int = RecoverOptions.groups
    sites: Sites = RecoverOptions.sites
    norms: bool = RecoverOptions.norms
    batch: int = RecoverOptions.batch


def budget(opts: RecoverOptions) -> Budget:
    return Budget(opts.steps, 0.0) if opts.steps > 0 else Budget(0, opts.minutes * 60)


def after_blockwise(opts: RecoverOptions) -> tuple[Budget, RecoverOptions]:
    """The block-wise phase's budget, and the options whose budget is the rest (end to end)."""
    head, rest = budget(opts).split(opts.blockwise)
    return head, replace(opts, steps=rest.steps, minutes=rest.seconds / 60 if rest.seconds else opts.minutes)


def progress_units(opts: RecoverOptions) -> int:
    """A progress bar's total: steps, or seconds."""
    return opts.steps if opts.steps > 0 else int(opts.minutes * 60)


def distill_settings(opts: RecoverOptions, ctx: PassContext, model, rewritten: frozenset[str],
                     judged: list[str]) -> DistillSettings:
    from edgec.passes.training.distill import DistillSettings

    batch = opts.batch if batch_axis_free(model) else 1   # a model exported for batch 1 takes feeds one by one
    feeds = ctx.teacher.search_feeds if ctx.teacher is not None else []
    if feeds:
        batch = min(batch, feeds_per_step(feeds[0]))
    return DistillSettings(minutes=opts.minutes, steps=opts.steps, lr=opts.lr, intermediate=opts.intermediate,
                           eval_every=opts.eval_every, patience=opts.patience, batch=batch, seed=ctx.seed,
                           rewritten_lr=opts.rewritten_lr, warmup=opts.warmup, rewritten=rewritten,
                           train_rest=opts.train_rest, judged=tuple(judged), int8_tail=opts.int8_tail,
                           int8_reduce_range=opts.int8_reduce_range == "true"
                           or (opts.int8_reduce_range == "auto" and ctx.int8_saturates))


def affine_settings(opts: RecoverOptions) -> AffineSettings:
    return AffineSettings(groups=opts.groups, sites=opts.sites, norms=opts.norms, batch=opts.batch)


def zo_settings(opts: RecoverOptions, seed: int) -> ZOSettings:
    """The tuner's settings; optimizer may still be `auto` and epsilon 0 (`forward_only.step_rule` resolves them)."""
    return ZOSettings(minutes=0.0 if opts.steps > 0 else opts.minutes, max_steps=opts.steps or None,
                      optimizer=opts.zo_optimizer, queries=opts.queries, epsilon=opts.epsilon, lr=opts.affine_lr,
                      eval_every=max(1, opts.eval_every // 2), patience=opts.patience, seed=seed)


MAX_STEP_VALUES = 2**21     # input values stacked into one training step at most (images: 12 at 224×224×3)


def feeds_per_step(feed: dict) -> int:
    """How many feeds like this one a step stacks at most. Large inputs (images) cap it: a step's activations,
    the teacher's matched feature maps and their gradients grow with the pixels (ResNet-18, 8 feeds of 4
    images at 224×224: 3.5 GB peak), and more, smaller steps learn faster per CPU-minute (deskew-orinet, 3
    minutes: 538 steps of 8 images against 93 of 32, a better search score)."""
    values = sum(int(np.asarray(v).size) for v in feed.values())
    return max(1, MAX_STEP_VALUES // max(values, 1))


def batch_axis_free(model) -> bool:
    """Feeds can be stacked along axis 0 only if no input fixes its first dimension."""
    initializers = {i.name for i in model.graph.initializer}
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        if value.name not in initializers and (not dims or dims[0].HasField("dim_value")):
            return False
    return True
