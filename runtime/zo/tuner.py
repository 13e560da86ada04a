"""Zeroth-order tuning of group affines through ONNX Runtime (ZO-ASR's multi-query random directions), numpy only.

The tuning graph (`passes.recovery.tuning`) takes each site's per-channel γ and β as inputs. The parameters θ are
dimensionless: γ = 1 + u, β = rms(site) · v, so one step size fits every site. Each step draws q directions
z (regenerated from (seed, step, k), never stored), runs the model at θ ± εz on one training batch (2q forward
passes) and moves θ by one of the step rules of `runtime.zo.steps` (subspace Gauss-Newton by default, or SPSA
with Adam), scaled by a factor that falls along a half cosine over the time budget. Every `eval_every` steps
the held-out feeds are scored the way the compile verifies (`runtime.fidelity`); the best θ is kept. The
`jacobian` rule (`runtime.zo.jacobian`) instead pools one exact Gauss-Newton system over many batches. Runs on
the host or, unchanged, on a device (`runtime.device tune`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from edgec.runtime.fidelity import compare_outputs, token_mask
from edgec.runtime.zo.jacobian import pooled_gauss_newton
from edgec.runtime.zo.steps import OPTIMIZERS, Clock, Pair, residual


def group_index(channels: int, groups: int) -> np.ndarray:
    """Channel → group: K contiguous, near-equal groups (K capped at the channel count)."""
    groups = max(1, min(groups, channels))
    return (np.arange(channels) * groups) // channels


@dataclass(frozen=True)
class SiteSlot:
    """A site as the tuning graph sees it (`passes.recovery.shared.slots_for` makes them): the modulated tensor,
    its γ/β input names and the unmodulated tensor's name."""

    output: str
    channels: int
    groups: int
    gamma: str
    beta: str | None          # None: the site has no bias to carry a shift
    raw: str                  # the tensor before modulation (a tuning-graph output, for the β scale)
    label: str = ""
    shape: tuple[int, ...] = ()   # γ/β feeds' shape: (channels,) by default, (C, 1, 1) after a 2-D Conv

    def as_dict(self) -> dict:
        return {"output": self.output, "channels": self.channels, "groups": self.groups, "gamma": self.gamma,
                "beta": self.beta, "raw": self.raw, "label": self.label, "shape": list(self.shape)}

    @property
    def feed_shape(self) -> tuple[int, ...]:
        return self.shape or (self.channels,)

    @classmethod
    def from_dict(cls, d: dict) -> SiteSlot:
        return cls(d["output"], int(d["channels"]), int(d["groups"]), d["gamma"], d.get("beta"), d["raw"],
                   d.get("label", ""), tuple(d.get("shape") or ()))


@dataclass
class ZOSettings:
    minutes: float = 5.0
    optimizer: str = "gauss-newton"   # | spsa (runtime.zo.steps) | jacobian (runtime.zo.jacobian)
    queries: int = 8            # directions per step; each costs two forward passes
    epsilon: float = 1e-2       # perturbation of the dimensionless parameters (int8 graphs round: not too small)
    lr: float = 2e-4            # spsa: Adam's peak step
    shrink: float = 0.5         # gauss-newton: the fraction of the subspace step taken
    damping: float = 1.0        # gauss-newton: Levenberg–Marquardt λ (relative to the diagonal)
    eval_every: int = 50
    patience: int = 20
    seed: int = 0
    max_steps: int | None = None   # a step budget on top of the time budget; alone (minutes 0): reproducible


@dataclass
class ZOResult:
    steps: int = 0
    forward_passes: int = 0
    seconds: float = 0.0
    trainable: int = 0
    held_out_before: float = 0.0
    held_out_best: float = 0.0
    stopped_early: bool = False
    curve: list[dict] = field(default_factory=list)
    gammas: list[list[float]] = field(default_factory=list)    # per slot, per group
    betas: list[list[float]] = field(default_factory=list)     # per slot, per group (zeros without a bias)

    def as_stats(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("gammas", "betas")}


