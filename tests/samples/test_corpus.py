"""The offline training corpus of the recovery benchmark, read from Debian's data files (fakes here)."""

from edgec.samples import corpus
from edgec.samples.corpus import fortune_sentences, wordnet_examples


def test_fortunes_give_prose_sentences_without_attributions_pictures_or_index_files(tmp_path):
    (tmp_path / "people").write_text(
        "A friend is a present you give yourself.  The rest of the line is\nanother sentence here!\n"
        "\t\t-- Robert Louis Stevenson\n%\nShort.\n%\nWhat is 2+2 == 4 ; {x} [y] <z> ok?\n")
    (tmp_path / "people.dat").write_bytes(b"\x00\x01binary index")
    (tmp_path / "ascii-art").write_text("A picture drawn with letters, believe it or not.\n")
    assert list(fortune_sentences(tmp_path)) == [
        "A friend is a present you give yourself.", "The rest of the line is another sentence here!"]


def test_wordnet_examples_are_the_quoted_usages(tmp_path):
    (tmp_path / "data.noun").write_text(
        "  1 This software and database is being provided | licence header\n"
        '00001740 03 n 01 entity 0 | that which is perceived; "the oceans are teeming with life"; "x"\n')
    for pos in ("verb", "adj", "adv"):
        (tmp_path / f"data.{pos}").write_text("")
    assert list(wordnet_examples(tmp_path)) == ["the oceans are teeming with life"]


def test_the_written_corpus_puts_the_given_sentences_first_and_never_repeats_them(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "ensure_corpus", lambda: None)
    monkeypatch.setattr(corpus, "sentences", lambda: iter(["b held out", "c", "d", "e"]))
    out = tmp_path / "corpus.txt"
    assert corpus.write_corpus(out, limit=2, first=["a", "b held out"]) == 2
    assert out.read_text().splitlines() == ["a", "b held out", "c", "d"]
    assert corpus.write_corpus(out) == 4 and out.read_text().splitlines() == ["b held out", "c", "d", "e"]
