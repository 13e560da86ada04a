"""`edgec bench` and `edgec compare`: latency of one model, or of two side by side in one process."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from edgec.compiler import modelio
from edgec.compiler.bench.devices import QemuDevice
from edgec.compiler.calibration.feeds import feed_set
from edgec.compiler.calibration.loading import vocabulary_size
from edgec.compiler.calibration.spec import CalibrationSpec
from edgec.compiler.driver import session_config
from edgec.compiler.errors import InputError, ProviderError
from edgec.compiler.measuring import placement_notes
from edgec.compiler.progress import progress_bar
from edgec.runtime.bench import benchmark, machine_info
from edgec.runtime.fidelity import compare_runs
from edgec.runtime.latency import LatencyStats, measure_interleaved
from edgec.runtime.placement import node_placement
from edgec.runtime.session import ProviderUnavailable, create_session, resolve_providers
from edgec.runtime.stats import ratio_estimate
from edgec.targets import TargetProfile


def _vocabulary(path: Path) -> int:
    """Clear errors for missing, corrupt or non-ONNX files; the token-id range its embedding tables take."""
    return vocabulary_size(modelio.load_model(path))


def _resolve(target: TargetProfile):
    config = session_config(target)
    try:
        return config, resolve_providers(config)
    except ProviderUnavailable as exc:
        raise ProviderError(str(exc)) from None


def make_feed(session, inputs: Path | None, dims: dict[str, int], vocab_size: int = 1000,
              seed: int = 0, path: Path = Path("the model")) -> dict[str, np.ndarray]:
    """The user's first input, or the first synthesized guess (or the variant real models need: a sample rate,
    a chunk size)."""
    spec = CalibrationSpec(npz=inputs, samples=1, dims=dims)
    return feed_set(session, vocab_size, spec, seed, path, [], run_original=False).fit[0]


def bench_model(path: Path, target: TargetProfile, inputs: Path | None = None, dims: dict | None = None,
                warmup: int | None = None, runs: int | None = None, max_seconds: float | None = None,
                device=None) -> dict:
    vocab = _vocabulary(path)
    config, resolved = _resolve(target)
    lat = target.latency
    settings: dict[str, Any] = {"warmup": lat.warmup if warmup is None else warmup, "runs": lat.runs if runs is None else runs,
                "max_seconds": lat.max_seconds if max_seconds is None else max_seconds, "dims": dims or {}}
    local = create_session(str(path), config, resolved)
    feed = make_feed(local, inputs, dims or {}, vocab, path=path)
    if isinstance(device, QemuDevice):
        # emulation is far slower (samples/RESULTS.md#runtime): a few runs prove it loads; the outputs
        # prove it computes right
        settings.update(warmup=min(settings["warmup"], 1), runs=min(settings["runs"], 3))
        result = device.bench(path, config, feed, settings)
        result["host_agreement"] = _agreement(local, feed, device.run(path, feed, config))
    elif device is not None:
        result = device.bench(path, config, feed, settings)
    else:
        with progress_bar(f"benchmarking {path.name}", settings["runs"]) as advance:
            result = benchmark(str(path), config, feed, dims, settings["warmup"], settings["runs"],
                               settings["max_seconds"], progress=advance).as_dict()
        result["device"] = "local"
    result["target"] = target.name
    result["model_path"] = str(path)
    _add_notes(result, target)
    return result


def _agreement(session, feed: dict, remote: dict[str, np.ndarray]) -> dict[str, float]:
    """max |host − device| per output."""
    names = [o.name for o in session.get_outputs()]
    host = dict(zip(names, session.run(names, feed), strict=True))
    return {n: float(np.max(np.abs(np.asarray(host[n], np.float64) - remote[n]))) for n in names}


def _add_notes(result: dict, target: TargetProfile) -> None:
    placement = result.get("placement") or {}
    result["notes"] = list(result.get("provider_notes", [])) + (placement_notes(placement, target) if placement else [])


def compare_models(a: Path, b: Path, target: TargetProfile, inputs: Path | None = None, dims: dict | None = None,
                   warmup: int | None = None, runs: int | None = None, max_seconds: float | None = None) -> dict:
    """Both models in one process, interleaved A B A B …, same feed, same threads and EPs."""
    vocab = min(_vocabulary(a), _vocabulary(b))
    config, resolved = _resolve(target)
    sa, sb = create_session(str(a), config, resolved), create_session(str(b), config, resolved)
    feed = make_feed(sa, inputs, dims or {}, vocab, path=a)
    runs = target.latency.runs if runs is None else runs
    warmup = target.latency.warmup if warmup is None else warmup
    max_seconds = target.latency.max_seconds if max_seconds is None else max_seconds
    try:
        outs_a, outs_b = sa.run(None, feed), sb.run(None, feed)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{b}: does not accept the inputs of {a} ({str(exc).splitlines()[0][:160]})") from None
    with progress_bar(f"{a.name} vs {b.name}, interleaved", runs) as advance:
        samples = measure_interleaved([lambda: sa.run(None, feed), lambda: sb.run(None, feed)], warmup, runs,
                                      max_seconds, advance)
    est = ratio_estimate(samples[0], samples[1])
    names = [o.name for o in sa.get_outputs()][:len(outs_b)]
    fidelity = [f.as_dict() for f in compare_runs(names, [outs_a], [outs_b], [feed]) if not isinstance(f, str)]
    return {"a": str(a), "b": str(b), "target": target.name, "providers": list(resolved.providers),
            "notes": resolved.notes, "latency_a": asdict(LatencyStats.from_samples(samples[0])),
            "latency_b": asdict(LatencyStats.from_samples(samples[1])),
            "samples_a_ms": [s * 1e3 for s in samples[0]], "samples_b_ms": [s * 1e3 for s in samples[1]],
            "ratio": est.ratio, "ratio_ci95": [est.low, est.high], "p_b_slower": est.p_slower,
            "fidelity": fidelity, "placement_b": node_placement(str(b), config, feed, resolved),
            "machine": machine_info()}
