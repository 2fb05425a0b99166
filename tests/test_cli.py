"""The command line: exit status 2 and one ``error:`` line for bad input; evaluate and predict on a tiny student."""

from __future__ import annotations

import io
import json
import re

import pytest

import tiny_models as tm
from xdistill.cli import main
from xdistill.utils import peak_rss_mib

EVAL_SENTENCES = [
    (["Anna", "visited", "Bob"], ["B-PER", "O", "B-PER"]),
    (["Carl", "Berlin"], ["B-PER", "B-LOC"]),
]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with tm.single_thread():
        yield


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory, tok):
    """A saved student that tags every word B-PER."""
    return tm.make_student_dir(tmp_path_factory.mktemp("student") / "student", tok, max_length=16,
                               constant_label="B-PER")


@pytest.fixture(scope="module")
def span_student_dir(tmp_path_factory, tok):
    """A saved student that tags every word I-LOC (one entity over the whole text)."""
    return tm.make_student_dir(tmp_path_factory.mktemp("student") / "student", tok, max_length=16,
                               constant_label="I-LOC")


def error_line(capsys) -> str:
    """The single ``error:`` line on stderr (asserting there is exactly one, and no traceback)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


# --------------------------------------------------------------------------- errors: exit status 2


def test_no_command_prints_usage_and_returns_0(capsys):
    assert main([]) == 0
    assert "usage" in capsys.readouterr().out


def test_unknown_command(capsys):
    assert main(["distil"]) == 2
    out, err = capsys.readouterr()
    assert err.strip() == "error: unknown command 'distil'"
    assert "ner" in out and "evaluate" in out and "predict" in out


def test_unknown_preset(capsys):
    assert main(["ner", "--preset", "nope"]) == 2
    line = error_line(capsys)
    assert "--preset" in line and "'nope'" in line
    assert "smoke" in line


@pytest.mark.parametrize("option", ["--labeled-per-lang", "--labeled_per_lang"])
def test_negative_labeled_budget(capsys, tmp_path, option):
    """HfArgumentParser accepts the dashed spelling as well as the field name."""
    assert main(["ner", option, "-5", "--data-dir", str(tmp_path)]) == 2
    line = error_line(capsys)
    assert "--labeled-per-lang" in line and "-5" in line


def test_source_local_without_data_dir(capsys, monkeypatch):
    monkeypatch.delenv("XDISTILL_DATA_DIR", raising=False)
    assert main(["ner", "--source", "local"]) == 2
    line = error_line(capsys)
    assert "--source local" in line and "--data-dir" in line


def test_missing_data_dir(capsys, tmp_path):
    assert main(["ner", "--data-dir", str(tmp_path / "nowhere")]) == 2
    assert "--data-dir" in error_line(capsys)


def test_unknown_ner_option(capsys):
    assert main(["ner", "--preset", "smoke", "--no-such-option", "1"]) == 2
    assert "--no-such-option" in error_line(capsys)


def test_invalid_option_combination(capsys, monkeypatch):
    monkeypatch.delenv("XDISTILL_DATA_DIR", raising=False)
    assert main(["ner", "--labeled-per-lang", "500", "--teacher-labeled-per-lang", "100"]) == 2
    assert "--teacher-labeled-per-lang" in error_line(capsys)


def test_evaluate_on_an_empty_model_dir(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    assert main(["evaluate", "--model", str(tmp_path / "empty"), "--data", "x"]) == 2
    line = error_line(capsys)
    assert "--model" in line and str(tmp_path / "empty") in line


def test_evaluate_on_a_missing_model_dir(capsys, tmp_path):
    assert main(["evaluate", "--model", str(tmp_path / "absent"), "--data", "x"]) == 2
    assert "--model" in error_line(capsys)


# --------------------------------------------------------------------------- evaluate


def test_evaluate_prints_scores_as_json(capsys, tmp_path, student_dir):
    data = tm.write_panx(tmp_path / "dev-xx.tsv", EVAL_SENTENCES)
    assert main(["evaluate", "--model", str(student_dir), "--data", str(data)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model_kind"] == "student"
    assert result["model"] == str(student_dir)
    assert result["data"] == str(data)
    assert result["sentences"] == 2 and result["tokens"] == 5 and result["repaired_tags"] == 0
    # every word predicted B-PER: 5 predicted PER entities, 3 of them right; 4 gold entities
    assert result["precision"] == pytest.approx(60.0)
    assert result["recall"] == pytest.approx(75.0)
    assert result["f1"] == pytest.approx(200 * 0.6 * 0.75 / 1.35)
    assert result["per_type"]["PER"] == pytest.approx({"f1": 75.0, "precision": 60.0, "recall": 100.0, "support": 3})
    assert result["per_type"]["LOC"] == pytest.approx({"f1": 0.0, "precision": 0.0, "recall": 0.0, "support": 1})
    assert result["n"] == 2


def test_evaluate_conll_format(capsys, tmp_path, student_dir):
    data = tmp_path / "dev.conll"
    data.write_text("-DOCSTART- O\n\nAnna X B-PER\nvisited X O\nBob X B-PER\n\nCarl X B-PER\nBerlin X B-LOC\n",
                    encoding="utf-8")
    assert main(["evaluate", "--model", str(student_dir), "--data", str(data), "--format", "conll"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["sentences"] == 2
    assert result["f1"] == pytest.approx(200 * 0.6 * 0.75 / 1.35)


def test_evaluate_malformed_file_names_file_and_line(capsys, tmp_path, student_dir):
    bad = tmp_path / "bad.tsv"
    bad.write_text("Anna\tB-PER\nvisited\tO\textra\n", encoding="utf-8")
    assert main(["evaluate", "--model", str(student_dir), "--data", str(bad)]) == 2
    line = error_line(capsys)
    assert f"{bad}:2" in line


def test_evaluate_unknown_tag_names_file_and_line(capsys, tmp_path, student_dir):
    bad = tm.write_panx(tmp_path / "misc.tsv", [(["Anna", "Bob"], ["B-PER", "O"]), (["Paris"], ["B-MISC"])])
    assert main(["evaluate", "--model", str(student_dir), "--data", str(bad)]) == 2
    line = error_line(capsys)
    assert f"{bad}:4" in line and "B-MISC" in line


def test_evaluate_missing_data_file(capsys, tmp_path, student_dir):
    assert main(["evaluate", "--model", str(student_dir), "--data", str(tmp_path / "absent.tsv")]) == 2
    assert "absent.tsv" in error_line(capsys)


# --------------------------------------------------------------------------- predict


def predictions(capsys) -> list[dict]:
    out = capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines()]


def test_predict_text_prints_one_json_line_per_text(capsys, student_dir):
    texts = ["  Anna visited Zürich, Schweiz.", "Bob", "qxz wq"]
    assert main(["predict", "--model", str(student_dir)] + [a for t in texts for a in ("--text", t)]) == 0
    rows = predictions(capsys)
    assert [r["text"] for r in rows] == texts
    first = rows[0]
    assert [e["text"] for e in first["entities"]] == ["Anna", "visited", "Zürich", ",", "Schweiz", "."]
    for r in rows:
        assert r["entities"], r
        for e in r["entities"]:
            assert set(e) == {"text", "type", "start", "end"}
            assert e["type"] == "PER"
            assert e["text"] == r["text"][e["start"]:e["end"]]
    assert first["entities"][0]["start"] == 2  # character offsets into the raw text, leading spaces included
    assert rows[2]["entities"][0]["text"] == "qxz"  # a word made of several subwords is one word


def test_predict_i_tags_make_one_entity_over_the_words(capsys, span_student_dir):
    text = " Anna  visited Zürich "
    assert main(["predict", "--model", str(span_student_dir), "--text", text]) == 0
    [row] = predictions(capsys)
    assert row["entities"] == [{"text": "Anna  visited Zürich", "type": "LOC", "start": 1, "end": 21}]


def test_predict_empty_text(capsys, student_dir):
    assert main(["predict", "--model", str(student_dir), "--text", "", "--text", "Anna"]) == 0
    rows = predictions(capsys)
    assert rows[0] == {"text": "", "words": [], "tags": [], "entities": []}
    assert [e["text"] for e in rows[1]["entities"]] == ["Anna"]
    assert rows[1]["words"] == ["Anna"] and rows[1]["tags"] == ["B-PER"]


def test_predict_reads_lines_from_stdin(capsys, monkeypatch, student_dir):
    monkeypatch.setattr("sys.stdin", io.StringIO("Anna visited Berlin\nBob\nCarl met Anna\n"))
    assert main(["predict", "--model", str(student_dir), "--batch-lines", "2"]) == 0
    rows = predictions(capsys)
    assert [r["text"] for r in rows] == ["Anna visited Berlin", "Bob", "Carl met Anna"]
    assert [len(r["entities"]) for r in rows] == [3, 1, 3]


def test_predict_streams_chunks_before_a_bad_line(capsys, monkeypatch, student_dir):
    """Chunks already predicted are written before the error that names the bad line; the log
    line at the end gives the throughput."""
    monkeypatch.setattr("sys.stdin", io.BytesIO(b"Anna\nBob met Carl\n\nBerlin\nbad \xff\n"))
    assert main(["predict", "--model", str(student_dir), "--batch-lines", "2", "--batch-size", "1"]) == 2
    out, err = capsys.readouterr()
    assert [json.loads(x)["text"] for x in out.splitlines()] == ["Anna", "Bob met Carl", "", "Berlin"]
    assert "stdin:5" in err and "not UTF-8" in err and "Traceback" not in err


def test_predict_logs_words_per_second(capsys, monkeypatch, student_dir):
    monkeypatch.setattr("sys.stdin", io.BytesIO(b"Anna visited Berlin\n\nBob\n"))
    assert main(["predict", "--model", str(student_dir), "--batch-size", "2"]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 3
    assert "3 lines, 4 words in" in err and "words/s (torch-fp32, batch size 2" in err
    peak = re.search(r"peak RSS ([0-9.]+) MiB", err)
    assert peak and 0 < float(peak.group(1)) <= peak_rss_mib() + 0.05  # logged to 0.1 MiB


def test_predict_long_text_is_split_into_windows(capsys, student_dir):
    """max_length 16 in the student's config: a longer sentence still gets a tag for every word."""
    text = " ".join(["Anna", "visited", "Berlin"] * 10)
    assert main(["predict", "--model", str(student_dir), "--text", text]) == 0
    [row] = predictions(capsys)
    assert len(row["entities"]) == 30
    assert all(e["text"] == text[e["start"]:e["end"]] for e in row["entities"])


