"""The anchors of `make sweep`: ONNX Runtime's own one-call int8 quantizers on the same model and data.

For each sweep model the user's obvious alternative to edgec is one call of `quantize_dynamic` (per-channel,
default op types) or `quantize_static` (QDQ, per-channel, MinMax over the same calibration items edgec gets).
Each anchor is task-checked on the same unseen inputs as edgec's output, and every written model is timed in
one interleaved run against the original (machines are noisy: only ratios measured side by side are quoted).
"""

from __future__ import annotations

import filecmp
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnxruntime as ort

from edgec.passes.int8.recipes import FeedReader
from edgec.passes.quantize import INTEGER_OPS
from edgec.runtime.latency import measure_interleaved

ANCHORS = ("ort-dynamic", "ort-static")


@dataclass
class AnchorModel:
    name: str
    path: Path | None
    error: str = ""


def build_anchors(original: Path, calib_feeds: list[dict], folder: Path) -> list[AnchorModel]:
    """Both anchors of `original` in `folder`; one that ONNX Runtime cannot build carries its error line."""
    return [_built(name, original, calib_feeds, folder / f"{original.stem}.{name}.onnx") for name in ANCHORS]


def _built(name: str, original: Path, calib_feeds: list[dict], out: Path) -> AnchorModel:
    from onnxruntime.quantization import QuantFormat, quantize_dynamic, quantize_static

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        if name == "ort-dynamic":
            quantize_dynamic(original, out, per_channel=True)
        else:
            quantize_static(original, out, FeedReader(calib_feeds), quant_format=QuantFormat.QDQ, per_channel=True)
        session(out)                       # a model ONNX Runtime then refuses to load is no anchor either
        return AnchorModel(name, out)
    except Exception as exc:  # noqa: BLE001 - the quantizer's own failures are the anchor's result
        out.unlink(missing_ok=True)
        return AnchorModel(name, None, f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}" if str(exc)
                           else type(exc).__name__)
    finally:
        root.setLevel(level)


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")   # idle pools must not steal cores
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def interleaved_ratios(original: Path, others: list[Path], feed: dict, runs: int = 20,
                       max_seconds: float = 20.0, busy_seconds: float = 2.0) -> list[float]:
    """Median latency of each of `others` over the original's, all timed in one interleaved run on `feed`: at
    least `runs` rounds, more for a fast model (about `busy_seconds` of the original's runs, at most 2000) — 20
    runs of a 90 µs keyword spotter read an anchor at 0.91×, 900 read it at 0.96× three times in a row."""
    sessions = [session(p) for p in [original, *others]]
    runners = [lambda s=s: s.run(None, feed) for s in sessions]
    start = time.perf_counter()
    for _ in range(5):
        runners[0]()
    per_run = (time.perf_counter() - start) / 5
    runs = max(runs, min(2000, int(busy_seconds / max(per_run, 1e-6))))
    samples = measure_interleaved(runners, warmup=5, runs=runs, max_seconds=max_seconds)
    medians = [float(np.median(s)) for s in samples]
    return [m / medians[0] for m in medians[1:]]


@dataclass
class AnchorResult:
    name: str
    status: str            # kept | changed (the task check fails) | failed (ONNX Runtime could not build it)
    detail: str
    latency: float = 0.0   # median latency over the original's, timed in the same interleaved run as edgec's
    size: float = 0.0      # file size over the original's
    quantized: bool = True  # False: the quantizer wrote no integer operator (the original's computation)

    def as_dict(self) -> dict:
        return asdict(self)


