"""Text classification data: CSV / JSON-lines files declared by a task file, their errors, balanced
sampling, the splits of ``build_text_data``, task files for new data sets and malformed task files."""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
from pathlib import Path

import pytest

from xdistill.adapters import make_adapter
from xdistill.config import TextDataArguments
from xdistill.data.text import balanced_sample, build_text_data, read_text_file, to_dataset
from xdistill.errors import ConfigError, DataFormatError
from xdistill.adapters import load_task


@pytest.fixture(scope="module")
def imdb():
    return load_task("imdb")


def csv_text(rows, header=("text", "label")) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(text.encode("utf-8"))
    else:
        path.write_bytes(text.encode("utf-8"))
    return path


def format_error(path, spec, labeled=True) -> DataFormatError:
    with pytest.raises(DataFormatError) as e:
        read_text_file(path, spec, labeled=labeled)
    return e.value


# --------------------------------------------------------------------------- reading files


@pytest.mark.parametrize("name", ["train.csv", "train.csv.gz"])
def test_read_csv_maps_labels_and_cleans(tmp_path, imdb, name):
    text = csv_text([["A fine<br /><br />film.", 1], ["  dull \n and\tslow ", 0], ["plain text", "1"]])
    p = write(tmp_path / name, text)
    pairs, st = read_text_file(p, imdb, labeled=True)
    assert pairs == [("A fine film.", "pos"), ("dull and slow", "neg"), ("plain text", "pos")]
    assert st.rows == 3 and st.cleaned == 2 and st.skipped_empty == 0
    assert st.label_counts == {"pos": 2, "neg": 1}
    assert st.path == str(p)


def test_read_csv_extra_columns_and_column_order(tmp_path, imdb):
    p = write(tmp_path / "x.csv", "label,rating,text,file\n0,2,bad,a.txt\n1,9,good,b.txt\n")
    pairs, _ = read_text_file(p, imdb, labeled=True)
    assert pairs == [("bad", "neg"), ("good", "pos")]


def test_read_unlabeled_csv_needs_only_the_text_column_and_skips_empty(tmp_path, imdb):
    p = write(tmp_path / "unsup.csv", csv_text([["one"], [""], ["   "], ["<br />"], ["two"]], header=("text",)))
    pairs, st = read_text_file(p, imdb, labeled=False)
    assert pairs == [("one", ""), ("two", "")]
    assert st.rows == 2 and st.skipped_empty == 3
    assert st.label_counts == {}


def test_read_unlabeled_ignores_labels(tmp_path, imdb):
    p = write(tmp_path / "u.csv", csv_text([["one", 7], ["two", ""]]))
    pairs, _ = read_text_file(p, imdb, labeled=False)
    assert pairs == [("one", ""), ("two", "")]


def test_read_jsonl(tmp_path, imdb):
    lines = ['{"text": "good<br />one", "label": 1}', "", '{"text": "bad", "label": "0", "extra": [1, 2]}',
             '{"text": "ok", "label": "pos"}']
    for name in ("a.jsonl", "a.jsonl.gz"):
        p = write(tmp_path / name, "\n".join(lines) + "\n")
        pairs, st = read_text_file(p, jsonl_spec(imdb), labeled=True)
        assert pairs == [("good one", "pos"), ("bad", "neg"), ("ok", "pos")]
        assert st.rows == 3 and st.cleaned == 1


def jsonl_spec(imdb):
    from dataclasses import replace
    return replace(imdb, local={**imdb.local, "format": "jsonl"})


# --------------------------------------------------------------------------- read errors


def test_missing_file(tmp_path, imdb):
    with pytest.raises(FileNotFoundError):
        read_text_file(tmp_path / "nope.csv", imdb, labeled=True)


