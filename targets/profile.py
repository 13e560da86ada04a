"""The TargetProfile dataclass and its TOML loader."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

_HERE = Path(__file__).resolve().parent
FALLBACK_POLICIES = ("warn", "error", "allow")
OUTPUT_FORMATS = ("onnx", "ort")
OPT_LEVELS = ("disable", "basic", "extended", "all")


class TargetError(ValueError):
    """A target name that does not exist or a profile file that is malformed."""


@dataclass(frozen=True)
class LatencySettings:
    warmup: int = 10
    runs: int = 50
    max_seconds: float = 30.0


@dataclass(frozen=True)
class TargetProfile:
    name: str
    description: str = ""
    # Execution providers in order of preference, each with its provider options.
    execution_providers: tuple[str, ...] = ("CPUExecutionProvider",)
    provider_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    fallback: str = "warn"
    min_ep_share: float = 0.0  # share of nodes the first EP must run (placement check); 0 = no check
    threads: int = 0  # 0: let ONNX Runtime decide
    graph_optimization: str = "all"
    output_format: str = "onnx"
    rank_multiple: int = 1
    pipeline: tuple[str, ...] = ("cleanup",)
    pass_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    min_cosine: float = 0.99
    latency: LatencySettings = field(default_factory=LatencySettings)
    source: str = ""

    def options_for(self, pass_name: str) -> dict[str, Any]:
        return dict(self.pass_options.get(pass_name, {}))


def builtin_target_names() -> list[str]:
    return sorted(p.stem for p in _HERE.glob("*.toml"))


def load_target(name_or_path: str) -> TargetProfile:
    """Load a built-in profile by name, or a user's TOML file by path."""
    path = Path(name_or_path)
    # a built-in name wins over a folder of that name in the working directory (`--target arm` next to ./arm/)
    if path.suffix == ".toml" or path.is_file() or (path.exists() and name_or_path not in builtin_target_names()):
        if not path.is_file():
            raise TargetError(f"{name_or_path}: target file not found")
        return _parse(path, default_name=path.stem)
    builtin = _HERE / f"{name_or_path}.toml"
    if not builtin.is_file():
        known = ", ".join(builtin_target_names())
        raise TargetError(f"unknown target '{name_or_path}' (known: {known}; or pass a path to a .toml file)")
    return _parse(builtin, default_name=name_or_path)


def _parse(path: Path, default_name: str) -> TargetProfile:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise TargetError(f"{path}: not a valid TOML target profile ({exc})") from None
    try:
        return _from_dict(data, default_name, str(path))
    except (TypeError, ValueError) as exc:
        raise TargetError(f"{path}: {exc}") from None


def _from_dict(data: dict[str, Any], default_name: str, source: str) -> TargetProfile:
    known = {f.name for f in dataclasses.fields(TargetProfile)} | {"passes"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown keys {unknown}")
    eps = data.get("execution_providers", [{"name": "CPUExecutionProvider"}])
    names, options = _parse_eps(eps)
    latency = LatencySettings(**data.get("latency", {}))
    profile = TargetProfile(
        name=str(data.get("name", default_name)),
        description=str(data.get("description", "")),
        execution_providers=names,
        provider_options=options,
        fallback=str(data.get("fallback", "warn")),
        min_ep_share=float(data.get("min_ep_share", 0.0)),
        threads=int(data.get("threads", 0)),
        graph_optimization=str(data.get("graph_optimization", "all")),
        output_format=str(data.get("output_format", "onnx")),
        rank_multiple=int(data.get("rank_multiple", 1)),
        pipeline=tuple(data.get("pipeline", ("cleanup",))),
        pass_options={k: dict(v) for k, v in data.get("passes", {}).items()},
        min_cosine=float(data.get("min_cosine", 0.99)),
        latency=latency,
        source=source,
    )
    _validate(profile)
    return profile


def _parse_eps(eps: list[Any]) -> tuple[tuple[str, ...], dict[str, dict[str, Any]]]:
    names: list[str] = []
    options: dict[str, dict[str, Any]] = {}
    for entry in eps:
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict) or "name" not in entry:
            raise ValueError("each execution provider needs a name")
        names.append(str(entry["name"]))
        options[str(entry["name"])] = {k: str(v) for k, v in entry.get("options", {}).items()}
    if not names:
        raise ValueError("execution_providers is empty")
    return tuple(names), options


def _validate(p: TargetProfile) -> None:
    if p.fallback not in FALLBACK_POLICIES:
        raise ValueError(f"fallback must be one of {FALLBACK_POLICIES}, not '{p.fallback}'")
    if p.output_format not in OUTPUT_FORMATS:
        raise ValueError(f"output_format must be one of {OUTPUT_FORMATS}, not '{p.output_format}'")
    if p.graph_optimization not in OPT_LEVELS:
        raise ValueError(f"graph_optimization must be one of {OPT_LEVELS}")
    if not 0.0 <= p.min_cosine <= 1.0:
        raise ValueError("min_cosine must lie in [0, 1]")
    if p.rank_multiple < 1 or p.threads < 0:
        raise ValueError("rank_multiple must be >= 1 and threads >= 0")