def test_predict_on_an_empty_model_dir(capsys, tmp_path):
    assert main(["predict", "--model", str(tmp_path), "--text", "Anna"]) == 2
    assert "--model" in error_line(capsys)


# --------------------------------------------------------------------------- bad input found in review


def test_evaluate_data_is_a_directory(capsys, tmp_path, student_dir):
    assert main(["evaluate", "--model", str(student_dir), "--data", str(tmp_path)]) == 2
    assert str(tmp_path) in error_line(capsys)


@pytest.mark.parametrize("max_length", ["2", "1"])
def test_predict_rejects_a_too_small_max_length(capsys, student_dir, max_length):
    assert main(["predict", "--model", str(student_dir), "--max-length", max_length, "--text", "Anna qxz"]) == 2
    assert "--max-length" in error_line(capsys)


def test_command_and_task_type_must_match(capsys, tmp_path):
    assert main(["classify", "--task", "wikiann", "--data-dir", str(tmp_path), "--output-dir", str(tmp_path / "o")]) == 2
    msg = error_line(capsys)
    assert "token-classification" in msg and "`ner`" in msg
    assert main(["ner", "--task", "imdb", "--data-dir", str(tmp_path), "--output-dir", str(tmp_path / "o")]) == 2
    msg = error_line(capsys)
    assert "sequence-classification" in msg and "`classify`" in msg