def test_missing_column_names_file_line_and_expectation(tmp_path, imdb):
    p = write(tmp_path / "a.csv", "text,stars\ngood,1\n")
    e = format_error(p, imdb)
    assert str(e).startswith(f"{p}:1: ")
    assert "missing column(s) label" in str(e) and "header has text, stars" in str(e)
    assert "expected a header with columns text, label" in str(e)
    assert e.line == 1
    # an unlabeled read of the same file is fine: only the text column is needed
    assert read_text_file(p, imdb, labeled=False)[0] == [("good", "")]


def test_empty_csv_file(tmp_path, imdb):
    p = write(tmp_path / "a.csv", "")
    e = format_error(p, imdb)
    assert f"{p}:1:" in str(e) and "header has nothing" in str(e)


def test_label_outside_set_line(tmp_path, imdb):
    p = write(tmp_path / "a.csv", "text,label\ngood,1\nbad,0\nodd,2\n")
    e = format_error(p, imdb)
    assert e.line == 4
    assert str(e) == f"{p}:4: label '2' is outside the declared set; expected one of 0, 1"


def test_label_outside_set_after_multiline_field_reports_the_record_start(tmp_path, imdb):
    # the quoted field of record 1 spans physical lines 2-4; record 2 is line 5; the bad record starts on line 6
    text = 'text,label\n"first line\nsecond line\nthird line",1\nfine,0\n"bad\nrecord",5\n'
    p = write(tmp_path / "a.csv", text)
    e = format_error(p, imdb)
    assert e.line == 6, str(e)
    assert str(e).startswith(f"{p}:6: label '5'")


def test_label_outside_set_after_blank_line_reports_the_record_line(tmp_path, imdb):
    p = write(tmp_path / "a.csv", "text,label\ngood,1\n\nbad,7\n")
    e = format_error(p, imdb)
    assert e.line == 4, str(e)


def test_empty_text_in_labeled_file(tmp_path, imdb):
    p = write(tmp_path / "a.csv", 'text,label\ngood,1\n"",0\n')
    e = format_error(p, imdb)
    assert e.line == 3
    assert str(e) == f"{p}:3: empty text in column 'text'; expected a non-empty text"
    # a text that is empty only after cleaning too
    p2 = write(tmp_path / "b.csv", 'text,label\ngood,1\n"<br /> ",0\n')
    assert format_error(p2, imdb).line == 3


def test_non_utf8_bytes(tmp_path, imdb):
    p = tmp_path / "a.csv"
    p.write_bytes(b"text,label\ngood,1\nbad \xff\xfe here,0\n")
    e = format_error(p, imdb)
    assert str(e).startswith(f"{p}:")
    assert "not UTF-8 text" in str(e) and "expected UTF-8 text" in str(e)


def test_non_utf8_bytes_reports_their_line(tmp_path, imdb):
    p = tmp_path / "a.csv"
    p.write_bytes(b"text,label\ngood,1\nfine,0\nok,1\nbad \xff here,0\n")
    assert format_error(p, imdb).line == 5


def test_jsonl_malformed_line(tmp_path, imdb):
    p = write(tmp_path / "a.jsonl", '{"text": "good", "label": 1}\n\n{"text": "bad", "label": 0\n')
    e = format_error(p, jsonl_spec(imdb))
    assert e.line == 3
    assert str(e).startswith(f"{p}:3: not valid JSON")
    assert str(e).endswith("expected one JSON object per line")


@pytest.mark.parametrize("value, kind", [("[1, 2]", "list"), ('"text"', "str"), ("3", "int"), ("null", "NoneType")])
def test_jsonl_line_not_an_object(tmp_path, imdb, value, kind):
    p = write(tmp_path / "a.jsonl", '{"text": "good", "label": 1}\n' + value + "\n")
    e = format_error(p, jsonl_spec(imdb))
    assert str(e) == f"{p}:2: a JSON {kind}; expected one JSON object per line"


