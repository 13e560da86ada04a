"""The plots of a compile report, as PNG bytes (matplotlib, headless Agg backend).

- the fidelity / latency frontier: every point the compile evaluated (goal candidates, or the original and
  the compiled model), the gate as a line;
- the budget searches of the passes (budget vs calibration score, the floor as a line);
- per-layer structure: ranks (lowrank), kept hidden units (prune), shared-basis ranks (share);
- spectra: the fraction of each layer's (or group's) output energy captured against the rank.
"""

from __future__ import annotations

import io
from typing import Any

from edgec.compiler.report.compile_report import CompileReport


def figures(report: CompileReport) -> list[tuple[str, bytes]]:
    """(title, PNG bytes) of every plot the report has data for, most important first."""
    import matplotlib

    matplotlib.use("Agg")
    out = []
    for title, draw in ((f"Fidelity vs latency on {report.target}", _frontier),
                        ("Budget searches", _searches), ("Per-layer structure", _structure),
                        ("Spectra: energy captured vs rank", _spectra)):
        png = _render(draw, report)
        if png is not None:
            out.append((title, png))
    return out


def _render(draw, report: CompileReport) -> bytes | None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=100)
    try:
        if not draw(ax, report):
            return None
        ax.grid(alpha=0.3)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        return buffer.getvalue()
    finally:
        plt.close(fig)


def frontier_points(report: CompileReport) -> list[dict[str, Any]]:
    if report.candidates:
        return report.candidates
    if not report.latency or not report.fidelity:
        return []
    cosine = min(f["cosine"] for f in report.fidelity)
    return [{"pipeline": "original", "latency_ratio": 1.0, "cosine": 1.0, "ok": True, "chosen": False},
            {"pipeline": ",".join(report.pipeline) or "compiled", "latency_ratio": report.latency["ratio_p50"],
             "cosine": cosine, "ok": report.ok, "chosen": True}]


def _frontier(ax, report: CompileReport) -> bool:
    points = [p for p in frontier_points(report) if p.get("latency_ratio") is not None]
    if not points:
        return False
    for p in points:
        style = {"marker": "*", "s": 220, "color": "tab:green"} if p.get("chosen") else \
            {"marker": "o", "s": 60, "color": "tab:blue" if p.get("ok") else "tab:red"}
        ax.scatter(p["latency_ratio"], p["cosine"], zorder=3, **style)
        ax.annotate(p["pipeline"], (p["latency_ratio"], p["cosine"]), fontsize=7, xytext=(5, 3),
                    textcoords="offset points")
    if report.min_cosine > 0:
        ax.axhline(report.min_cosine, color="tab:red", linestyle="--", linewidth=1, label=f"gate {report.min_cosine}")
        ax.legend(loc="lower left", fontsize=8)
    ax.set_xlabel("latency p50 / original (lower is faster)")
    ax.set_ylabel("held-out cosine (worst gated output)")
    return True


def _searches(ax, report: CompileReport) -> bool:
    drawn = False
    for rec in report.passes:
        search = rec.stats.get("search")
        if not search or not search.get("points"):
            continue
        xs, ys = zip(*sorted(search["points"]), strict=True)
        ax.plot(xs, ys, marker="o", label=f"{rec.name}: {search['knob']}")
        ax.axhline(search["floor"], color="gray", linestyle=":", linewidth=1)
        drawn = True
    if drawn:
        ax.set_xlabel("budget (fraction kept)")
        ax.set_ylabel("calibration score")
        ax.legend(fontsize=8)
    return drawn


def _structure(ax, report: CompileReport) -> bool:
    bars = []        # (label, kept, full)
    for rec in report.passes:
        for layer in rec.stats.get("layers", []) if isinstance(rec.stats.get("layers"), list) else []:
            if isinstance(layer, dict) and "max_rank" in layer:
                bars.append((_short(layer["layer"]), layer["rank"] or layer["max_rank"], layer["max_rank"]))
        for kept in rec.stats.get("kept", []):
            block, frac = kept.split(":", 1)
            now, full = (int(v) for v in frac.split("/"))
            bars.append((f"block {block}", now, full))
        for group in rec.stats.get("per_group", []):
            bars.append((f"group {group['blocks']}", group["rank"], group["d"]))
    if not bars:
        return False
    labels, kept, full = zip(*bars, strict=True)   # type: ignore[assignment]
    positions = range(len(bars))
    ax.bar(positions, full, color="lightgray", label="full")
    ax.bar(positions, kept, color="tab:blue", label="kept (rank or units)")
    ax.set_xticks(list(positions), labels, rotation=60, ha="right", fontsize=7)
    ax.legend(fontsize=8)
    return True


def _spectra(ax, report: CompileReport) -> bool:
    curves = []
    for rec in report.passes:
        for entry in list(rec.stats.get("layers", []) or []) + list(rec.stats.get("per_group", []) or []):
            if isinstance(entry, dict) and entry.get("spectrum"):
                curves.append((_short(entry.get("layer") or entry.get("group", "")), entry["spectrum"]))
    if not curves:
        return False
    for label, curve in curves[:16]:
        ranks, captured = zip(*curve, strict=True)
        top = max(ranks) or 1
        ax.plot([r / top for r in ranks], captured, linewidth=1, label=label)
    ax.set_xlabel("rank / full rank")
    ax.set_ylabel("output energy captured")
    ax.legend(fontsize=6, ncol=2)
    return True


def _short(name: str) -> str:
    parts = [p for p in name.replace("/", ".").split(".") if p]
    return ".".join(parts[-3:]) if parts else name
