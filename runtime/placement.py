"""Which execution provider ran how many nodes, read from ONNX Runtime's profiling output."""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter

from edgec.runtime.session import ResolvedProviders, SessionConfig, create_session


def node_placement(model: bytes | str, config: SessionConfig, feed: dict,
                   resolved: ResolvedProviders | None = None) -> dict[str, int]:
    """Run the model once with profiling on and count the distinct nodes each provider executed."""
    with tempfile.TemporaryDirectory() as tmp:
        session = create_session(model, config, resolved, profile_file=os.path.join(tmp, "ort_profile"))
        session.run(None, feed)
        path = session.end_profiling()
        with open(path, encoding="utf-8") as f:
            events = json.load(f)
    return count_providers(events)


def count_providers(events: list[dict]) -> dict[str, int]:
    nodes: dict[str, str] = {}
    for event in events:
        if event.get("cat") != "Node":
            continue
        provider = event.get("args", {}).get("provider")
        if not provider:
            continue
        name = event.get("name", "")
        for suffix in ("_kernel_time", "_fence_before", "_fence_after"):
            name = name.removesuffix(suffix)
        nodes[name] = provider
    return dict(Counter(nodes.values()).most_common())


def first_provider_share(placement: dict[str, int], provider: str) -> float:
    total = sum(placement.values())
    return placement.get(provider, 0) / total if total else 0.0
