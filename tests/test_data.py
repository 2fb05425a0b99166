"""The data layer: per-language splits, the hub source (through datasets), unlabeled text."""

from __future__ import annotations

import random

import datasets
import pytest

from xdistill.adapters import load_task
from xdistill.config import NERDataArguments
from xdistill.data import ner
from xdistill.errors import ConfigError, DataFormatError, UnknownLanguageError
from xdistill.data.languages import LanguageRegistry
from xdistill.data.words import punctuation_splitter

SPEC = load_task("wikiann")


def _write_panx(path, n, tag="B-PER"):
    lines = []
    for i in range(n):
        lines += [f"Word{i}\t{tag}", f"rest{i}\tO", ""]
    path.write_text("\n".join(lines), encoding="utf-8")


@pytest.fixture
def local_dir(tmp_path):
    (tmp_path / "wikiann").mkdir()
    _write_panx(tmp_path / "wikiann" / "train-en.tsv", 50)
    _write_panx(tmp_path / "wikiann" / "dev-en.tsv", 20, "B-LOC")
    _write_panx(tmp_path / "wikiann" / "train-de.tsv", 30)
    _write_panx(tmp_path / "wikiann" / "dev-de.tsv", 10)
    (tmp_path / "unlabeled" / "leipzig").mkdir(parents=True)
    (tmp_path / "unlabeled" / "leipzig" / "en.txt").write_text("Angela Merkel visited Paris.\n\nA second line, here.\n")
    return tmp_path


@pytest.fixture(scope="module")
def splitter():
    return punctuation_splitter()


def _args(local_dir, **kw):
    base = dict(data_dir=str(local_dir), source="local", labeled_per_lang=10, teacher_labeled_per_lang=20,
                validation_per_lang=5, transfer_per_lang=-1, unlabeled_per_lang=-1, eval_per_lang=8, seed=1)
    base.update(kw)
    return NERDataArguments(**base)


def test_splits_are_disjoint_and_sized(local_dir, splitter):
    reg = LanguageRegistry.load()
    args = _args(local_dir)
    src = ner.make_source(args, SPEC, reg)
    assert src.available_languages() == {"en", "de"}
    d = ner.build_language_data("en", src, args, splitter, reg, use_unlabeled=True)
    c = d.counts
    assert (c["validation"], c["labeled"], c["teacher_labeled"], c["n_eval"]) == (5, 10, 20, 8)
    assert c["transfer_from_train"] == 50 - 5 - 10
    assert c["transfer_unlabeled"] == {"leipzig": 2}
    assert c["transfer"] == 35 + 2
    val = {tuple(t) for t in d.validation["tokens"]}
    lab = {tuple(t) for t in d.labeled["tokens"]}
    teach = {tuple(t) for t in d.teacher_labeled["tokens"]}
    transfer = {tuple(t) for t in d.transfer["tokens"]}
    assert not val & lab and not val & teach and not val & transfer and not lab & transfer
    assert lab <= teach
    assert all(tags == [] for tags in d.transfer["tags"])
    assert ("Angela", "Merkel", "visited", "Paris", ".") in transfer
    # same seed -> same sample
    d2 = ner.build_language_data("en", src, args, splitter, reg)
    assert d2.labeled["tokens"] == d.labeled["tokens"]


