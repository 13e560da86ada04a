"""Helpers for the passes that hand the graph to ONNX Runtime's python tools (quantizer, transformer optimizer)."""

from __future__ import annotations

import logging
from contextlib import contextmanager

import onnx_graphsurgeon as gs


@contextmanager
def quiet_root_logger():
    """The quantizer logs advice on the root logger ("consider pre-processing"); keep the CLI clean."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


@contextmanager
def calibration_in_priority_order():
    """While active, sessions ONNX Runtime's calibrators create run nodes in priority-based order. The calibrator
    adds a ReduceMin and a ReduceMax after every tensor; in the default order they ran late, keeping every tensor of
    the graph alive at once (a text detector at 736×960: 1.4 GB for two inputs instead of 0.3)."""
    import onnxruntime

    plain = onnxruntime.SessionOptions

    def prioritized() -> onnxruntime.SessionOptions:
        options = plain()
        options.execution_order = onnxruntime.ExecutionOrder.PRIORITY_BASED
        return options

    onnxruntime.SessionOptions = prioritized         # the calibrator reads it from the module when it builds
    try:
        yield
    finally:
        onnxruntime.SessionOptions = plain


def replace_contents(graph: gs.Graph, other: gs.Graph) -> None:
    """Make `graph` hold `other`'s nodes and tensors, keeping its own input and output tensor objects."""
    by_name = {t.name: t for t in other.inputs + other.outputs}
    graph.nodes = other.nodes
    graph.inputs = [by_name.get(t.name, t) for t in graph.inputs]
    graph.outputs = [by_name.get(t.name, t) for t in graph.outputs]
    graph.opset = max(graph.opset, other.opset)
    for domain in other.import_domains or []:
        if domain.domain not in {d.domain for d in graph.import_domains or []}:
            graph.import_domains.append(domain)
    # the exporter writes import_domains as they are once set: an opset that `other` raised (int8 at opset 10
    # upgraded to 13 for per-channel scales) must reach the default domain's entry too
    for domain in graph.import_domains or []:
        if domain.domain in ("", "ai.onnx"):
            domain.version = max(domain.version, graph.opset)


# Opset 18 moved `axes` of every reduction into an input. ONNX Runtime's symbolic shape inference reads it
# for ReduceSum/ReduceMean/ReduceProd only; any other reduction (e.g. the ReduceL2 of a dynamo-exported
# normalize head) leaves its output shapeless, the inference raises further down, and the transformer
# optimizer silently skips every shape-dependent fusion.
_OPSET18_REDUCTIONS = ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMin",
                       "ReduceSumSquare")


@contextmanager
def opset18_reduction_shapes():
    """While active, ONNX Runtime's symbolic shape inference infers every opset-18 reduction like ReduceSum
    (the same rule it already applies to ReduceMean at opset 18)."""
    import sys

    import onnxruntime.tools.symbolic_shape_infer as tools_copy
    import onnxruntime.transformers.shape_infer_helper  # noqa: F401 - loads the optimizer's own copy

    # the transformer optimizer imports the module a second time under a top-level name (a sys.path hack)
    classes = {m.SymbolicShapeInference for m in (tools_copy, sys.modules.get("symbolic_shape_infer")) if m}
    originals = {cls: cls.__dict__["_infer_impl"] for cls in classes}

    def patched(original, get_opset):
        def infer(self, *args, **kwargs):
            if get_opset(self.out_mp_) >= 18:
                self.dispatcher_.update({op: self._infer_ReduceSum for op in _OPSET18_REDUCTIONS
                                         if op not in self.dispatcher_})
            return original(self, *args, **kwargs)
        return infer

    for cls, original in originals.items():
        cls._infer_impl = patched(original, sys.modules[cls.__module__].get_opset)
    try:
        yield
    finally:
        for cls, original in originals.items():
            cls._infer_impl = original
