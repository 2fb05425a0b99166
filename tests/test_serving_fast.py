"""The vectorised NER path (encode, decode, entity spans, predict) against the per-word reference
(tests/ner_reference.py) on real sentences of every script, and streaming prediction: order, one
output line per input line, bad input, bounded memory."""

from __future__ import annotations

import gc
import io
import json
import random
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tiny_models as tm
from ner_reference import reference_decode, reference_encode, reference_predict
from tiny import make_adapter, single_thread  # noqa: F401
from transformers import BertTokenizerFast

import xdistill.adapters.token_encoding as te
import xdistill.data.words as words_module
from xdistill.adapters.token_classification import word_pieces
from xdistill.adapters.token_encoding import PieceTable, entity_spans, valid_iob2, window_counts
from xdistill.data.readers import read_ner_file, repair_iob2
from xdistill.data.types import Ragged
from xdistill.serving.inference import PREDICT_GC_THRESHOLD, InferenceModel, fewer_collections
from xdistill.serving.stream import chunked_lines, predict_stream

#: languages of the five scripts the issue names, and more: Latin, Cyrillic, Arabic, Devanagari, CJK, Hangul, Tamil
SCRIPTS = {"de": "Latin", "vi": "Latin", "ru": "Cyrillic", "ar": "Arabic", "hi": "Devanagari", "zh": "Han",
           "ja": "Han+kana", "ko": "Hangul", "ta": "Tamil"}
#: the leipzig files (raw text) of those scripts
RAW = ("de", "en", "ru", "ar", "hi", "zh", "ja", "ko", "ta")


@pytest.fixture(scope="module")
def mbert(data_dir):
    return BertTokenizerFast(vocab=str(data_dir / "tokenizers" / "bert-base-multilingual-cased" / "vocab.txt"),
                             do_lower_case=False, strip_accents=False, tokenize_chinese_chars=True)


@pytest.fixture(scope="module")
def adapter():
    return make_adapter()


@pytest.fixture(scope="module")
def labeled(data_dir):
    """200 gold sentences of each language's WikiANN dev file (tokens and tags)."""
    out = {"tokens": [], "tags": []}
    for lang in SCRIPTS:
        sents, _ = read_ner_file(data_dir / "wikiann" / f"dev-{lang}.tsv", format="panx")
        for s in sents[:200]:
            out["tokens"].append(list(s.tokens))
            out["tags"].append(list(s.tags))
    return out


@pytest.fixture(scope="module")
def raw_texts(data_dir):
    """150 raw sentences of each leipzig file, plus edge cases: empty, blank, NUL and control bytes,
    a line far beyond the maximum length, a single overlong word."""
    texts = []
    for lang in RAW:
        with open(data_dir / "unlabeled" / "leipzig" / f"{lang}.txt", encoding="utf-8") as f:
            texts += [next(f).rstrip("\n") for _ in range(150)]
    return texts + ["", "   ", "\x00\x00", "Anna\x00Berlin \x07", " ".join(texts[:40]), "Ä" * 300 + " Paris", "Berlin"]


class RowHashModel:
    """An inference model whose logits are a fixed function of each row's ids (the same logits for
    the same rows, whichever path asks), so that every tag and span rule is exercised."""

    def __init__(self, tokenizer, max_length: int, num_labels: int = 7):
        self.tokenizer, self.max_length, self.num_labels = tokenizer, max_length, num_labels

    def logits(self, encoded):
        out = []
        for row in encoded.input_ids:
            ids = np.asarray(row, dtype=np.float64)[:, None]
            c = np.arange(self.num_labels)[None, :]
            out.append(np.sin(ids * (c + 1.37) + np.arange(len(row))[:, None] * 0.1).astype(np.float32))
        return out


# --------------------------------------------------------------------------- pieces, windows, spans


def test_piece_table_equals_word_pieces(mbert, tmp_path, raw_texts, adapter):
    sp = tm.make_sentencepiece_tokenizer(tmp_path / "sp")
    words = [w for ws in adapter.splitter.words(raw_texts) for w in ws] + ["\x07", "Anna"]
    for tok in (mbert, sp):
        table = PieceTable(tok)
        idx = table.lookup(words)
        got = [table.flat[table.offsets[i]:table.offsets[i + 1]].tolist() for i in idx]
        assert got == word_pieces(tok, words)
        assert table.size == len(set(words))
        table.clear()
        assert table.size == 0 and len(table.flat) == 0


