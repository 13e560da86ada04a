"""The one training loop every torch fit in edgec runs: recovery distillation, block-wise recovery, low-rank
refinement and shared-basis reconstruction.

A budget of steps or of seconds (the steps a time budget buys are unknown in advance, so the schedule
follows the fraction of the budget spent); AdamW whose parameter groups each keep a `peak` learning rate;
a schedule of linear warm-up then a cosine down to a floor; hooks before and after each step (pruning
schedules, masks that keep zeros zero); an evaluation every `eval_every` steps that may stop training early;
and the best weights seen by such evaluations (`BestWeights`). torch is imported by the callers that
reach here, never at package import time.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Schedule:
    warmup: float = 0.0      # fraction of the budget spent ramping the learning rate up from 0
    floor: float = 0.0       # the cosine ends at this fraction of the peak instead of 0

    def factor(self, fraction: float) -> float:
        """Learning-rate factor at this fraction of the budget."""
        if fraction < self.warmup:
            return fraction / self.warmup
        rest = (fraction - self.warmup) / max(1.0 - self.warmup, 1e-9)
        return self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * min(rest, 1.0)))


def adamw(groups: list[dict], weight_decay: float = 0.0, fused: bool = False):
    """AdamW over parameter groups `{"params": [...], "peak": lr}` (each starts at its peak). `fused`: the
    fused CPU kernel where torch has it (a much faster step: samples/RESULTS.md#recovery)."""
    import torch

    params = [{**g, "lr": g["peak"]} for g in groups]
    if fused:
        try:
            return torch.optim.AdamW(params, weight_decay=weight_decay, fused=True)
        except (RuntimeError, TypeError):
            pass
    return torch.optim.AdamW(params, weight_decay=weight_decay)


@dataclass(frozen=True)
class Budget:
    """Optimizer steps (reproducible: the same weights on any machine, any executor) or wall-clock seconds."""
    steps: int = 0
    seconds: float = 0.0

    def __post_init__(self):
        if self.steps <= 0 and self.seconds <= 0:
            raise ValueError("a training budget needs steps or seconds")

    def spent(self, steps: int, elapsed: float) -> float:
        """The fraction of the budget used after `steps` steps and `elapsed` seconds."""
        return steps / self.steps if self.steps > 0 else elapsed / self.seconds

    def share(self, parts: int) -> "Budget":
        """One of `parts` equal shares (e.g. per block)."""
        return Budget(max(1, self.steps // parts), 0.0) if self.steps > 0 else Budget(0, self.seconds / parts)

    def split(self, first: float) -> tuple["Budget", "Budget"]:
        """The first `first` fraction of the budget and the rest."""
        if self.steps > 0:
            head = max(1, int(round(self.steps * first)))
            return Budget(head, 0.0), Budget(max(1, self.steps - head), 0.0)
        return Budget(0, self.seconds * first), Budget(0, self.seconds * (1 - first))

    def loop_budget(self) -> dict:
        """run_loop's keyword for this budget."""
        return {"steps": self.steps} if self.steps > 0 else {"seconds": self.seconds}

    def describe(self) -> str:
        return f"{self.steps} steps" if self.steps > 0 else f"{self.seconds / 60:g} min"


@dataclass
class LoopResult:
    steps: int = 0
    seconds: float = 0.0
    stopped_early: bool = False


def run_loop(optimizer, step_loss: Callable[[int], Any], *, steps: int | None = None, seconds: float | None = None,
             schedule: Schedule = Schedule(), before_step: Callable[[int], None] | None = None,
             after_step: Callable[[int], None] | None = None, evaluate: Callable[[int], bool] | None = None,
             eval_every: int = 0, progress: Callable[[int, float], None] | None = None) -> LoopResult:
    """Train until `steps` steps or `seconds` have passed, or `step_loss` raises StopIteration (its data ran
    out), or `evaluate(step)` (every `eval_every` steps) returns True. `step_loss(step)` returns the loss of one
    batch; the loop sets the learning rates, steps the optimizer and calls the hooks."""
    if (steps is None) == (seconds is None):
        raise ValueError("run_loop: give a budget of steps or of seconds")
    result, start = LoopResult(), time.perf_counter()
    while True:
        elapsed = time.perf_counter() - start
        if (steps is not None and result.steps >= steps) or (seconds is not None and elapsed >= seconds):
            break
        fraction = result.steps / steps if steps is not None else elapsed / seconds   # type: ignore[operator]
        for group in optimizer.param_groups:
            group["lr"] = group["peak"] * schedule.factor(fraction)
        if before_step is not None:
            before_step(result.steps)
        try:
            loss = step_loss(result.steps)
        except StopIteration:
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if after_step is not None:
            after_step(result.steps)
        result.steps += 1
        if progress is not None:
            progress(result.steps, elapsed)
        if evaluate is not None and eval_every and result.steps % eval_every == 0 and evaluate(result.steps):
            result.stopped_early = True
            break
    result.seconds = round(time.perf_counter() - start, 1)
    return result


class BestWeights:
    """The best-scoring values of some tensors so far, and how many evaluations have not beaten them."""

    def __init__(self, tensors: Any, score: float):
        """`tensors`: name → tensor (a dict or torch's ParameterDict), restored in place."""
        self.tensors, self.score, self.stale = tensors, score, 0
        self.state = self._copy()

    def _copy(self) -> dict[str, Any]:
        return {k: v.detach().clone() for k, v in self.tensors.items()}

    def offer(self, score: float) -> None:
        if score > self.score:
            self.score, self.stale, self.state = score, 0, self._copy()
        else:
            self.stale += 1

    def restore(self) -> None:
        import torch

        with torch.no_grad():
            for key, value in self.state.items():
                self.tensors[key].copy_(value)


def sampled_rows(x, y, batch: int, generator):
    """A random batch of matching rows of the block inputs `x` and outputs `y` (teacher forcing)."""
    import torch

    idx = torch.randint(0, len(x), (min(batch, len(x)),), generator=generator)
    return x[idx], y[idx]
