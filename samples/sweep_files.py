"""Magika (Google's file-type classifier) in the sweep: real file contents of many types, built with
the standard library, turned into the model's byte features exactly like `magika` 1.0 does."""

from __future__ import annotations

import gzip
import io
import json
import struct
import zipfile
import zlib

import numpy as np
import onnx

from edgec.samples.sweep_inputs import FEEDS, checked, rng, top1

BEG = END = 1024
PADDING = 256  # config.min.json: padding_token
BLOCK = 4096


def features(content: bytes) -> np.ndarray:
    """Magika._extract_features_from_seekable: strip whitespace, first/last 1024 bytes, padded with 256."""
    beg = content[:BLOCK].lstrip() if len(content) > BLOCK else content.strip()
    end = content[-BLOCK:].rstrip() if len(content) > BLOCK else content.strip()
    beg_ints = list(beg[:BEG]) + [PADDING] * max(0, BEG - len(beg))
    end_ints = [PADDING] * max(0, END - len(end)) + list(end[-END:] if end else b"")
    return np.array(beg_ints + end_ints, np.int32)


def _words(r, n: int) -> list[str]:
    vocab = "total value index count result name data user items price order status error config path".split()
    return [str(w) for w in r.choice(vocab, size=n)]


def python_src(r) -> bytes:
    fns = "\n\n".join(f"def {a}_{b}(x, y={i}):\n    \"\"\"Return the {a} of {b}.\"\"\"\n"
                      f"    if x > y:\n        return x - y\n    return [v * {i} for v in range(x)]\n"
                      for i, (a, b) in enumerate(zip(_words(r, 12), _words(r, 12), strict=True)))
    return f"import os\nimport sys\nfrom pathlib import Path\n\n\n{fns}\nif __name__ == '__main__':\n    main()\n".encode()


def javascript_src(r) -> bytes:
    body = "\n".join(f"  const {a} = await fetch(`/api/{b}/${{id}}`).then((r) => r.json());" for a, b in
                     zip(_words(r, 15), _words(r, 15), strict=True))
    return f"'use strict';\nimport {{ render }} from './view.js';\n\nexport async function load(id) {{\n{body}\n  return render(total);\n}}\n".encode()


def html_doc(r) -> bytes:
    items = "".join(f"<li><a href=\"/{w}.html\">{w.title()}</a></li>\n" for w in _words(r, 20))
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>{_words(r, 1)[0]}</title>"
            f"<link rel=\"stylesheet\" href=\"style.css\"></head>\n<body>\n<ul>\n{items}</ul>\n</body>\n</html>\n").encode()


def json_doc(r) -> bytes:
    rows = [{w: int(r.integers(0, 1000)) for w in _words(r, 5)} | {"id": i} for i in range(20)]
    return json.dumps({"items": rows, "count": 20}, indent=2).encode()


def csv_doc(r) -> bytes:
    lines = ["id,name,price,qty,date"] + [f"{i},{w},{r.uniform(1, 99):.2f},{int(r.integers(1, 9))},2024-0{i % 9 + 1}-1{i % 9}"
                                          for i, w in enumerate(_words(r, 60))]
    return ("\n".join(lines) + "\n").encode()


def markdown_doc(r) -> bytes:
    parts = [f"# {' '.join(_words(r, 3)).title()}\n"] + [f"## {w.title()}\n\nThe {w} is set with `--{w}`. "
                                                         f"See [docs](https://example.org/{w}).\n\n- {w}\n- item\n"
                                                         for w in _words(r, 8)]
    return "\n".join(parts).encode()


def shell_src(r) -> bytes:
    cmds = "\n".join(f"if [ -f \"$DIR/{w}\" ]; then\n  echo \"found {w}\"\n  cp \"$DIR/{w}\" /tmp/\nfi" for w in _words(r, 10))
    return f"#!/bin/bash\nset -euo pipefail\nDIR=\"${{1:-.}}\"\n{cmds}\nexit 0\n".encode()


def c_src(r) -> bytes:
    fns = "\n".join(f"static int {w}_{i}(const char *s, size_t n) {{\n    int acc = 0;\n    for (size_t i = 0; i < n; ++i)\n"
                    f"        acc += s[i] * {i};\n    return acc;\n}}\n" for i, w in enumerate(_words(r, 10)))
    return f"#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n\n{fns}\nint main(void) {{ return 0; }}\n".encode()


def png_image(r) -> bytes:
    w = h = 64
    raw = b"".join(b"\x00" + bytes(r.integers(0, 256, w * 3, dtype=np.uint8)) for _ in range(h))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))  # noqa: E731
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def gzip_blob(r) -> bytes:
    return gzip.compress(csv_doc(r), mtime=0)


def zip_archive(r) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, maker in (("main.py", python_src), ("README.md", markdown_doc), ("data.json", json_doc)):
            z.writestr(zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0)), maker(r))
    return buf.getvalue()


def pdf_doc(r) -> bytes:
    text = " ".join(_words(r, 30))
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET"
    objs = ["<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
            f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream"]
    body = "".join(f"{i + 1} 0 obj\n{o}\nendobj\n" for i, o in enumerate(objs))
    return f"%PDF-1.4\n{body}trailer\n<< /Root 1 0 R >>\n%%EOF\n".encode()


MAKERS = (python_src, javascript_src, html_doc, json_doc, csv_doc, markdown_doc, shell_src, c_src,
          png_image, gzip_blob, zip_archive, pdf_doc)


def magika_feeds(model: onnx.ModelProto) -> list[dict]:
    """Per feed a batch of 6 files of different types (the model's batch axis is free)."""
    r, feeds = rng(501), []
    for i in range(FEEDS):
        makers = [MAKERS[(i + k) % len(MAKERS)] for k in range(0, 12, 2)]
        feeds.append({"bytes": np.stack([features(make(r)) for make in makers])})
    return feeds


MAGIKA = (magika_feeds, checked(top1(0), need=0.98, tol=0.05))