class Layout:
    """θ ↔ the tuning graph's γ/β feeds."""

    def __init__(self, slots: list[SiteSlot], scales: list[float]):
        self.slots, self.scales = slots, scales
        self.slices, start = [], 0
        for slot in slots:
            k = max(1, min(slot.groups, slot.channels))
            gamma, start = slice(start, start + k), start + k
            beta = None
            if slot.beta:
                beta, start = slice(start, start + k), start + k
            self.slices.append((gamma, beta, group_index(slot.channels, k)))
        self.size = start

    def feeds(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        out = {}
        for slot, scale, (g, b, index) in zip(self.slots, self.scales, self.slices, strict=True):
            out[slot.gamma] = (1.0 + theta[g][index]).astype(np.float32).reshape(slot.feed_shape)
            if b is not None:
                out[slot.beta] = (scale * theta[b][index]).astype(np.float32).reshape(slot.feed_shape)   # type: ignore[index]
        return out

    def affines(self, theta: np.ndarray) -> tuple[list[list[float]], list[list[float]]]:
        gammas, betas = [], []
        for scale, (g, b, _) in zip(self.scales, self.slices, strict=True):
            gammas.append((1.0 + theta[g]).tolist())
            betas.append((scale * theta[b]).tolist() if b is not None else [0.0] * (g.stop - g.start))
        return gammas, betas


def tune(session, slots: list[SiteSlot], batches: list[Pair], held: list[Pair], outputs: list[str],
         judged: list[str], settings: ZOSettings,
         progress: Callable[..., None] = lambda done, info=None: None, units: frozenset[str] = frozenset()) -> ZOResult:
    """The best θ on the held-out pairs, each judged output scored the way the compile verifies it (`units`:
    probabilities by construction, judged against the unit interval at least)."""
    if settings.minutes <= 0 and not settings.max_steps:
        raise ValueError("zeroth-order tuning needs a budget of minutes or of steps")
    if settings.optimizer not in (*OPTIMIZERS, "jacobian") or settings.epsilon <= 0:
        raise ValueError(f"zeroth-order tuning: unknown step rule '{settings.optimizer}' or epsilon "
                         f"{settings.epsilon} ≤ 0 (resolve 'auto' with passes.recovery.forward_only.step_rule)")
    layout = Layout(slots, _site_scales(session, slots, batches[:4]))
    run = _runner(session, layout, outputs)
    result = ZOResult(trainable=layout.size)
    result.held_out_before = result.held_out_best = score(run(np.zeros(layout.size), held), held, outputs, judged, units)
    result.curve.append({"seconds": 0.0, "steps": 0, "held_out": result.held_out_before})
    start = time.perf_counter()
    if settings.optimizer == "jacobian":
        best_theta = _pooled(run, layout, batches, held, outputs, judged, settings, result, progress, units)
    else:
        best_theta = _stepwise(run, layout, batches, held, outputs, judged, settings, result, progress, units)
    result.seconds = round(time.perf_counter() - start, 1)
    result.gammas, result.betas = layout.affines(best_theta)
    return result


def _stepwise(run, layout: Layout, batches: list[Pair], held: list[Pair], outputs: list[str], judged: list[str],
              settings: ZOSettings, result: ZOResult, progress, units: frozenset[str]) -> np.ndarray:
    """The per-batch step rules of `runtime.zo.steps`: a step on each batch in turn, the held-out score every
    `eval_every` steps, the best θ kept, early stopping after `patience` evaluations without a gain."""
    rule = OPTIMIZERS[settings.optimizer](layout.size, settings)
    clock = Clock(settings, result)
    theta = np.zeros(layout.size)
    best_theta, stale = theta.copy(), 0
    while not clock.spent():
        pair = batches[result.steps % len(batches)]

        def residual_at(t: np.ndarray, pair: Pair = pair) -> np.ndarray:
            return residual(run(t, [pair])[0], pair, outputs)

        theta = rule.step(theta, residual_at, result.steps, _cosine(clock.fraction()))
        result.forward_passes += 2 * settings.queries
        result.steps += 1
        progress(clock.done(), f"held-out {result.held_out_best:.4f}")
        if result.steps % settings.eval_every == 0:
            now = score(run(theta, held), held, outputs, judged, units)
            result.forward_passes += len(held)
            result.curve.append({"seconds": clock.seconds(), "steps": result.steps, "held_out": round(now, 6)})
            if now > result.held_out_best:
                result.held_out_best, best_theta, stale = now, theta.copy(), 0
            else:
                stale += 1
            if stale >= settings.patience:
                result.stopped_early = True
                break
    return best_theta


def _pooled(run, layout: Layout, batches: list[Pair], held: list[Pair], outputs: list[str], judged: list[str],
            settings: ZOSettings, result: ZOResult, progress, units: frozenset[str]) -> np.ndarray:
    """`runtime.zo.jacobian`: the judged outputs' residual, pooled over the training batches."""
    fitted = [n for n in outputs if n in judged] or outputs

    def residual_at(theta: np.ndarray, index: int) -> np.ndarray:
        result.forward_passes += 1
        return residual(run(theta, [batches[index]])[0], batches[index], fitted)

    def evaluate(theta: np.ndarray) -> float:
        result.forward_passes += len(held)
        return score(run(theta, held), held, outputs, judged, units)

    return pooled_gauss_newton(layout.size, residual_at, len(batches), evaluate, settings, result, progress)


def _runner(session, layout: Layout, outputs: list[str]):
    def run(theta: np.ndarray, pairs: list[Pair]) -> list[dict]:
        extra = layout.feeds(theta)
        return [dict(zip(outputs, session.run(outputs, {**feed, **extra}), strict=True)) for feed, _ in pairs]
    return run


def _site_scales(session, slots: list[SiteSlot], pairs: list[Pair]) -> list[float]:
    """Each site's RMS activation at θ = 0: the unit of its shifts."""
    names = [s.raw for s in slots]
    unit = Layout(slots, [1.0] * len(slots))
    identity = unit.feeds(np.zeros(unit.size))
    sums = np.zeros(len(slots))
    for feed, _ in pairs:
        for i, value in enumerate(session.run(names, {**feed, **identity})):
            sums[i] += float(np.mean(np.square(value, dtype=np.float64)))
    return [math.sqrt(s / max(len(pairs), 1)) or 1.0 for s in sums]


def score(gots: list[dict], held: list[Pair], outputs: list[str], judged: list[str],
          units: frozenset[str] = frozenset()) -> float:
    """Min over the judged float outputs of their fidelity score on the held-out pairs."""
    scores = []
    for name in outputs:
        refs = [np.asarray(t[name]) for _, t in held]
        if name not in judged or not np.issubdtype(refs[0].dtype, np.floating):
            continue
        scores.append(compare_outputs(name, refs, [g[name] for g in gots], [token_mask(f) for f, _ in held],
                                     name in units).score)
    return float(min(scores)) if scores else 1.0


def _cosine(fraction: float) -> float:
    """The step's factor over the budget: from 1 down to 0 along a half cosine."""
    return 0.5 * (1 + math.cos(math.pi * min(max(fraction, 0.0), 1.0)))