def test_piece_table_sequential_and_batch_paths_agree(mbert, tmp_path, raw_texts, adapter, monkeypatch):
    """Few new words are tokenized one call each, many as one batch: the same pieces either way."""
    sp = tm.make_sentencepiece_tokenizer(tmp_path / "sp")
    words = list(dict.fromkeys(w for ws in adapter.splitter.words(raw_texts) for w in ws))
    for tok in (mbert, sp):
        got = {}
        for path, limit in (("sequential", len(words)), ("batch", 0)):
            monkeypatch.setattr(te, "SEQUENTIAL_WORDS", limit)
            table = PieceTable(tok)
            idx = table.lookup(words)
            got[path] = [table.flat[table.offsets[i]:table.offsets[i + 1]].tolist() for i in idx]
        assert got["sequential"] == got["batch"] == word_pieces(tok, words)


def test_word_splitter_sequential_and_batch_paths_agree(raw_texts, adapter, monkeypatch):
    """A single-sentence request is split without the tokenizer's thread pool: the same spans."""
    spans = {}
    for path, limit in (("sequential", len(raw_texts)), ("batch", 0)):
        monkeypatch.setattr(words_module, "SEQUENTIAL_TEXTS", limit)
        spans[path] = adapter.splitter.spans(raw_texts)
    assert spans["sequential"] == spans["batch"]
    assert sum(map(len, spans["batch"])) > 10_000


def test_window_counts_hand_example():
    assert window_counts([1, 2, 1, 3], 3) == [(0, 2), (2, 3), (3, 4)]
    assert window_counts([1, 5, 1, 7], 3) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert window_counts([], 4) == [(0, 0)]


def test_entity_spans_hand_example():
    kinds = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]
    #        I-PER  I-PER  O  B-LOC I-LOC I-ORG | I-LOC (new sentence) B-LOC B-LOC
    tags = np.array([2, 2, 0, 5, 6, 4, 6, 5, 5])
    starts = np.zeros(len(tags), bool)
    starts[[0, 6]] = True
    first, last, kind = entity_spans(tags, starts, kinds)
    assert first.tolist() == [0, 3, 5, 6, 7, 8]
    assert last.tolist() == [1, 4, 5, 6, 7, 8]
    assert [["LOC", "ORG", "PER"][k] for k in kind] == ["PER", "LOC", "ORG", "LOC", "LOC", "LOC"]


def test_valid_iob2_hand_example():
    kinds = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]
    #        I-PER  I-PER  O  B-LOC I-LOC I-ORG | I-LOC (new sentence) B-LOC I-LOC
    tags = np.array([2, 2, 0, 5, 6, 4, 6, 5, 6])
    starts = np.zeros(len(tags), bool)
    starts[[0, 6]] = True
    fixed = valid_iob2(tags, starts, kinds)
    assert [kinds[i] for i in fixed] == ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "B-ORG", "B-LOC", "B-LOC", "I-LOC"]
    assert tags.tolist() == [2, 2, 0, 5, 6, 4, 6, 5, 6]  # the input is not modified
    # the repaired tags spell the same entities
    assert [a.tolist() for a in entity_spans(fixed, starts, kinds)] == [a.tolist() for a in entity_spans(tags, starts, kinds)]
    # a type without a B- tag in the label set keeps its I- tag
    assert valid_iob2(np.array([1, 0, 1]), np.array([True, False, False]), ["O", "I-MISC"]).tolist() == [1, 0, 1]


def test_ragged_padded():
    r = Ragged.from_rows([[1, 2, 3], [4], [], [5, 6]])
    ids, mask = r.padded([3, 0, 1], -1)
    assert ids.tolist() == [[5, 6, -1], [1, 2, 3], [4, -1, -1]]
    assert mask.tolist() == [[True, True, False], [True, True, True], [True, False, False]]
    assert ids.dtype == np.int64


# --------------------------------------------------------------------------- fast path = reference path