def test_no_other_split_repeats_a_validation_sentence(tmp_path, splitter):
    """Train repeats each of 15 texts 4 times, and an unlabeled line repeats a validation text: no
    other split has a validation sentence's words, the rows left out are counted, the budgets filled."""
    (tmp_path / "wikiann").mkdir()
    lines = []
    for i in range(60):
        lines += [f"Word{i % 15}\tB-PER", f"rest{i % 15}\tO", ""]
    (tmp_path / "wikiann" / "train-en.tsv").write_text("\n".join(lines), encoding="utf-8")
    _write_panx(tmp_path / "wikiann" / "dev-en.tsv", 20, "B-LOC")
    (tmp_path / "unlabeled" / "leipzig").mkdir(parents=True)
    unlabeled = tmp_path / "unlabeled" / "leipzig" / "en.txt"
    unlabeled.write_text("A line.\n")
    reg = LanguageRegistry.load()
    args = _args(tmp_path, labeled_per_lang=5, teacher_labeled_per_lang=10, validation_per_lang=3)
    build = lambda: ner.build_language_data("en", ner.make_source(args, SPEC, reg), args, splitter, reg)  # noqa: E731
    first = build()
    val = [tuple(t) for t in first.validation["tokens"]]
    assert len(set(val)) == 3  # this seed draws 3 distinct texts, each with 3 more rows in train
    assert first.counts["validation_text_elsewhere"] == {"train": 9, "unlabeled": 0}
    unlabeled.write_text(f"A line.\n{' '.join(val[0])}\nAnother line, here.\n")
    d = build()
    assert [tuple(t) for t in d.validation["tokens"]] == val
    assert len(d.labeled) == 5 and len(d.teacher_labeled) == 10
    for split in (d.labeled, d.teacher_labeled, d.transfer):
        assert not set(val) & {tuple(t) for t in split["tokens"]}
    assert d.counts["validation_text_elsewhere"] == {"train": 9, "unlabeled": 1}
    assert d.counts["transfer_unlabeled"] == {"leipzig": 2}
    assert d.counts["transfer_from_train"] == 60 - 3 - 9 - 5
    # the dev file's "Word{i} rest{i}" for i < 15 are train texts too: counted, kept
    ev = [tuple(t) for t in d.evaluation["tokens"]]
    assert len(ev) == 8 and d.counts["eval_text_in_train"] == sum(int(t[0][4:]) < 15 for t in ev) > 0
    assert d.evaluation_in_train == [i for i, t in enumerate(ev) if int(t[0][4:]) < 15]


def test_missing_language_and_empty_transfer(local_dir, splitter):
    reg = LanguageRegistry.load()
    args = _args(local_dir)
    src = ner.make_source(args, SPEC, reg)
    with pytest.raises(UnknownLanguageError, match="train-fr.tsv"):
        ner.build_language_data("fr", src, args, splitter, reg)
    with pytest.raises(UnknownLanguageError, match="fr"):
        ner.resolve_languages("en,fr", src, reg)
    selected, missing = ner.resolve_languages("xtremedistil41", src, reg)
    assert selected == ["de", "en"] and "fr" in missing
    tight = _args(local_dir, labeled_per_lang=100, teacher_labeled_per_lang=100, unlabeled_per_lang=0)
    de = ner.build_language_data("de", src, tight, splitter, reg)
    assert len(de.transfer) == 0 and de.counts["labeled"] == 30 - 5
    with pytest.raises(ConfigError, match="transfer set is empty"):
        ner.check_transfer_set({"de": de})
    en = ner.build_language_data("en", src, _args(local_dir), splitter, reg)
    ner.check_transfer_set({"de": de, "en": en})  # one language with transfer text is enough


def test_malformed_file_names_file_and_line(local_dir, splitter):
    reg = LanguageRegistry.load()
    (local_dir / "wikiann" / "train-de.tsv").write_text("Berlin\tB-LOC\nonlycolumn\n")
    args = _args(local_dir)
    with pytest.raises(DataFormatError, match=r"train-de\.tsv:2"):
        ner.build_language_data("de", ner.make_source(args, SPEC, reg), args, splitter, reg)