def test_jsonl_missing_key_and_bad_label(tmp_path, imdb):
    p = write(tmp_path / "a.jsonl", '{"text": "good", "label": 1}\n{"text": "no label"}\n')
    e = format_error(p, jsonl_spec(imdb))
    assert str(e) == f"{p}:2: missing key(s) label; expected keys text, label"
    p = write(tmp_path / "b.jsonl", '{"text": "good", "label": 1}\n{"text": "x", "label": "maybe"}\n')
    e = format_error(p, jsonl_spec(imdb))
    assert e.line == 2 and "label 'maybe' is outside the declared set" in str(e)
    p = write(tmp_path / "c.jsonl", '{"text": "good", "label": 1}\n{"text": "", "label": 0}\n')
    assert format_error(p, jsonl_spec(imdb)).line == 2


def test_unlabeled_jsonl_skips_empty_texts(tmp_path, imdb):
    p = write(tmp_path / "u.jsonl", '{"text": "a"}\n{"text": ""}\n{"text": null}\n{"text": "b"}\n')
    pairs, st = read_text_file(p, jsonl_spec(imdb), labeled=False)
    assert pairs == [("a", ""), ("b", "")] and st.skipped_empty == 2


def test_no_usable_rows(tmp_path, imdb):
    p = write(tmp_path / "u.csv", 'text\n""\n')
    e = format_error(p, imdb, labeled=False)
    assert str(e).startswith(f"{p}: no usable rows")
    p = write(tmp_path / "h.csv", "text,label\n")
    assert "no usable rows" in str(format_error(p, imdb))


# --------------------------------------------------------------------------- balanced_sample


def pairs_by_label(sizes: dict) -> list:
    out = []
    for lab, n in sizes.items():
        out += [(f"{lab} {i}", lab) for i in range(n)]
    random.Random(0).shuffle(out)
    return out


def test_balanced_sample_balanced_and_seeded():
    pairs = pairs_by_label({"a": 10, "b": 6, "c": 2})
    idx = balanced_sample(pairs, 4, random.Random(1))
    assert idx == sorted(idx) and len(set(idx)) == len(idx)
    counts = {}
    for i in idx:
        counts[pairs[i][1]] = counts.get(pairs[i][1], 0) + 1
    assert counts == {"a": 4, "b": 4, "c": 2}
    assert balanced_sample(pairs, 4, random.Random(1)) == idx
    assert any(balanced_sample(pairs, 4, random.Random(s)) != idx for s in range(2, 8))
    assert balanced_sample(pairs, -1, random.Random(1)) == list(range(len(pairs)))
    assert balanced_sample(pairs, 0, random.Random(1)) == []


def test_balanced_sample_respects_exclude():
    pairs = pairs_by_label({"a": 8, "b": 8})
    first = set(balanced_sample(pairs, 3, random.Random(1)))
    second = balanced_sample(pairs, 3, random.Random(2), exclude=first)
    assert not first & set(second)
    assert sorted(pairs[i][1] for i in second) == ["a"] * 3 + ["b"] * 3
    rest = balanced_sample(pairs, -1, random.Random(3), exclude=first)
    assert set(rest) == set(range(16)) - first


# --------------------------------------------------------------------------- build_text_data


TRAIN = {"neg": 30, "pos": 24}


def make_imdb_dir(root: Path, unsup: bool = True) -> Path:
    train = [[f"train {lab} review number {i}<br />end", {"neg": 0, "pos": 1}[lab]]
             for lab, n in TRAIN.items() for i in range(n)]
    random.Random(5).shuffle(train)
    test = [[f"test review {i}", i % 2] for i in range(20)]
    write(root / "imdb" / "train.csv.gz", csv_text(train))
    write(root / "imdb" / "test.csv.gz", csv_text(test))
    if unsup:
        unl = [[f"unlabeled text {i}", -1] for i in range(12)] + [["", -1]]
        write(root / "imdb" / "unsup.csv.gz", csv_text(unl))
    return root


