"""`edgec check`: the CI latency gate — a verdict, JUnit XML, GitHub annotations and a Markdown summary."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from pathlib import Path

from edgec.compiler.errors import InputError
from edgec.runtime.stats import ratio_estimate

ALPHA = 0.01   # Mann–Whitney significance for "slower"


@dataclass
class Verdict:
    status: str          # ok | regression | inconclusive
    model: str
    reference: str
    ratio: float
    ci_low: float
    ci_high: float
    p_slower: float
    threshold: float
    baseline_p50_ms: float
    current_p50_ms: float
    message: str

    def as_dict(self) -> dict:
        return asdict(self)


def judge(model: str, reference: str, baseline_ms: list[float], current_ms: list[float], threshold: float) -> Verdict:
    """Fail only when the median slowdown exceeds the threshold *and* Mann–Whitney says it is real."""
    est = ratio_estimate(baseline_ms, current_ms)
    limit = 1 + threshold
    if est.ratio > limit and est.p_slower < ALPHA:
        status, why = "regression", f"{est.ratio:.3f}× slower than {reference} (limit {limit:.2f}×, p={est.p_slower:.1e})"
    elif est.ratio > limit or est.high > limit:
        status, why = "inconclusive", (f"median ratio {est.ratio:.3f}× (95% CI {est.low:.3f}–{est.high:.3f}) "
                                       f"cannot be told apart from the {limit:.2f}× limit: too noisy")
    else:
        status, why = "ok", f"{est.ratio:.3f}× of {reference} (95% CI {est.low:.3f}–{est.high:.3f}, limit {limit:.2f}×)"
    s = sorted(baseline_ms), sorted(current_ms)
    return Verdict(status, model, reference, est.ratio, est.low, est.high, est.p_slower, threshold,
                   s[0][len(s[0]) // 2], s[1][len(s[1]) // 2], why)


def load_baseline(path: Path) -> dict:
    if not path.is_file():
        raise InputError(f"{path}: baseline file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable baseline ({exc})") from None
    if not isinstance(data, dict) or not data.get("samples_ms"):
        raise InputError(f"{path}: not an edgec baseline (no latency samples; write one with bench --save-baseline)")
    return data


def junit_xml(verdict: Verdict) -> str:
    suite = ET.Element("testsuite", name="edgec.check", tests="1",
                       failures=str(int(verdict.status == "regression")),
                       skipped=str(int(verdict.status == "inconclusive")))
    case = ET.SubElement(suite, "testcase", classname="edgec.latency", name=verdict.model,
                         time=f"{verdict.current_p50_ms / 1e3:.6f}")
    if verdict.status == "regression":
        ET.SubElement(case, "failure", message=verdict.message, type="LatencyRegression").text = verdict.message
    elif verdict.status == "inconclusive":
        ET.SubElement(case, "skipped", message=verdict.message)
    ET.SubElement(case, "system-out").text = json.dumps(verdict.as_dict())
    return ET.tostring(suite, encoding="unicode", xml_declaration=True)


def github_annotation(verdict: Verdict) -> str | None:
    level = {"regression": "error", "inconclusive": "warning"}.get(verdict.status)
    if level is None:
        return None
    return f"::{level} file={verdict.model},title=edgec latency {verdict.status}::{verdict.message}"


def markdown_summary(verdict: Verdict) -> str:
    icon = {"ok": "✅", "regression": "❌", "inconclusive": "⚠️"}[verdict.status]
    return (f"### {icon} edgec latency check: {verdict.status}\n\n"
            "| model | reference | p50 before (ms) | p50 now (ms) | ratio | 95% CI | p (slower) |\n"
            "|---|---|---:|---:|---:|---|---:|\n"
            f"| `{verdict.model}` | `{verdict.reference}` | {verdict.baseline_p50_ms:.3f} | "
            f"{verdict.current_p50_ms:.3f} | {verdict.ratio:.3f}× | {verdict.ci_low:.3f}–{verdict.ci_high:.3f} | "
            f"{verdict.p_slower:.1e} |\n\n{verdict.message}\n")


def publish(verdict: Verdict, junit: Path | None) -> list[str]:
    """Write JUnit XML and the GitHub step summary; return the annotation lines to print."""
    if junit:
        from edgec.compiler.modelio import write_text_atomic

        write_text_atomic(junit_xml(verdict), junit)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as f:
            f.write(markdown_summary(verdict))
    line = github_annotation(verdict)
    return [line] if line and os.environ.get("GITHUB_ACTIONS") == "true" else []
