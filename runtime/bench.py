"""One benchmark of one model: session creation, first inference, latency percentiles, peak RSS, placement.

numpy + onnxruntime only: this module also runs on a device, through `python -m edgec.runtime.device`.
"""

from __future__ import annotations

import os
import platform
import resource
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import onnxruntime as ort

from edgec.runtime.inputs import input_specs, synthesize_feed
from edgec.runtime.latency import LatencyStats, measure_interleaved
from edgec.runtime.placement import node_placement
from edgec.runtime.session import SessionConfig, create_session, resolve_providers


@dataclass
class BenchResult:
    model: str
    model_bytes: int
    providers: list[str]
    provider_notes: list[str]
    session_create_ms: float
    first_inference_ms: float
    latency: dict
    samples_ms: list[float]
    peak_rss_mb: float
    placement: dict[str, int] = field(default_factory=dict)
    machine: dict = field(default_factory=dict)
    onnxruntime: str = ort.__version__

    def as_dict(self) -> dict:
        return asdict(self)


def machine_info() -> dict:
    return {"machine": platform.machine(), "system": platform.system(), "processor": platform.processor(),
            "cpus": os.cpu_count(), "python": platform.python_version(), "node": platform.node()}


def benchmark(model_path: str, config: SessionConfig, feed: dict[str, np.ndarray] | None = None,
              dims: dict[str, int] | None = None, warmup: int = 10, runs: int = 50,
              max_seconds: float = 30.0, seed: int = 0, placement: bool = True, progress=None) -> BenchResult:
    resolved = resolve_providers(config)
    t0 = time.perf_counter()
    session = create_session(model_path, config, resolved)
    create_ms = (time.perf_counter() - t0) * 1e3
    if feed is None:
        feed = synthesize_feed(input_specs(session), np.random.default_rng(seed), dims)
    t0 = time.perf_counter()
    session.run(None, feed)
    first_ms = (time.perf_counter() - t0) * 1e3
    samples = measure_interleaved([lambda: session.run(None, feed)], warmup, runs, max_seconds, progress)[0]
    stats = LatencyStats.from_samples(samples)
    placed = node_placement(model_path, config, feed, resolved) if placement else {}
    return BenchResult(
        model=os.path.basename(model_path), model_bytes=_model_bytes(model_path),
        providers=list(resolved.providers), provider_notes=resolved.notes,
        session_create_ms=create_ms, first_inference_ms=first_ms, latency=asdict(stats),
        samples_ms=[s * 1e3 for s in samples], peak_rss_mb=peak_rss_mb(), placement=placed,
        machine=machine_info())


def _model_bytes(path: str) -> int:
    total = os.path.getsize(path)
    data = path + ".data"
    return total + (os.path.getsize(data) if os.path.exists(data) else 0)


def peak_rss_mb(children: bool = False) -> float:
    """The largest resident set of this process (with `children`, or of any child it waited for), in MiB.

    On Linux this process's own peak is read from /proc (VmHWM, reset when the program starts): getrusage's
    ru_maxrss keeps the size of the process that forked it (a 2.2 GB test runner made every 0.6 MB model's
    compile read 2.2 GB). A child forked from here inherits at most this process's size, so its figure is fair."""
    per_mib = 2**20 if platform.system() == "Darwin" else 1024      # getrusage: macOS counts bytes, Linux KiB
    own = _vm_hwm_kib()
    peak = own if own is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if children:
        peak = max(peak, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return peak / per_mib


def _vm_hwm_kib() -> int | None:
    try:
        with open("/proc/self/status") as f:
            return next((int(line.split()[1]) for line in f if line.startswith("VmHWM:")), None)
    except OSError:
        return None