def text_args(root, **kw):
    base = dict(data_dir=str(root), source="local", labeled_per_class=5, teacher_labeled_per_class=10,
                validation_per_class=4, transfer_limit=-1, unlabeled_limit=-1, eval_limit=7, seed=3)
    base.update(kw)
    return TextDataArguments(**base)


def label_counts(d) -> dict:
    out = {}
    for lab in d["label"]:
        out[lab] = out.get(lab, 0) + 1
    return out


def test_build_text_data_splits(tmp_path, imdb):
    root = make_imdb_dir(tmp_path)
    data = build_text_data(imdb, text_args(root))
    assert list(data.groups) == ["imdb"] and data.missing == []
    g = data.groups["imdb"]
    val, lab, teach, tr, ev = (list(zip(x["text"], x["label"])) for x in
                               (g.validation, g.labeled, g.teacher_labeled, g.transfer, g.evaluation))
    assert label_counts(g.validation) == {"neg": 4, "pos": 4}
    assert label_counts(g.labeled) == {"neg": 5, "pos": 5}
    assert label_counts(g.teacher_labeled) == {"neg": 10, "pos": 10}
    assert set(lab) <= set(teach)
    assert not set(teach) & set(val)
    val_t, lab_t, tr_t = {t for t, _ in val}, {t for t, _ in lab}, {t for t, _ in tr}
    assert not val_t & lab_t and not val_t & tr_t and not lab_t & tr_t
    assert all(t.endswith(" end") for t in val_t | lab_t)  # cleaned
    # transfer: every train text outside validation and the budget (labels dropped) plus the unlabeled texts
    all_train = {f"train {lab_} review number {i} end" for lab_, n in TRAIN.items() for i in range(n)}
    unl = {f"unlabeled text {i}" for i in range(12)}
    assert tr_t == (all_train - val_t - lab_t) | unl
    assert len(tr) == len(tr_t)
    assert {lab_ for _, lab_ in tr} == {""}
    assert len(ev) == 7 and {t for t, _ in ev} <= {f"test review {i}" for i in range(20)}
    assert all(lab_ == ("pos" if int(t.split()[-1]) % 2 else "neg") for t, lab_ in ev)
    c = g.counts
    assert c["train_texts"] == 54 and c["validation"] == 8 and c["labeled"] == 10 and c["teacher_labeled"] == 20
    assert c["transfer_from_train"] == 54 - 8 - 10 and c["transfer_unlabeled"] == 12
    assert c["transfer"] == 36 + 12 == len(tr)
    assert c["eval_texts"] == 20 and c["n_eval"] == 7
    assert c["files"]["unlabeled"]["skipped_empty"] == 1 and c["files"]["train"]["cleaned"] == 54


def test_no_other_split_repeats_a_validation_text(tmp_path, imdb):
    """Every train review twice, and an unlabeled text equal to a validation review: the copies of the
    validation reviews are in no other split, counted; the labeled budget is still balanced and full."""
    train = [[f"review {lab} {i}", y] for lab, y in (("neg", 0), ("pos", 1)) for i in range(15)] * 2
    random.Random(2).shuffle(train)
    write(tmp_path / "imdb" / "train.csv.gz", csv_text(train))
    write(tmp_path / "imdb" / "test.csv.gz", csv_text([[f"test review {i}", i % 2] for i in range(20)]))
    write(tmp_path / "imdb" / "unsup.csv.gz", csv_text([["unlabeled text", -1]]))
    first = build_text_data(imdb, text_args(tmp_path)).groups["imdb"]
    val = list(first.validation["text"])
    dups = 2 * len(set(val)) - len(val)  # each text has 2 rows; both may be in validation
    assert len(val) == 8 and dups > 0 and first.counts["validation_text_elsewhere"] == {"train": dups, "unlabeled": 0}
    write(tmp_path / "imdb" / "unsup.csv.gz", csv_text([["unlabeled text", -1], [val[0], -1]]))
    g = build_text_data(imdb, text_args(tmp_path)).groups["imdb"]
    assert list(g.validation["text"]) == val
    assert label_counts(g.labeled) == {"neg": 5, "pos": 5} and len(g.teacher_labeled) == 20
    for split in (g.labeled, g.teacher_labeled, g.transfer):
        assert not set(val) & set(split["text"])
    assert g.counts["validation_text_elsewhere"] == {"train": dups, "unlabeled": 1}
    assert g.counts["transfer_unlabeled"] == 1 and "unlabeled text" in g.transfer["text"]
    assert g.counts["transfer_from_train"] == 60 - 8 - dups - 10
    assert g.counts["eval_text_in_train"] == 0 and g.counts["n_eval"] == 7 and g.evaluation_in_train == []
    write(tmp_path / "imdb" / "test.csv.gz", csv_text([[f"review neg {i}", 0] for i in range(3)] + [["other", 1]] * 4))
    h = build_text_data(imdb, text_args(tmp_path)).groups["imdb"]
    assert h.counts["eval_text_in_train"] == 3 and h.counts["n_eval"] == 7  # kept: the data set's own split
    ev = list(h.evaluation["text"])
    assert h.evaluation_in_train == [i for i, t in enumerate(ev) if t.startswith("review neg")]


