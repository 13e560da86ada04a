"""General English text any machine has, for recovery's default training stream and a second held-out domain.

A model distilled on its calibration text alone learns that text's domain: on MiniLM a student trained on prose
kept its fidelity on prose better than on other text (samples/RESULTS.md#recovery). Mixing in broad text keeps
the rest of the input space in view. Sources, in order, each where present: WordNet's usage examples (Debian's
`wordnet-base`), the sentences of the `fortunes` quotes, and the docstrings of the Python standard library
(always there: parsed with `ast`, nothing imported). Every `EVAL_EVERY`-th sentence goes to the evaluation file,
the rest to the training file, so the two never share a sentence.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import re
import sysconfig
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from edgec.compiler.calibration.spec import CalibrationSpec

WORDNET = Path("/usr/share/wordnet")
FORTUNES = Path("/usr/share/games/fortunes")
SKIPPED_FORTUNES = {"art", "ascii-art", "perl", "translate-me"}     # pictures, code, other languages
QUOTED = re.compile(r'"([^"]{20,})"')
SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
EVAL_EVERY = 50            # one sentence in 50 is held out for evaluation
EVAL_LINES = 256           # at most this many evaluation sentences
TRAIN_LINES = 40_000       # at most this many training sentences
VERSION = 1                # of the files' recipe: a change writes them anew
CACHE = Path(os.environ.get("EDGEC_CACHE", Path.home() / ".cache" / "edgec"))


def wordnet_examples(folder: Path = WORDNET) -> Iterator[str]:
    for pos in ("noun", "verb", "adj", "adv"):
        with open(folder / f"data.{pos}", encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.startswith("  ") and "|" in line:      # not the licence header
                    yield from (q.strip() for q in QUOTED.findall(line.split("|", 1)[1]))


def fortune_sentences(folder: Path = FORTUNES) -> Iterator[str]:
    """Prose sentences of the quotes: attributions ("-- Mark Twain") dropped, lines joined, split at . ! ?"""
    for path in sorted(folder.iterdir()):
        if path.suffix or path.name in SKIPPED_FORTUNES or not path.is_file():
            continue
        for quote in path.read_text(encoding="utf-8", errors="replace").split("\n%\n"):
            prose = " ".join(line.strip() for line in quote.splitlines() if not line.strip().startswith("--"))
            yield from prose_sentences(prose)


def docstring_sentences(folder: Path | None = None) -> Iterator[str]:
    """Prose sentences of the standard library's docstrings (modules, classes, functions), in file order."""
    root = folder or Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.glob("*.py")) + sorted(root.glob("*/*.py")):
        folders = path.relative_to(root).parts[:-1]
        if path.name.startswith("test") or any(f in ("test", "tests") for f in folders):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
        except (SyntaxError, ValueError, OSError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                text = ast.get_docstring(node)
                if text:
                    yield from prose_sentences(" ".join(text.split("\n\n")[0].split()))


def prose_sentences(prose: str) -> Iterator[str]:
    for sentence in SENTENCE_BREAK.split(prose):
        sentence = " ".join(sentence.split())
        if 20 <= len(sentence) <= 200 and mostly_words(sentence):
            yield sentence


def mostly_words(text: str) -> bool:
    return sum(c.isalpha() or c == " " for c in text) >= 0.9 * len(text)


def present_sources() -> list[tuple[str, Callable[[], Iterator[str]]]]:
    """(label, reader) of each source this machine has, in order."""
    return [(label, read) for label, there, read in (
        ("WordNet's examples", (WORDNET / "data.noun").exists(), wordnet_examples),
        ("fortunes", (FORTUNES / "fortunes").exists(), fortune_sentences),
        ("the Python standard library's docstrings", True, docstring_sentences)) if there]


def general_sentences() -> Iterator[str]:
    """Every source that is present, each sentence once."""
    seen: set[str] = set()
    for _, read in present_sources():
        for sentence in read():
            if sentence not in seen:
                seen.add(sentence)
                yield sentence


def general_text_files(cache: Path) -> tuple[Path, Path, str]:
    """(training file, evaluation file, what they hold), written once into `cache` (atomically; into the
    temporary folder when `cache` cannot be written), one folder per set of sources present."""
    sources = [label for label, _ in present_sources()]
    folder_name = f"general-text-v{VERSION}-{''.join(s[0].lower() for s in sources)}"
    for root in (cache, Path(tempfile.gettempdir()) / "edgec"):
        folder = root / folder_name
        train, evaluation = folder / "train.txt", folder / "eval.txt"
        try:
            if not (train.exists() and evaluation.exists()):
                folder.mkdir(parents=True, exist_ok=True)
                train_lines, eval_lines = _split(general_sentences())
                _write_atomically(evaluation, eval_lines)
                _write_atomically(train, train_lines)
            return train, evaluation, ", ".join(sources)
        except OSError:
            continue
    raise OSError(f"cannot write the general text under {cache} or the temporary folder")


def _split(sentences: Iterator[str]) -> tuple[list[str], list[str]]:
    train: list[str] = []
    evaluation: list[str] = []
    for i, sentence in enumerate(sentences):
        if i % EVAL_EVERY == EVAL_EVERY - 1 and len(evaluation) < EVAL_LINES:
            evaluation.append(sentence)
        elif len(train) < TRAIN_LINES:
            train.append(sentence)
        if len(train) >= TRAIN_LINES and len(evaluation) >= EVAL_LINES:
            break
    return train, evaluation


def _write_atomically(path: Path, lines: list[str]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)
    os.replace(tmp, path)


def with_general_text(spec: CalibrationSpec, recovering: bool, notes: list[str]) -> CalibrationSpec:
    """A recovering compile calibrated on text (--calib-text) trains on its text alternating with general text
    unless --train-text names another, and is also judged on held-out general text unless --eval-text does."""
    if not (recovering and spec.text is not None) or (spec.train_text and spec.eval_text):
        made = [p for p in (spec.train_text, spec.eval_text) if p is not None and p.parent.name.startswith("general-text-")]
        if recovering and made:     # made earlier by the host of a goal search or a fleet: say so in this report
            notes.append(f"general text ({', '.join(str(p) for p in made)}): training mixed with it and/or judged, "
                         "not gated, as a second domain")
        return spec
    try:
        train, evaluation, sources = general_text_files(CACHE)
    except OSError as exc:
        notes.append(f"general text left out ({exc})")
        return spec
    updated = dataclasses.replace(spec, train_text=spec.train_text or train, eval_text=spec.eval_text or evaluation,
                                  eval_gated=spec.eval_text is not None)
    given = ["training mixed with it (--train-text replaces it)" if spec.train_text is None else "",
             f"{EVAL_LINES} held-out sentences of it judged, not gated, as a second domain (--eval-text gates one)"
             if spec.eval_text is None else ""]
    notes.append(f"general text ({sources}): " + "; ".join(g for g in given if g))
    return updated