def judged_anchors(original: Path, compiled: Path | None, calib_feeds: list[dict], check_feeds: list[dict],
                   check: Callable, outputs: Callable, folder: Path) -> tuple[float | None, list[AnchorResult]]:
    """edgec's latency ratio and each anchor's result: every written model task-checked on `check_feeds` and
    timed in one interleaved run with the original (on the first check feed: the data's real shapes)."""
    anchors = _cached_anchors(original, calib_feeds, folder)
    reference = outputs(original, check_feeds)
    results = []
    for anchor in anchors:
        if anchor.path is None:
            results.append(AnchorResult(anchor.name, "failed", anchor.error))
            continue
        try:
            got = outputs(anchor.path, check_feeds)
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime loads some anchors it then cannot run
            anchor.path = None
            results.append(AnchorResult(anchor.name, "failed", f"does not run: {str(exc).splitlines()[0][:160]}"))
            continue
        kept, summary = check(check_feeds, reference, got)
        results.append(AnchorResult(anchor.name, "kept" if kept else "changed", summary,
                                    size=anchor.path.stat().st_size / original.stat().st_size,
                                    quantized=integer_ops(anchor.path) > integer_ops(original)))
    timed = [a.path for a in anchors if a.path is not None]
    # the original written unchanged runs as the original does: timing the same bytes against themselves measures
    # only the machine's noise (two unchanged spotters read 1.09× and 1.11× beside a test run)
    same = compiled is not None and same_graph(original, compiled)
    ratios = interleaved_ratios(original, ([compiled] if compiled and not same else []) + timed, check_feeds[0])
    edgec = 1.0 if same else ratios.pop(0) if compiled else None
    for result in (r for r in results if r.status != "failed"):
        result.latency = round(ratios.pop(0), 3)
    return (round(edgec, 3) if edgec is not None else None), results


def same_graph(a: Path, b: Path) -> bool:
    """Whether two model files hold the same nodes, weights and opsets (what runs), whatever their metadata and
    encoding (edgec stamps its own producer; an empty field may be written or left out)."""
    import onnx

    if filecmp.cmp(a, b, shallow=False):
        return True
    ga, gb = (onnx.load(str(p), load_external_data=False) for p in (a, b))
    if sorted((o.domain, o.version) for o in ga.opset_import) != sorted((o.domain, o.version) for o in gb.opset_import):
        return False
    if any(t.external_data for t in ga.graph.initializer):
        return False
    return _graph_key(ga.graph) == _graph_key(gb.graph)


def _graph_key(graph) -> tuple:
    """A graph's nodes and weights as comparable values (subgraphs too)."""
    from onnx import helper

    def value(attribute):
        got = helper.get_attribute_value(attribute)
        return _tensor_key(got) if attribute.type == attribute.TENSOR else \
            _graph_key(got) if attribute.type == attribute.GRAPH else got

    nodes = tuple((n.op_type, n.domain, tuple(n.input), tuple(n.output), tuple((a.name, value(a)) for a in n.attribute))
                  for n in graph.node)
    return nodes, tuple(_tensor_key(t) for t in graph.initializer)


def _tensor_key(tensor) -> tuple:
    from onnx import numpy_helper

    array = numpy_helper.to_array(tensor)
    return tensor.name, str(array.dtype), array.shape, array.tobytes()


def _cached_anchors(original: Path, calib_feeds: list[dict], folder: Path) -> list[AnchorModel]:
    """The anchors are the same for every target: built once per model into its folder."""
    built = [AnchorModel(n, folder / f"{original.stem}.{n}.onnx") for n in ANCHORS]
    if all(a.path is not None and a.path.exists() for a in built):
        return built
    return build_anchors(original, calib_feeds, folder)


def integer_ops(path: Path) -> int:
    """How many integer/quantization operators the model has, inside If/Loop branches too."""
    import onnx

    from edgec.compiler.modelio import subgraphs

    main = onnx.load(str(path), load_external_data=False).graph
    return sum(n.op_type in INTEGER_OPS or n.op_type.startswith("QLinear")
               for graph in [main, *subgraphs(main)] for n in graph.node)


def at_least_as_good(edgec_kept: bool, edgec_latency: float | None, anchors: list[dict]) -> bool:
    """edgec's model keeps the task and is within 5 % of the faster anchor that keeps it (or none keeps it). An
    anchor that quantized nothing runs the original's computation: it counts 1.00×, as an unchanged edgec model
    does (its measured ratio is the machine's noise)."""
    if not edgec_kept:
        return False
    kept = [a["latency"] if a.get("quantized", True) else 1.0 for a in anchors if a["status"] == "kept"]
    return not kept or (edgec_latency or 1.0) <= 1.05 * min(kept)