def test_unlabeled_file_encoding_error(tmp_path):
    p = tmp_path / "xx.txt"
    p.write_bytes("ok\n".encode() + "caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataFormatError, match=r"xx\.txt:2"):
        ner.read_unlabeled(p, -1, random.Random(0))


def test_hub_source_converts_classlabels(monkeypatch):
    """The hub path calls datasets.load_dataset(path, config, split=...) and maps ClassLabel ids to tags."""
    features = datasets.Features({
        "tokens": datasets.Sequence(datasets.Value("string")),
        "ner_tags": datasets.Sequence(datasets.ClassLabel(names=list(SPEC.labels))),
        "langs": datasets.Sequence(datasets.Value("string")),
    })
    fake = datasets.Dataset.from_dict({"tokens": [["Paris", "is", "big"], ["Karl", "Ove"]],
                                       "ner_tags": [[5, 0, 0], [2, 2]], "langs": [["fr"] * 3, ["fr"] * 2]},
                                      features=features)
    calls = []

    def fake_load(path, name=None, split=None, **kw):
        calls.append((path, name, split))
        return fake

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    src = ner.HubSource(SPEC, LanguageRegistry.load())
    sents = src.load("fr", "train")
    assert calls == [("unimelb-nlp/wikiann", "fr", "train")]
    assert sents[0].tags == ("B-LOC", "O", "O")
    assert sents[1].tags == ("B-PER", "I-PER")  # I- at start repaired to B-
    assert "fr" in src.available_languages()

    def failing(*a, **k):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", failing)
    with pytest.raises(UnknownLanguageError, match="unimelb-nlp/wikiann"):
        src.load("fr", "eval")


def test_transfer_repeat_adds_shuffled_copies_and_leaves_other_splits(local_dir, splitter):
    reg = LanguageRegistry.load()
    once = ner.build_language_data("en", ner.make_source(_args(local_dir), SPEC, reg), _args(local_dir), splitter, reg)
    args = _args(local_dir, transfer_repeat=3)
    thrice = ner.build_language_data("en", ner.make_source(args, SPEC, reg), args, splitter, reg)
    first = [tuple(t) for t in once.transfer["tokens"]]
    rows = [tuple(t) for t in thrice.transfer["tokens"]]
    assert len(rows) == 3 * len(first) == thrice.counts["transfer"] and thrice.counts["transfer_repeat"] == 3
    assert rows[:len(first)] == first  # the original order first, then the copies
    for k in (1, 2):
        copy = rows[k * len(first):(k + 1) * len(first)]
        assert sorted(copy) == sorted(first) and copy != first  # the same sentences, shuffled
    for split in ("labeled", "validation", "teacher_labeled", "evaluation"):  # nothing else moves
        assert getattr(thrice, split)["tokens"] == getattr(once, split)["tokens"], split
    with pytest.raises(ConfigError, match="--transfer-repeat"):
        _args(local_dir, transfer_repeat=0)


def test_transfer_with_labeled_adds_the_labeled_budget_without_labels(local_dir, splitter):
    reg = LanguageRegistry.load()
    tight = dict(labeled_per_lang=100, teacher_labeled_per_lang=100, unlabeled_per_lang=0)
    src = ner.make_source(_args(local_dir, **tight), SPEC, reg)
    de = ner.build_language_data("de", src, _args(local_dir, **tight), splitter, reg)
    assert len(de.transfer) == 0  # train is all validation and labeled budget
    args = _args(local_dir, transfer_with_labeled=True, **tight)
    de2 = ner.build_language_data("de", src, args, splitter, reg)
    assert de2.counts["transfer_from_labeled"] == de2.counts["labeled"] == 25 and len(de2.transfer) == 25
    assert list(de2.transfer["tokens"]) == list(de2.labeled["tokens"]) and all(t == [] for t in de2.transfer["tags"])
    ner.check_transfer_set({"de": de2})  # the language now has transfer text
    once = ner.build_language_data("en", src, _args(local_dir), splitter, reg)
    en = ner.build_language_data("en", src, _args(local_dir, transfer_with_labeled=True), splitter, reg)
    assert [tuple(t) for t in en.transfer["tokens"]] == \
        [tuple(t) for t in en.labeled["tokens"]] + [tuple(t) for t in once.transfer["tokens"]]
    for split in ("labeled", "validation", "teacher_labeled", "evaluation"):  # nothing else moves
        assert getattr(en, split)["tokens"] == getattr(once, split)["tokens"], split