def test_build_text_data_is_seeded(tmp_path, imdb):
    root = make_imdb_dir(tmp_path)
    a = build_text_data(imdb, text_args(root)).groups["imdb"]
    b = build_text_data(imdb, text_args(root)).groups["imdb"]
    for split in ("validation", "labeled", "teacher_labeled", "transfer", "evaluation"):
        assert list(getattr(a, split)["text"]) == list(getattr(b, split)["text"])
    c = build_text_data(imdb, text_args(root, seed=4)).groups["imdb"]
    assert list(c.labeled["text"]) != list(a.labeled["text"])


def test_build_text_data_limits(tmp_path, imdb):
    root = make_imdb_dir(tmp_path)
    g = build_text_data(imdb, text_args(root, transfer_limit=5, unlabeled_limit=3, eval_limit=-1,
                                        teacher_labeled_per_class=-1)).groups["imdb"]
    tr = list(g.transfer["text"])
    assert len(tr) == 8
    assert sum(t.startswith("unlabeled") for t in tr) == 3 and sum(t.startswith("train") for t in tr) == 5
    assert len(g.evaluation) == 20
    # teacher: all of train minus validation
    assert len(g.teacher_labeled) == 54 - 8
    assert not set(g.teacher_labeled["text"]) & set(g.validation["text"])
    assert set(g.labeled["text"]) <= set(g.teacher_labeled["text"])


def test_build_text_data_teacher_budget_larger_than_a_class(tmp_path, imdb):
    root = make_imdb_dir(tmp_path)
    g = build_text_data(imdb, text_args(root, teacher_labeled_per_class=28)).groups["imdb"]
    # neg has 30 - 4 validation = 26 left, pos 24 - 4 = 20: all of them, at most 28 per class
    assert label_counts(g.teacher_labeled) == {"neg": 26, "pos": 20}


def test_build_text_data_without_unlabeled_file(tmp_path, imdb):
    root = make_imdb_dir(tmp_path, unsup=False)
    with pytest.raises(FileNotFoundError):
        build_text_data(imdb, text_args(root))
    g = build_text_data(imdb, text_args(root, unlabeled_limit=0)).groups["imdb"]
    assert g.counts["transfer_unlabeled"] == 0 and len(g.transfer) == 54 - 8 - 10


def test_build_text_data_needs_train_and_eval(tmp_path, imdb):
    from dataclasses import replace

    spec = replace(imdb, local={k: v for k, v in imdb.local.items() if k != "eval"})
    with pytest.raises(ConfigError, match="'eval'"):
        build_text_data(spec, text_args(make_imdb_dir(tmp_path)))


# --------------------------------------------------------------------------- a new data set needs only a task file

