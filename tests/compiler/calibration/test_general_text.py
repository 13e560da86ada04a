"""General text (compiler/calibration/general_text.py): sentences any machine has, split into training and
evaluation files that share none, the default second domain and training mix of a recovering text compile."""

from pathlib import Path

from edgec.compiler.calibration import general_text
from edgec.compiler.calibration.spec import CalibrationSpec


def test_docstrings_give_prose_sentences_and_skip_code(tmp_path):
    (tmp_path / "mod.py").write_text('"""Parse the configuration files of a build. Second sentence here is prose."""\n\n'
                                     'def f():\n    """x = f(1, 2) + g[3]"""\n')
    assert list(general_text.docstring_sentences(tmp_path)) == ["Parse the configuration files of a build.",
                                                               "Second sentence here is prose."]
    assert len(list(general_text.docstring_sentences())) > 1000       # the standard library, always there


def test_the_files_share_no_sentence_and_are_written_once(tmp_path, monkeypatch):
    sentences = [f"Sentence number {i} of the general text." for i in range(500)]
    monkeypatch.setattr(general_text, "general_sentences", lambda: iter(sentences))
    train, evaluation, sources = general_text.general_text_files(tmp_path)
    train_lines, eval_lines = train.read_text().splitlines(), evaluation.read_text().splitlines()
    assert len(eval_lines) == 10 and len(train_lines) == 490 and not set(train_lines) & set(eval_lines)
    assert "standard library" in sources
    monkeypatch.setattr(general_text, "general_sentences", lambda: iter(["Something else entirely here."] * 60))
    assert general_text.general_text_files(tmp_path)[0].read_text().splitlines() == train_lines   # cached


def test_a_recovering_text_compile_gets_both_defaults_and_keeps_what_is_given(tmp_path, monkeypatch):
    monkeypatch.setattr(general_text, "CACHE", tmp_path)
    monkeypatch.setattr(general_text, "general_sentences", lambda: iter([f"General sentence {i}." * 2 for i in range(200)]))
    text = CalibrationSpec(text=Path("prose.txt"), tokenizer=Path("tok"))
    notes: list[str] = []
    assert general_text.with_general_text(text, recovering=False, notes=notes) is text and not notes
    assert general_text.with_general_text(CalibrationSpec(), recovering=True, notes=notes) == CalibrationSpec()
    both = general_text.with_general_text(text, recovering=True, notes=notes)
    assert both.train_text.name == "train.txt" and both.eval_text.name == "eval.txt"
    assert "training mixed with it" in notes[0] and "second domain" in notes[0] and not both.eval_gated
    mine = CalibrationSpec(text=Path("prose.txt"), tokenizer=Path("tok"), train_text=Path("mine.txt"))
    kept = general_text.with_general_text(mine, recovering=True, notes=[])
    assert kept.train_text == Path("mine.txt") and kept.eval_text.name == "eval.txt"
    given = CalibrationSpec(text=Path("prose.txt"), tokenizer=Path("tok"), eval_text=Path("other.txt"))
    assert general_text.with_general_text(given, recovering=True, notes=[]).eval_gated     # the user's gates


def test_an_unwritable_cache_falls_back_to_the_temporary_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(general_text, "general_sentences", lambda: iter([f"Sentence {i} of it." for i in range(100)]))
    monkeypatch.setattr(general_text.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    train, _, _ = general_text.general_text_files(blocked)
    assert train.is_file() and str(train).startswith(str(tmp_path / "tmp"))
