"""Step 7 of the compile: latency of original and compiled side by side, placement, roll-back if slower."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from edgec.compiler.errors import EdgecError
from edgec.compiler.progress import progress_bar
from edgec.runtime.latency import LatencyStats, measure_interleaved
from edgec.runtime.placement import first_provider_share, node_placement
from edgec.runtime.stats import mann_whitney_greater
from edgec.targets import TargetProfile


@dataclass(frozen=True)
class Baseline:
    """What the compiled model is timed against: the original, its session, the session config, and the
    held-out feed both run."""
    model: onnx.ModelProto
    session: Any
    config: Any
    feed: dict


def measured(report, baseline: Baseline, candidate, compiled, resolved, target: TargetProfile, options):
    """Latency side by side (a slower model rolls back); a measurement that breaks is a note, not a crash:
    the model is already verified."""
    try:
        return measure_or_roll_back(report, baseline, candidate, compiled, resolved, target, options)
    except (EdgecError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001
        report.notes.append(f"latency not measured ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})")
        return compiled


def measure_or_roll_back(report, baseline: Baseline, candidate, compiled, resolved, target: TargetProfile, options):
    """Latency side by side and placement; a measurably slower model is replaced by the original."""
    feed = baseline.feed
    report.latency = _measure(baseline.session, candidate, feed, target, options)
    report.placement = node_placement(compiled.SerializeToString(), baseline.config, feed, resolved)
    report.notes += placement_notes(report.placement, target)
    if _measurably_slower(report.latency) and not options.allow_slower and report.ok:
        report.rolled_back = True
        report.notes.append(f"the compiled model measured {report.latency['ratio_p50']:.3f}× the original's "
                            "latency: rolled back, the output is the original model (--allow-slower keeps it)")
        return baseline.model
    return compiled


def _measure(reference, candidate, feed, target: TargetProfile, options) -> dict:
    warmup = options.warmup if options.warmup is not None else target.latency.warmup
    runs = options.runs if options.runs is not None else target.latency.runs
    runners = [lambda: reference.run(None, feed), lambda: candidate.run(None, feed)]
    with progress_bar("measuring latency (original vs compiled, interleaved)", runs) as advance:
        samples = measure_interleaved(runners, warmup, runs, target.latency.max_seconds, advance)
    orig, comp = LatencyStats.from_samples(samples[0]), LatencyStats.from_samples(samples[1])
    return {"original": orig.__dict__, "compiled": comp.__dict__,
            "ratio_p50": comp.p50_ms / orig.p50_ms if orig.p50_ms else float("nan"),
            "p_slower": mann_whitney_greater(np.array(samples[1]), np.array(samples[0])),
            "warmup": warmup, "runs": orig.runs,
            # the shapes timed: a held-out feed of the calibration data (real shapes), or synthesized without data
            "input_shapes": {name: list(np.shape(value)) for name, value in feed.items()}}


def _measurably_slower(latency: dict, alpha: float = 0.01) -> bool:
    """Slower by the median (over 3 %) and by a Mann–Whitney test, so noise alone does not roll back."""
    return latency["ratio_p50"] > 1.03 and latency["p_slower"] < alpha


def placement_notes(placement: dict[str, int], target: TargetProfile) -> list[str]:
    first = target.execution_providers[0]
    share = first_provider_share(placement, first)
    if target.min_ep_share > 0 and share < target.min_ep_share:
        return [f"only {share:.0%} of nodes ran on {first} (the profile asks for ≥ {target.min_ep_share:.0%})"]
    return []
