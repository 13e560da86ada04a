"""HTML and Markdown reports with plots; the HTML page is opened in a real (headless) Chromium."""

import os
import re
import shutil
import subprocess

import numpy as np
import pytest

import models
from clirun import run_cli


def _compile_with_report(src, tmp_path, report, *extra):
    code, text = run_cli("compile", src, "--allow-synthetic", "--passes", "cleanup,lowrank,prune", "--pass-option", "lowrank.floor=0.99",
                         "--pass-option", "prune.floor=0.99", "-o", tmp_path / "o.onnx", "--runs", "5",
                         "--allow-slower", "--report", report, *extra)
    assert code == 0, text
    return report


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], env=env, capture_output=True)
        found = shutil.which("chromium")
    if not found:
        pytest.skip("chromium is not installed and cannot be installed here")
    return found


def test_html_report_renders_its_plots_in_chromium(save, tmp_path):
    src = save(models.mlp_model("gelu", blocks=4))
    page = _compile_with_report(src, tmp_path, tmp_path / "report.html")
    text = page.read_text()
    images = re.findall(r"<img [^>]*src='data:image/png;base64,", text)
    assert len(images) >= 3                    # frontier, searches, per-layer structure (+ spectra)
    browser = _chromium()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([browser, *flags, "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    rendered = re.search(r'data-plots-rendered="(\d+)"', dom)
    assert rendered and int(rendered.group(1)) == len(images)    # the browser decoded every plot
    shot = tmp_path / "shot.png"
    subprocess.run([browser, *flags, "--window-size=1000,2400", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120)
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.std() > 0.05                 # not a blank page


def test_markdown_report_links_png_plots(save, tmp_path):
    src = save(models.mlp_model("gelu", blocks=4))
    report = _compile_with_report(src, tmp_path, tmp_path / "report.md")
    md = report.read_text()
    links = re.findall(r"!\[[^\]]+\]\(([^)]+\.png)\)", md)
    assert len(links) >= 3
    for link in links:
        png = (tmp_path / link).read_bytes()
        assert png.startswith(b"\x89PNG")


def test_goal_report_plots_every_candidate(save, tmp_path):
    src = save(models.mlp_model("gelu", blocks=2))
    report = tmp_path / "goal.html"
    code, text = run_cli("compile", src, "--allow-synthetic", "--goal", "size=0.9", "-o", tmp_path / "g.onnx", "--runs", "3",
                         "--report", report)
    assert code == 0, text
    html = report.read_text()
    assert "<h2>Goal search</h2>" in html and html.count(" ★") == 1
    assert np.sum([html.count(f"<td>{p}") for p in ("cleanup", "int8")]) >= 2
