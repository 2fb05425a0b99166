"""Tests for xdistill.data.readers (fixture files are built in tmp_path)."""

from __future__ import annotations

import logging

import pytest

from xdistill.data.readers import (
    ReadStats,
    Sentence,
    detect_format,
    entity_types,
    read_conll,
    read_ner_file,
    read_panx,
    repair_iob2,
)
from xdistill.errors import ConfigError, DataFormatError

LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]
LOGGER = "xdistill.data.readers"


def write(tmp_path, name: str, text: str, encoding: str = "utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


VALID_PANX = (
    "Sioux\tB-ORG\n"  # 1
    "Falls\tI-ORG\n"  # 2
    "(\tO\n"  # 3
    "\n"  # 4
    "George\tB-PER\n"  # 5
    "''\tO\n"  # 6
    "\n"  # 7
    "\n"  # 8
    "\n"  # 9
    "Key\tB-LOC\n"  # 10
    "West\tI-LOC"  # 11, no trailing newline
)


# --------------------------------------------------------------------------- PAN-X


def test_valid_panx(tmp_path):
    path = write(tmp_path, "train-xx.tsv", VALID_PANX)
    sents, stats = read_panx(path, LABELS)
    assert sents == [
        Sentence(("Sioux", "Falls", "("), ("B-ORG", "I-ORG", "O"), 1),
        Sentence(("George", "''"), ("B-PER", "O"), 5),
        Sentence(("Key", "West"), ("B-LOC", "I-LOC"), 10),
    ]
    assert stats == ReadStats(path=str(path), n_sentences=3, n_tokens=7)


def test_leading_blank_lines_and_trailing_newlines(tmp_path):
    path = write(tmp_path, "a.tsv", "\n\nA\tO\nB\tB-PER\n\n\nC\tO\n\n\n")
    sents, stats = read_panx(path)
    assert [(s.tokens, s.line) for s in sents] == [(("A", "B"), 3), (("C",), 7)]
    assert stats.n_tokens == 3


def test_whitespace_only_line_counts_as_blank(tmp_path):
    """A line of spaces takes the line-by-line path; the result must match the clean file."""
    clean, _ = read_panx(write(tmp_path, "clean.tsv", VALID_PANX))
    spaced, _ = read_panx(write(tmp_path, "spaced.tsv", VALID_PANX.replace("\n\n\n\n", "\n \n\t\n\n")))
    assert spaced == clean


def test_one_field_line(tmp_path):
    path = write(tmp_path, "a.tsv", "A\tO\nB\tO\nlonely\n")
    with pytest.raises(DataFormatError) as ei:
        read_panx(path)
    msg = str(ei.value)
    assert msg.startswith(f"{path}:3: ")
    assert "expected `token<TAB>tag`" in msg
    assert ei.value.line == 3


def test_three_fields_and_empty_token(tmp_path):
    with pytest.raises(DataFormatError, match=r":2: 3 tab-separated fields"):
        read_panx(write(tmp_path, "a.tsv", "A\tO\nB\tx\tO\n"))
    with pytest.raises(DataFormatError, match=r":1: empty token"):
        read_panx(write(tmp_path, "b.tsv", "\tO\nB\tO\n"))


def test_non_iob2_tag(tmp_path):
    for bad in ("E-PER", "PER", "S-LOC", "U-X", "B-"):
        path = write(tmp_path, "a.tsv", f"A\tO\n\nB\tB-PER\nC\t{bad}\n")
        with pytest.raises(DataFormatError) as ei:
            read_panx(path)
        assert str(ei.value).startswith(f"{path}:4: not an IOB2 tag {bad!r}")
        assert "expected" in str(ei.value)


def test_non_iob2_tag_in_conll(tmp_path):
    path = write(tmp_path, "a.conll", "A NNP O\nB NNP E-PER\n")
    with pytest.raises(DataFormatError, match=r"a\.conll:2: not an IOB2 tag 'E-PER'"):
        read_conll(path)


def test_unknown_tag_with_label_set(tmp_path):
    path = write(tmp_path, "a.tsv", "A\tO\nB\tB-MISC\n")
    assert read_panx(path)[1].n_tokens == 2  # fine without a label set
    with pytest.raises(DataFormatError) as ei:
        read_panx(path, LABELS)
    msg = str(ei.value)
    assert msg.startswith(f"{path}:2: unknown tag 'B-MISC'")
    assert "B-PER" in msg.split("expected", 1)[1]


@pytest.mark.parametrize("text", ["", "\n\n \n"])
def test_empty_file(tmp_path, text):
    path = write(tmp_path, "a.tsv", text)
    with pytest.raises(DataFormatError) as ei:
        read_panx(path)
    assert ei.value.line is None
    assert str(ei.value) == f"{path}: empty file; expected at least one `token<TAB>tag` sentence"


def test_missing_file(tmp_path):
    path = tmp_path / "nope.tsv"
    with pytest.raises(FileNotFoundError, match="nope.tsv"):
        read_ner_file(path)


# --------------------------------------------------------------------------- encodings


def test_latin1_file(tmp_path):
    path = write(tmp_path, "a.tsv", "A\tO\n\nCaf\u00e9\tB-LOC\n", encoding="latin-1")
    with pytest.raises(DataFormatError) as ei:
        read_panx(path)
    assert ei.value.line == 3
    assert str(ei.value).startswith(f"{path}:3: file is not UTF-8")
    assert "expected UTF-8 text" in str(ei.value)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le"])
def test_utf16_file(tmp_path, encoding):
    path = write(tmp_path, "a.tsv", "A\tO\nB\tO\n", encoding=encoding)
    with pytest.raises(DataFormatError, match=r"a\.tsv:1: file is not UTF-8.*expected UTF-8 text"):
        read_panx(path)


def test_bom_stripped(tmp_path):
    path = write(tmp_path, "a.tsv", "\ufeffA\tB-PER\nB\tO\n")
    sents, _ = read_panx(path)
    assert sents[0].tokens == ("A", "B")


def test_crlf_line_endings(tmp_path):
    clean, _ = read_panx(write(tmp_path, "lf.tsv", VALID_PANX))
    crlf, _ = read_panx(write(tmp_path, "crlf.tsv", VALID_PANX.replace("\n", "\r\n") + "\r\n"))
    assert crlf == clean
    conll, _ = read_conll(write(tmp_path, "a.txt", "A x O\r\nB x B-PER\r\n\r\nC x O\r\n"))
    assert conll == [Sentence(("A", "B"), ("O", "B-PER"), 1), Sentence(("C",), ("O",), 4)]


# --------------------------------------------------------------------------- repair


def test_repair_iob2():
    tags = ["I-PER", "I-PER", "O", "I-LOC", "B-ORG", "I-LOC", "I-LOC", "B-PER", "I-PER"]
    fixed, changed = repair_iob2(tags)
    assert fixed == ["B-PER", "I-PER", "O", "B-LOC", "B-ORG", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    assert changed == [0, 3, 5]
    assert tags[0] == "I-PER"  # input untouched
    assert repair_iob2([]) == ([], [])


@pytest.mark.parametrize("blank", ["\n", " \n"], ids=["fast", "line-by-line"])
def test_repair_in_file(tmp_path, caplog, blank):
    text = (
        "A\tI-PER\n"  # 1: at sentence start
        "B\tI-PER\n"  # 2
        + blank  # 3
        + "C\tO\n"  # 4
        "D\tI-LOC\n"  # 5: after O
        "E\tB-ORG\n"  # 6
        "F\tI-LOC\n"  # 7: after another type
    )
    path = write(tmp_path, "a.tsv", text)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        sents, stats = read_panx(path, LABELS)
    assert sents[0].tags == ("B-PER", "I-PER")
    assert sents[1].tags == ("O", "B-LOC", "B-ORG", "B-LOC")
    assert stats.n_repaired == 3
    assert stats.repaired_lines == [1, 5, 7]
    warnings = [r for r in caplog.records if r.name == LOGGER]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert "3" in warnings[0].getMessage() and "1, 5, 7" in warnings[0].getMessage()


def test_no_warning_without_repairs(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        _, stats = read_panx(write(tmp_path, "a.tsv", VALID_PANX))
    assert stats.n_repaired == 0 and stats.repaired_lines == []
    assert not [r for r in caplog.records if r.name == LOGGER]


def test_repaired_lines_capped_at_20(tmp_path, caplog):
    path = write(tmp_path, "a.tsv", "".join(f"w{i}\tI-PER\n\n" for i in range(30)))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        _, stats = read_panx(path)
    assert stats.n_repaired == 30
    assert stats.repaired_lines == list(range(1, 40, 2))


# --------------------------------------------------------------------------- CoNLL


def test_conll_docstart_and_four_columns(tmp_path):
    text = (
        "-DOCSTART- -X- -X- O\n"  # 1
        "\n"  # 2
        "EU NNP B-NP B-ORG\n"  # 3
        "rejects VBZ B-VP O\n"  # 4
        "-DOCSTART- -X- -X- O\n"  # 5: also ends the sentence
        "Peter NNP B-NP B-PER\n"  # 6
        "Blackburn NNP I-NP I-PER\n"  # 7
        "\n"
    )
    path = write(tmp_path, "eng.train", text)
    sents, stats = read_conll(path, LABELS)
    assert sents == [
        Sentence(("EU", "rejects"), ("B-ORG", "O"), 3),
        Sentence(("Peter", "Blackburn"), ("B-PER", "I-PER"), 6),
    ]
    assert (stats.n_docstart, stats.n_sentences, stats.n_tokens) == (2, 2, 4)


def test_conll_iob1_is_repaired(tmp_path):
    sents, stats = read_conll(write(tmp_path, "a.txt", "U.N. NNP I-ORG\nofficial NN O\n"))
    assert sents[0].tags == ("B-ORG", "O") and stats.n_repaired == 1


def test_conll_one_column(tmp_path):
    path = write(tmp_path, "a.conll", "A NNP O\n\nlonely\n")
    with pytest.raises(DataFormatError) as ei:
        read_conll(path)
    assert str(ei.value).startswith(f"{path}:3: ")
    assert "2 whitespace-separated columns" in str(ei.value)


def test_conll_only_docstart_is_empty(tmp_path):
    with pytest.raises(DataFormatError, match="empty file"):
        read_conll(write(tmp_path, "a.conll", "-DOCSTART- -X- O O\n\n"))


# --------------------------------------------------------------------------- misc


def test_detect_format_and_auto(tmp_path):
    assert detect_format("x/train-en.tsv") == "panx"
    assert detect_format("DEV.TSV") == "panx"
    assert detect_format("eng.train") == "conll"
    tsv = write(tmp_path, "a.tsv", "New York\tB-LOC\n")  # a space inside a PAN-X token
    assert read_ner_file(tsv)[0][0].tokens == ("New York",)
    conll = write(tmp_path, "a.conll", "New NNP B-LOC\n")
    assert read_ner_file(conll)[0][0].tokens == ("New",)
    with pytest.raises(DataFormatError):  # a CoNLL line read as PAN-X has 1 field
        read_ner_file(conll, format="panx")
    with pytest.raises(ConfigError, match="format"):
        read_ner_file(conll, format="iob")


def test_entity_types():
    assert entity_types(LABELS) == ["LOC", "ORG", "PER"]
    assert entity_types(["O"]) == []
    with pytest.raises(ValueError):
        entity_types(["O", "PER"])


def test_bad_tag_line_number_in_large_file(tmp_path):
    """Line numbers stay exact in the whole-file parser, across runs of blank lines."""
    lines = []
    for i in range(500):
        lines += [f"w{i}\tO", f"x{i}\tB-PER", "", "" if i % 7 == 0 else None]
    lines = [x for x in lines if x is not None]
    bad_at = lines.index("x321\tB-PER")
    lines[bad_at] = "x321\tB-PERSON"
    path = write(tmp_path, "a.tsv", "\n".join(lines))
    with pytest.raises(DataFormatError) as ei:
        read_panx(path, LABELS)
    assert ei.value.line == bad_at + 1
    sents, _ = read_panx(path)
    assert len(sents) == 500
    assert all(s.line == lines.index(f"w{i}\tO") + 1 for i, s in enumerate(sents))


# --------------------------------------------------------------------------- real data


def test_real_wikiann_files(data_dir):
    expected = {"dev-en.tsv": 10000, "train-sw.tsv": 1000}
    for name, n in expected.items():
        sents, stats = read_panx(data_dir / "wikiann" / name, LABELS)
        assert len(sents) == stats.n_sentences == n
        assert stats.n_tokens == sum(len(s.tokens) for s in sents)
        assert all(len(s.tokens) == len(s.tags) > 0 for s in sents)
        assert {t for s in sents for t in s.tags} <= set(LABELS)
        assert sents[0].line == 1
