"""An offline English corpus for distillation tests and benchmarks: WordNet's glosses and usage examples
(Debian's `wordnet-base`, ~117 k synsets). Never the evaluation sentences of `samples/sentences.txt`.

    python -m edgec.samples.corpus OUT.txt [--limit N]   →   one sentence per line
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
from pathlib import Path
from typing import Iterator

WORDNET = Path("/usr/share/wordnet")
QUOTED = re.compile(r'"([^"]{20,})"')


def ensure_wordnet() -> Path:
    """The WordNet data folder, installing `wordnet-base` with apt when possible (root, Debian)."""
    if not (WORDNET / "data.noun").exists() and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wordnet-base"], env=env, capture_output=True)
    if not (WORDNET / "data.noun").exists():
        raise FileNotFoundError("WordNet data not found: install Debian's wordnet-base (apt-get install wordnet-base)")
    return WORDNET


def sentences(folder: Path = WORDNET) -> Iterator[str]:
    """Usage examples first (real sentences), then definitions, interleaved across parts of speech."""
    for kind in ("examples", "definitions"):
        for pos in ("noun", "verb", "adj", "adv"):
            with open(folder / f"data.{pos}", encoding="utf-8", errors="replace") as f:
                for line in f:
                    if line.startswith("  ") or "|" not in line:
                        continue          # the licence header
                    gloss = line.split("|", 1)[1].strip()
                    if kind == "examples":
                        yield from (q.strip() for q in QUOTED.findall(gloss))
                    else:
                        text = gloss.split(";")[0].strip()
                        if len(text) >= 20 and '"' not in text:
                            yield text[0].upper() + text[1:] + "."


def write_corpus(out: Path, limit: int | None = None) -> int:
    ensure_wordnet()
    count = 0
    with open(out, "w", encoding="utf-8") as f:
        for text in sentences():
            f.write(text + "\n")
            count += 1
            if limit and count >= limit:
                break
    return count


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="edgec.samples.corpus")
    parser.add_argument("out", type=Path)
    parser.add_argument("--limit", type=int)
    args = parser.parse_args()
    print(f"wrote {write_corpus(args.out, args.limit)} sentences to {args.out}")