TOPICS_TOML = """
name = "topics"
type = "sequence-classification"
description = "news snippets by topic"
labels = ["sports", "politics", "science"]
metric = "accuracy"

[local]
format = "jsonl"
train = "topics/train.jsonl"
eval = "topics/test.jsonl.gz"
unlabeled = false
text_column = "body"
label_column = "category"

[cleaning]
replace = [["&amp;", "&"], ["\\\\n", " "]]

"""

TOPICS = {"sports": ["the match ended late", "a goal in extra time", "the team won the cup", "a record lap"],
          "politics": ["the vote was close", "a new law on taxes", "the minister resigned", "talks &amp; deals"],
          "science": ["a new comet was seen", "cells divide fast", "the probe reached mars", "a fossil\\nfound"]}


def make_topics(root: Path) -> Path:
    task = root / "topics.toml"
    task.write_text(TOPICS_TOML, encoding="utf-8")
    train = [json.dumps({"body": t, "category": c, "id": i}) for c, ts in TOPICS.items() for i, t in enumerate(ts)]
    write(root / "data" / "topics" / "train.jsonl", "\n".join(train) + "\n")
    test = [json.dumps({"body": f"{c} story {i}", "category": c}) for c in TOPICS for i in range(2)]
    write(root / "data" / "topics" / "test.jsonl.gz", "\n".join(test) + "\n")
    return task


def test_new_task_file_reads_its_data(tmp_path):
    spec = load_task(make_topics(tmp_path))
    assert spec.name == "topics" and spec.labels == ("sports", "politics", "science")
    assert spec.path == str(tmp_path / "topics.toml")
    pairs, st = read_text_file(tmp_path / "data" / spec.local["train"], spec, labeled=True)
    assert len(pairs) == 12 and st.label_counts == {"sports": 4, "politics": 4, "science": 4}
    assert ("talks & deals", "politics") in pairs and ("a fossil found", "science") in pairs
    assert st.cleaned == 2
    with pytest.raises(DataFormatError, match="outside the declared set; expected one of sports, politics, science"):
        bad = write(tmp_path / "bad.jsonl", json.dumps({"body": "x", "category": "weather"}) + "\n")
        read_text_file(bad, spec, labeled=True)


def test_new_task_builds_splits_and_encodes(tmp_path):
    from tiny_models import make_tokenizer

    spec = load_task(make_topics(tmp_path))
    args = TextDataArguments(data_dir=str(tmp_path / "data"), source="local", labeled_per_class=2,
                             teacher_labeled_per_class=3, validation_per_class=1, seed=0)
    g = build_text_data(spec, args).groups["topics"]
    assert label_counts(g.labeled) == {"sports": 2, "politics": 2, "science": 2}
    assert label_counts(g.teacher_labeled) == {"sports": 3, "politics": 3, "science": 3}
    assert len(g.transfer) == 12 - 3 - 6 and g.counts["transfer_unlabeled"] == 0
    assert len(g.evaluation) == 6
    adapter = make_adapter(spec)
    assert adapter.num_labels == 3
    enc = adapter.encode(g.labeled, make_tokenizer(tmp_path / "tok"), 16)
    assert sorted(x[0] for x in enc.labels) == [0, 0, 1, 1, 2, 2]
    ds, counts = adapter.read_labeled_file(tmp_path / "data" / "topics" / "test.jsonl.gz", "auto")
    assert counts["texts"] == 6 and list(ds["label"])[:2] == ["sports", "sports"]


# --------------------------------------------------------------------------- malformed task files

BASE_TOML = """name = "t"
type = "sequence-classification"
labels = ["a", "b"]
metric = "accuracy"
"""


