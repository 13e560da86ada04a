"""Writing the compile report where --report asks: .json (data), .md (Markdown, plots as PNG files in a
sibling folder, linked) or .html (one self-contained page, plots embedded)."""

from __future__ import annotations

from pathlib import Path

from edgec.compiler.modelio import write_bytes_atomic, write_text_atomic
from edgec.compiler.report.compile_report import CompileReport

FORMATS = (".json", ".md", ".markdown", ".html", ".htm")


def write_report(report: CompileReport, path: Path) -> None:
    suffix = path.suffix.lower()
    if suffix in (".md", ".markdown"):
        from edgec.compiler.report.markdown import to_markdown

        write_text_atomic(to_markdown(report, _plot_files(report, path)), path)
    elif suffix in (".html", ".htm"):
        from edgec.compiler.report.html import to_html
        from edgec.compiler.report.plots import figures

        write_text_atomic(to_html(report, figures(report)), path)
    else:
        write_text_atomic(report.to_json(), path)


def _plot_files(report: CompileReport, path: Path) -> list[tuple[str, str]]:
    """Each plot as PNG in `<report stem>.plots/`; returns (title, path relative to the report)."""
    from edgec.compiler.report.plots import figures

    plots = figures(report)
    if not plots:
        return []
    folder = path.with_name(f"{path.stem}.plots")
    folder.mkdir(exist_ok=True)
    out = []
    for i, (title, png) in enumerate(plots):
        name = f"{i + 1}-{title.split(':')[0].split()[0].lower()}.png"
        write_bytes_atomic(png, folder / name)
        out.append((title, f"{folder.name}/{name}"))
    return out