@pytest.mark.parametrize("max_length", [128, 12, 3])
def test_encode_equals_reference_on_every_script(adapter, mbert, labeled, max_length):
    unlabeled = {"tokens": labeled["tokens"], "tags": [[] for _ in labeled["tags"]]}
    for ds in (labeled, unlabeled):
        fast = adapter.encode(ds, mbert, max_length)
        ref = reference_encode(adapter, ds, mbert, max_length)
        assert fast.input_ids == ref.input_ids and fast.labels == ref.labels and fast.word_index == ref.word_index
        assert fast.example == ref.example and fast.n_words == ref.n_words and fast.stats == ref.stats
    if max_length < 128:
        assert fast.stats["examples_split_into_windows"] > 0


def test_encode_in_chunks_equals_reference(adapter, mbert, labeled, monkeypatch):
    """Chunk boundaries (examples renumbered per chunk, then joined) change nothing."""
    import xdistill.adapters.token_classification as tc

    monkeypatch.setattr(tc, "ENCODE_CHUNK", 7)
    ds = {"tokens": labeled["tokens"][:100] + [[]], "tags": labeled["tags"][:100] + [[]]}
    fast, ref = adapter.encode(ds, mbert, 16), reference_encode(adapter, ds, mbert, 16)
    assert fast.input_ids == ref.input_ids and fast.labels == ref.labels and fast.word_index == ref.word_index
    assert fast.example == ref.example and fast.n_words == ref.n_words and fast.stats == ref.stats


def test_decode_equals_reference(adapter, mbert, labeled):
    enc = adapter.encode(labeled, mbert, 12)
    logits = RowHashModel(mbert, 12).logits(enc)
    assert adapter.decode(logits, enc) == reference_decode(adapter, logits, enc)


@pytest.mark.parametrize("max_length", [128, 10])
def test_predict_spans_equal_reference_on_every_script(adapter, mbert, raw_texts, max_length):
    model = RowHashModel(mbert, max_length)
    fast = adapter.predict_texts(model, raw_texts)
    ref = reference_predict(adapter, model, raw_texts)
    assert fast == ref
    assert sum(len(r["entities"]) for r in fast) > 500  # the spans were exercised


def test_tag_words_gives_the_valid_iob2_tags_of_predict(adapter, mbert, raw_texts):
    row_hash = RowHashModel(mbert, 128)
    wrapped = SimpleNamespace(logits=lambda level, encoded, pad_id, batch_size: row_hash.logits(encoded))
    model = InferenceModel("student", wrapped, mbert, adapter, 128, "row-hash")
    predicted = adapter.predict_texts(row_hash, raw_texts)
    sentences = [r["words"] for r in predicted]
    tags = model.tag_words(sentences)
    assert tags == [r["tags"] for r in predicted]
    assert all(repair_iob2(t)[1] == [] for t in tags)  # valid IOB2: nothing left to repair
    enc = adapter.encode({"tokens": sentences, "tags": [[] for _ in sentences]}, mbert, 128)
    raw = adapter.decode(row_hash.logits(enc), enc)
    assert sum(len(repair_iob2(t)[1]) for t in raw) > 100  # the model's own tags needed repairs


# --------------------------------------------------------------------------- streaming


class EchoModel:
    """predict: one result per text, its words counted by the adapter."""

    def __init__(self):
        self.adapter = make_adapter()
        self.calls = 0

    def predict(self, texts):
        self.calls += 1
        return [{"text": t, "words": t.split(), "tags": [], "entities": []} for t in texts]


def test_stream_keeps_order_and_one_line_per_input_on_shuffled_lengths():
    rng = random.Random(0)
    lines = [" ".join(["w"] * rng.choice([0, 1, 5, 50, 400])) for _ in range(1000)] + ["a\x00b", "\x7f"]
    rng.shuffle(lines)
    data = "".join(x + "\n" for x in lines).encode("utf-8")
    out = io.StringIO()
    model = EchoModel()
    stats = predict_stream(model, chunked_lines(io.BytesIO(data), 64), out)
    got = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [g["text"] for g in got] == lines
    assert stats.lines == len(lines) and model.calls == 16
    assert stats.words == sum(len(x.split()) for x in lines)


def test_stream_real_student_one_line_per_input(tok, tmp_path):
    student = tm.make_student_dir(tmp_path / "student", tok, max_length=16, constant_label="B-PER")
    from xdistill.serving.inference import load_model

    model = load_model(student, batch_size=3)
    rng = random.Random(1)
    lines = [" ".join(rng.choice(["Anna", "Hamburg", "Paris", "."]) for _ in range(rng.choice([0, 2, 9, 40])))
             for _ in range(300)]
    out = io.StringIO()
    predict_stream(model, chunked_lines(io.StringIO("".join(x + "\n" for x in lines)), 50), out)
    got = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [g["text"] for g in got] == lines
    assert all(len(g["tags"]) == len(g["words"]) and set(g["tags"]) <= {"B-PER"} for g in got)