@pytest.mark.parametrize("extra, key", [
    ('foo = 1\n', "'foo'"),
    ('[local]\ntextcol = "x"\n', "'local.textcol'"),
    ('[local]\nlabel_values = { "0" = 1 }\n', "'local.label_values.0' must be str"),
    ('[local]\nlabel_values = "0=a"\n', "'local.label_values' must be dict"),
    ('[local]\nformat = "panx"\n', "'local.format' must be one of csv, jsonl"),
    ('[local]\nunlabeled = 3\n', "'local.unlabeled' must be bool or str"),
    ('[cleaning]\nreplace = [["<br />"]]\n', "'cleaning.replace'"),
    ('[cleaning]\nreplace = [["", " "]]\n', "'cleaning.replace'"),
    ('[cleaning]\nreplace = ["<br />"]\n', "'cleaning.replace'"),
    ('[cleaning]\nreplace = [["<br />", 1]]\n', "'cleaning.replace'"),
    ('[cleaning]\nreplace = "x"\n', "'cleaning.replace' must be list"),
    ('[defaults]\nmax_length = 64\n', "'defaults' is not supported"),
    ('[local]\nlabel_values = { "0" = "a", "1" = "negative" }\n', "'local.label_values.1' maps to 'negative'"),
    ('[cleaning]\nlowercase = true\n', "'cleaning.lowercase'"),
])
def test_malformed_task_file(tmp_path, extra, key):
    """Every key is checked: a bad value names the file and the key (see also the metric tests below)."""
    p = tmp_path / "t.toml"
    p.write_text(BASE_TOML + extra, encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_task(p)
    assert str(e.value).startswith(f"{p}: ")
    assert key in str(e.value)


@pytest.mark.parametrize("body, key", [
    (BASE_TOML.replace('labels = ["a", "b"]', 'labels = "a"'), "'labels' must be list"),
    (BASE_TOML.replace('labels = ["a", "b"]', 'labels = ["a", "a"]'), "'labels'"),
    (BASE_TOML.replace('metric = "accuracy"\n', ""), "missing key 'metric'"),
    (BASE_TOML.replace("sequence-classification", "regression"), "'type'"),
    (BASE_TOML + "[local]\nformat = ", "not a valid UTF-8 TOML file"),
])
def test_malformed_task_file_top_level(tmp_path, body, key):
    p = tmp_path / "t.toml"
    p.write_text(body, encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_task(p)
    assert str(p) in str(e.value) and key in str(e.value)


def test_valid_minimal_task_file(tmp_path):
    p = tmp_path / "t.toml"
    p.write_text(BASE_TOML + '[local]\nformat = "csv"\nunlabeled = false\nlabel_values = { "x" = "a" }\n', encoding="utf-8")
    spec = load_task(p)
    assert spec.labels == ("a", "b") and spec.local["label_values"] == {"x": "a"}


def test_to_dataset_columns():
    d = to_dataset([("a", "pos"), ("b", "")])
    assert d.column_names == ["text", "label"] and list(d["label"]) == ["pos", ""]


# --------------------------------------------------------------------------- the real IMDB test file


def test_real_imdb_test_file(data_dir, imdb):
    pairs, st = read_text_file(data_dir / "imdb" / "test.csv.gz", imdb, labeled=True)
    assert len(pairs) == 25000 and st.rows == 25000
    assert st.label_counts == {"neg": 12500, "pos": 12500}
    assert not any("<br />" in t for t, _ in pairs[:500])


@pytest.mark.parametrize("metric,ok", [("accuracy", True), ("macro_f1", True), ("f1", False), ("seqeval", False)])
def test_classification_metric_is_honoured_or_refused(tmp_path, metric, ok):
    from xdistill.adapters import make_adapter

    p = tmp_path / "t.toml"
    p.write_text(BASE_TOML.replace('metric = "accuracy"', f'metric = "{metric}"'), encoding="utf-8")
    if ok:
        assert make_adapter(load_task(p)).primary_metric == metric  # model selection and reports use it
    else:
        with pytest.raises(ConfigError, match=f"{p}: key 'metric' must be one of accuracy, macro_f1"):
            load_task(p)
