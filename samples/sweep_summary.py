"""The sweep's comparison with ONNX Runtime's one-call quantizers (`make sweep` with `--anchors`).

Per model and target: edgec's result beside `quantize_dynamic` and `quantize_static`, each task-checked on the
same unseen inputs and timed in one interleaved run. edgec is "at least as good" when it keeps the task at a
latency within 5 % of the faster anchor that keeps it (or no anchor keeps it).
"""

from __future__ import annotations

from edgec.samples.sweep_anchors import ANCHORS, at_least_as_good


def anchor_line(outcome) -> str:
    """The console line's tail: edgec's latency and each anchor's status and latency."""
    if not outcome.anchors:
        return ""
    parts = [f"edgec {outcome.latency:.2f}×" if outcome.latency else "edgec —"]
    parts += [f"{a['name']} {a['status']}" + (f" {a['latency']:.2f}×" if a["latency"] else "")
              for a in outcome.anchors]
    return "  [" + ", ".join(parts) + "]"


def anchor_table(rows: list[dict]) -> str:
    """Markdown: one row per model and target that has anchors, then the summary counts."""
    rows = [r for r in rows if r.get("anchors")]
    if not rows:
        return ""
    lines = ["", "| model | target | edgec | edgec latency | edgec size | " + " | ".join(ANCHORS) + " | as good |",
             "|---|---|---|---|---|" + "---|" * len(ANCHORS) + "---|"]
    for r in rows:
        anchors = {a["name"]: a for a in r["anchors"]}
        cells = [_anchor_cell(anchors.get(n)) for n in ANCHORS]
        lines.append(f"| {r['model']} | {r['target']} | {r['status']} | {_ratio(r.get('latency'))} "
                     f"{'(unchanged) ' if r.get('rewrites') == 'unchanged' else ''}| "
                     f"{r.get('size', 0):.2f}× | " + " | ".join(cells) + f" | {'yes' if _as_good(r) else 'no'} |")
    return "\n".join(lines) + "\n\n" + summary(rows) + "\n"


def latency(row: dict) -> float:
    """edgec's latency ratio; 1.0 for a model written unchanged (only cleanup ran: the same computation, so any
    other figure timed for it is the machine's noise)."""
    return 1.0 if row.get("rewrites") == "unchanged" else (row.get("latency") or 1.0)


def summary(rows: list[dict]) -> str:
    """The counts the issue's acceptance reads, over the rows that have anchors."""
    kept = [r for r in rows if r["status"] == "kept"]
    conv = [r for r in rows if r.get("convolutional")]
    faster = [r for r in kept if latency(r) <= 1 / 1.2]
    conv_faster = [r for r in kept if r.get("convolutional") and latency(r) <= 1 / 1.5]
    smaller = [r for r in kept if r.get("size", 1.0) and r["size"] <= 0.5]
    damaged = [r for r in rows if r["status"] in ("changed", "crash")]
    anchor_damaged = {n: sum(any(a["name"] == n and a["status"] == "changed" for a in r["anchors"]) for r in rows)
                      for n in ANCHORS}
    return "\n".join([
        f"- edgec at least as good as the better ONNX Runtime quantizer: {sum(map(_as_good, rows))} of {len(rows)}",
        f"- edgec ≥ 1.2× faster with the task kept: {len(faster)} of {len(rows)}",
        f"- convolutional models ≥ 1.5× faster with the task kept: {len(conv_faster)} of {len(conv)}",
        f"- edgec ≥ 2× smaller with the task kept: {len(smaller)} of {len(rows)}",
        f"- edgec damaged or crashed: {len(damaged)}; anchors damaged: "
        + ", ".join(f"{n} {c}" for n, c in anchor_damaged.items()),
        f"- edgec slower than the original (> 1.05×): {sum(latency(r) > 1.05 for r in kept)}",
    ])


def _as_good(row: dict) -> bool:
    return at_least_as_good(row["status"] == "kept", latency(row), row["anchors"])


def _anchor_cell(anchor: dict | None) -> str:
    if anchor is None:
        return "—"
    if anchor["status"] == "failed":
        return "failed"
    nothing = "" if anchor.get("quantized", True) else " (nothing quantized)"
    return f"{anchor['status']} {anchor['latency']:.2f}× / {anchor['size']:.2f}× size{nothing}"


def _ratio(value) -> str:
    return f"{value:.2f}×" if value else "—"
