"""Execution-provider resolution and session creation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import onnxruntime as ort

OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


class ProviderUnavailable(RuntimeError):
    """A preferred execution provider is missing and the fallback policy is `error`."""


@dataclass(frozen=True)
class SessionConfig:
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    provider_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    fallback: str = "warn"
    threads: int = 0
    graph_optimization: str = "all"


@dataclass(frozen=True)
class ResolvedProviders:
    providers: tuple[str, ...]
    missing: tuple[str, ...]

    @property
    def notes(self) -> list[str]:
        if not self.missing:
            return []
        return [f"execution provider {name} is not available here; fell back to {self.providers[0]}"
                for name in self.missing]


def resolve_providers(config: SessionConfig) -> ResolvedProviders:
    """Keep the profile's providers that this onnxruntime build has, in order.

    CPU is always appended last so that every node has a home, unless the policy is `error`.
    """
    available = set(ort.get_available_providers())
    chosen = [p for p in config.providers if p in available]
    missing = tuple(p for p in config.providers if p not in available)
    if missing and config.fallback == "error":
        have = ", ".join(sorted(available))
        raise ProviderUnavailable(f"execution provider(s) {', '.join(missing)} not available (have: {have})")
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return ResolvedProviders(tuple(chosen), missing)


def session_options(config: SessionConfig, profile_file: str | None = None,
                    priority_order: bool = False) -> ort.SessionOptions:
    """`priority_order`: run nodes in ONNX Runtime's priority-based order; a graph with extra consumers of every
    tensor (min/max reductions) otherwise kept all of them alive at once (a text detector: 1.4 GB instead of 0.3)."""
    opts = ort.SessionOptions()
    if priority_order:
        opts.execution_order = ort.ExecutionOrder.PRIORITY_BASED
    opts.graph_optimization_level = OPT_LEVELS[config.graph_optimization]
    if config.threads:
        opts.intra_op_num_threads = config.threads
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    # Idle intra-op threads would otherwise spin for a while after each run; with two or more sessions
    # measured interleaved on a small machine, one session's spinning threads steal the cores of the next.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile_file:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_file
    return opts


def create_session(model: bytes | str, config: SessionConfig,
                   resolved: ResolvedProviders | None = None,
                   profile_file: str | None = None, priority_order: bool = False) -> ort.InferenceSession:
    resolved = resolved or resolve_providers(config)
    options = [config.provider_options.get(p, {}) for p in resolved.providers]
    return ort.InferenceSession(model, sess_options=session_options(config, profile_file, priority_order),
                                providers=list(resolved.providers), provider_options=options)
