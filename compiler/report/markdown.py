"""The compile report as Markdown (`--report report.md`): what a reviewer reads in a pull request."""

from __future__ import annotations

from typing import Sequence

from edgec.compiler.report.compile_report import CompileReport, size_rows


def _fidelity_lines(records: list[dict], what: str) -> list[str]:
    if not records:
        return []
    lines = [f"Fidelity on {what}:", "",
             "| output | gated by | score | cosine | worst cosine | rel L2 | max abs Δ | top-1 | NN agreement |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for f in records:
        cells = [f.get("metric", "-")] + [f"{f[k]:.5f}" if k in f else "-" for k in ("score", "cosine", "min_cosine")]
        cells += [f"{f[k]:.2e}" for k in ("rel_l2", "max_abs")]
        cells += [f"{f[k]:.3f}" if k in f else "-" for k in ("top1_agreement", "nn_agreement")]
        lines.append(f"| {f['name']} | " + " | ".join(cells) + " |")
    return lines + [""]


def to_markdown(r: CompileReport, plots: Sequence[tuple[str, str]] = ()) -> str:
    """`plots`: (title, relative path of the PNG) to link under the tables."""
    lines = [f"# edgec compile → {r.target}", "",
             f"`{r.input}` → `{r.output or 'not written'}` on {', '.join(r.providers)}; "
             f"pipeline `{','.join(r.pipeline) or '(none)'}`; result **{'OK' if r.ok else 'FAILED'}**", ""]
    if r.before and r.after:
        lines += ["| | original | compiled | ratio |", "|---|---:|---:|---:|"]
        for label, a, b in size_rows(r.before, r.after):
            lines.append(f"| {label} | {a:,} | {b:,} | {b / a:.3f} |" if a else f"| {label} | {a:,} | {b:,} | - |")
        if r.latency:
            lat = r.latency
            lines.append(f"| latency p50 (ms) | {lat['original']['p50_ms']:.3f} | {lat['compiled']['p50_ms']:.3f} | "
                         f"{lat['ratio_p50']:.3f}× |")
        lines.append("")
    held = f"{r.calibration.get('held_out', '?')} held-out inputs ({r.calibration.get('source', '')})"
    lines += _fidelity_lines(r.fidelity, held)
    lines += _fidelity_lines(r.fidelity_eval, f"{r.calibration.get('evaluation')} inputs of "
                                              f"{r.calibration.get('evaluation_source')}")
    if r.candidates:
        lines += ["| goal search | result | latency ratio | cosine | gate | goal |", "|---|---|---:|---:|---|---|"]
        for c in r.candidates:
            ratio = f"{c['latency_ratio']:.3f}" if c.get("latency_ratio") else "-"
            lines.append(f"| {c['pipeline']}{' ★' if c.get('chosen') else ''} | {c['result']} | {ratio} | "
                         f"{c['cosine']:.4f} | {'pass' if c['ok'] else 'fail'} | {'met' if c['meets_goal'] else '-'} |")
        lines.append("")
    lines += [f"![{title}]({rel})\n" for title, rel in plots]
    for p in r.passes:
        stats = ", ".join(f"{k}={v}" for k, v in p.stats.items() if not isinstance(v, (list, dict)))
        lines.append(f"- pass **{p.name}**: {'changed' if p.changed else 'no change'} in {p.seconds:.2f} s"
                     f" (Δparams {p.delta_params:+,}){': ' + stats if stats else ''}")
        lines += [f"  - {n}" for n in p.notes]
    lines += [f"- note: {n}" for n in r.notes]
    if r.resources.get("peak_memory_mb"):
        lines.append(f"- compile: {r.resources['seconds']:.1f} s, peak memory {r.resources['peak_memory_mb']:,.0f} MiB")
    return "\n".join(lines) + "\n"