def _predict_rss_mib(student: Path, lines: int, tmp_path: Path) -> float:
    """Peak RSS (MiB) of `python -m xdistill predict` over ``lines`` generated lines (read from a file)."""
    rng = random.Random(lines)
    src = tmp_path / f"in-{lines}.txt"
    with open(src, "w", encoding="utf-8") as f:  # about 8 distinct words per line: the subword table must stay bounded
        for _ in range(lines):
            f.write(" ".join(f"w{rng.randrange(10**7)}" for _ in range(rng.randint(0, 16))) + "\n")
    # the child's own peak (VmHWM), not ru_maxrss: that keeps the peak of pytest's image before exec
    code = ("import sys; from xdistill.cli import main; from xdistill.utils import peak_rss_mib; "
            "rc = main(sys.argv[1:]); print(peak_rss_mib(), file=sys.stderr); sys.exit(rc)")
    with open(src, "rb") as fin, open(tmp_path / "out.jsonl", "wb") as fout:
        p = subprocess.run([sys.executable, "-c", code, "predict", "--model", str(student), "--threads", "1",
                            "--batch-lines", "1000"], stdin=fin, stdout=fout, stderr=subprocess.PIPE, text=False,
                           check=True)
    with open(tmp_path / "out.jsonl", "rb") as f:
        assert sum(1 for _ in f) == lines
    return float(p.stderr.decode().strip().splitlines()[-1])


def test_stream_memory_is_bounded(tok, tmp_path):
    """60,000 lines (480,000 distinct words) peak within 1.1x (+20 MiB) of 3,000 lines: a chunk at a
    time, and the table of seen words' subwords is bounded."""
    student = tm.make_student_dir(tmp_path / "student", tok, max_length=16)
    small = _predict_rss_mib(student, 3_000, tmp_path)
    large = _predict_rss_mib(student, 60_000, tmp_path)
    print(f"peak RSS {small:.1f} MiB (3,000 lines), {large:.1f} MiB (60,000 lines)")
    assert large <= 1.1 * small + 20, (small, large)


# --------------------------------------------------------------------------- garbage collection


def test_predict_runs_with_fewer_collections_and_restores_the_threshold(adapter, mbert):
    """predict raises the young-generation threshold while it runs, and restores it afterwards,
    also when the adapter fails; nested and concurrent holders share one raise."""
    seen = []

    class Recording:
        def predict_texts(self, model, texts):
            seen.append(gc.get_threshold()[0])
            if texts == ["fail"]:
                raise RuntimeError("adapter failed")
            return [{"text": t} for t in texts]

    model = InferenceModel("student", None, mbert, Recording(), 16, "mem")
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        assert model.predict(["Anna"]) == [{"text": "Anna"}]
        with pytest.raises(RuntimeError, match="adapter failed"):
            model.predict(["fail"])
        assert seen == [PREDICT_GC_THRESHOLD, PREDICT_GC_THRESHOLD]
        assert gc.get_threshold() == (700, 10, 10)

        # holders that leave in another order than they came still restore the threshold found first
        inner_done, outer_may_leave = threading.Event(), threading.Event()

        def other_holder():
            with fewer_collections():
                inner_done.set()
                outer_may_leave.wait(5)

        with fewer_collections():
            t = threading.Thread(target=other_holder)
            t.start()
            inner_done.wait(5)
        assert gc.get_threshold()[0] == PREDICT_GC_THRESHOLD  # the thread still holds it
        outer_may_leave.set()
        t.join(5)
        assert gc.get_threshold() == (700, 10, 10)

        # a threshold already above the raise is kept
        gc.set_threshold(10 * PREDICT_GC_THRESHOLD, 10, 10)
        model.predict(["Anna"])
        assert seen[-1] == 10 * PREDICT_GC_THRESHOLD
        assert gc.get_threshold() == (10 * PREDICT_GC_THRESHOLD, 10, 10)
    finally:
        gc.set_threshold(*before)
