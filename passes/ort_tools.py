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


def replace_contents(graph: gs.Graph, other: gs.Graph) -> None:
    """Make `graph` hold `other`'s nodes and tensors, keeping its own input and output tensor objects."""
    by_name = {t.name: t for t in other.inputs + other.outputs}
    graph.nodes = other.nodes
    graph.inputs = [by_name.get(t.name, t) for t in graph.inputs]
    graph.outputs = [by_name.get(t.name, t) for t in graph.outputs]
    for domain in other.import_domains or []:
        if domain.domain not in {d.domain for d in graph.import_domains or []}:
            graph.import_domains.append(domain)
