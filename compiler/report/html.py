"""The compile report as one self-contained HTML page (`--report report.html`): tables and PNG plots
embedded as data URIs, so the file can be attached to a CI run or mailed and still shows everything."""

from __future__ import annotations

import base64
import html

from edgec.compiler.report.compile_report import CompileReport, size_rows

STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:60em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}
td:first-child,th:first-child{text-align:left}.ok{color:#080}.bad{color:#b00}figure{margin:1.5em 0}
img{max-width:100%;border:1px solid #eee}li{margin:.2em 0}"""

# Sets <body data-plots-rendered="N"> once the page has loaded: how many plots the browser decoded.
CHECK = """<script>window.addEventListener('load',()=>{const ok=[...document.images].filter(
i=>i.complete&&i.naturalWidth>0).length;document.body.dataset.plotsRendered=ok;});</script>"""


def to_html(r: CompileReport, plots: list[tuple[str, bytes]]) -> str:
    e = html.escape
    verdict = '<b class="ok">OK</b>' if r.ok else '<b class="bad">FAILED</b>'
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>edgec compile → {e(r.target)}</title>",
             f"<style>{STYLE}</style></head><body>", f"<h1>edgec compile → {e(r.target)}</h1>",
             f"<p><code>{e(r.input)}</code> → <code>{e(r.output or 'not written')}</code> on "
             f"{e(', '.join(r.providers))}; pipeline <code>{e(','.join(r.pipeline) or '(none)')}</code>; {verdict}</p>"]
    parts += _summary(r) + _fidelity(r) + _candidates(r)
    for title, png in plots:
        data = base64.b64encode(png).decode("ascii")
        parts.append(f"<figure><img alt='{e(title)}' src='data:image/png;base64,{data}'>"
                     f"<figcaption>{e(title)}</figcaption></figure>")
    parts.append("<h2>Passes</h2><ul>")
    for p in r.passes:
        stats = ", ".join(f"{k}={v}" for k, v in p.stats.items() if not isinstance(v, (list, dict)))
        notes = "".join(f"<li>{e(n)}</li>" for n in p.notes)
        parts.append(f"<li><b>{e(p.name)}</b>: {'changed' if p.changed else 'no change'} in {p.seconds:.2f} s "
                     f"(Δparams {p.delta_params:+,}){': ' + e(stats) if stats else ''}<ul>{notes}</ul></li>")
    parts.append("</ul>")
    if r.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in r.notes) + "</ul>")
    parts.append(CHECK + "</body></html>")
    return "\n".join(parts)


def _summary(r: CompileReport) -> list[str]:
    if not (r.before and r.after):
        return []
    rows = size_rows(r.before, r.after)
    out = ["<table><tr><th></th><th>original</th><th>compiled</th><th>ratio</th></tr>"]
    out += [f"<tr><td>{label}</td><td>{a:,}</td><td>{b:,}</td><td>{b / a:.3f}</td></tr>" if a else
            f"<tr><td>{label}</td><td>{a:,}</td><td>{b:,}</td><td>-</td></tr>" for label, a, b in rows]
    if r.latency:
        lat = r.latency
        out.append(f"<tr><td>latency p50 (ms)</td><td>{lat['original']['p50_ms']:.3f}</td>"
                   f"<td>{lat['compiled']['p50_ms']:.3f}</td><td>{lat['ratio_p50']:.3f}×</td></tr>")
    return out + ["</table>"]


def _fidelity(r: CompileReport) -> list[str]:
    held = f"{r.calibration.get('held_out', '?')} held-out inputs"
    return _fidelity_table(r.fidelity, held) + _fidelity_table(
        r.fidelity_eval, f"{r.calibration.get('evaluation')} inputs of {r.calibration.get('evaluation_source')}")


def _fidelity_table(records: list[dict], what: str) -> list[str]:
    if not records:
        return []
    keys = [("metric", "{}"), ("score", "{:.5f}"), ("cosine", "{:.5f}"), ("min_cosine", "{:.5f}"), ("rel_l2", "{:.2e}"), ("max_abs", "{:.2e}"),
            ("top1_agreement", "{:.3f}"), ("nn_agreement", "{:.3f}")]
    out = [f"<h2>Fidelity on {html.escape(what)}</h2><table><tr><th>output</th>"
           "<th>gated by</th><th>score</th><th>cosine</th><th>worst cosine</th><th>rel L2</th><th>max |Δ|</th><th>top-1</th><th>NN agree</th></tr>"]
    for f in records:
        cells = "".join(f"<td>{fmt.format(f[k]) if k in f else '-'}</td>" for k, fmt in keys)
        out.append(f"<tr><td>{html.escape(f['name'])}</td>{cells}</tr>")
    return out + ["</table>"]


def _candidates(r: CompileReport) -> list[str]:
    if not r.candidates:
        return []
    out = ["<h2>Goal search</h2><table><tr><th>pipeline</th><th>result</th><th>latency ratio</th>"
           "<th>cosine</th><th>gate</th><th>goal</th></tr>"]
    for c in r.candidates:
        ratio = f"{c['latency_ratio']:.3f}" if c.get("latency_ratio") else "-"
        mark = " ★" if c.get("chosen") else ""
        out.append(f"<tr><td>{html.escape(c['pipeline'])}{mark}</td><td>{html.escape(c['result'])}</td>"
                   f"<td>{ratio}</td><td>{c['cosine']:.4f}</td><td>{'pass' if c['ok'] else 'fail'}</td>"
                   f"<td>{'met' if c['meets_goal'] else '-'}</td></tr>")
    return out + ["</table>"]
