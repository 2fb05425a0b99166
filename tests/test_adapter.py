"""Tests for the token-classification (NER) adapter: word pieces, windows, label alignment,
decoding, the distillation mask and seqeval scoring."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from tiny import (  # single_thread: an autouse fixture
    make_adapter,
    make_tokenizer,
    sentences,
    single_thread,  # noqa: F401
)
from xdistill.data.types import Encoded
from xdistill.adapters.token_classification import IGNORE, windows, word_pieces


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return make_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def adapter():
    return make_adapter()


def ids(tok, *tokens):
    return tok.convert_tokens_to_ids(list(tokens))


def one_hot_logits(adapter, enc: Encoded, row_labels: list[list[int]]) -> list[np.ndarray]:
    """Per-row logits whose argmax is ``row_labels`` at labeled positions and a decoy class elsewhere."""
    out = []
    for labels in row_labels:
        lg = np.zeros((len(labels), adapter.num_labels), dtype=np.float32)
        for pos, lab in enumerate(labels):
            if lab == IGNORE:
                lg[pos, adapter.num_labels - 1] = 9.0  # decoy: must never be read
            else:
                lg[pos, lab] = 5.0
        out.append(lg)
    return out


# --------------------------------------------------------------------------- word_pieces


def test_word_pieces_subwords_and_unknown(tok):
    got = word_pieces(tok, ["Anna", "Hamburg", "Montreal", "xyz"])
    assert got == [ids(tok, "Anna"), ids(tok, "Ham", "##burg"), ids(tok, "Mont", "##re", "##al"), [tok.unk_token_id]]


@pytest.mark.parametrize("word", ["\x01", "", "\u200b", "\x01\x02"])
def test_word_pieces_empty_word_becomes_unk(tok, word):
    assert tok([word], add_special_tokens=False)["input_ids"] == [[]]  # the tokenizer drops it entirely
    assert word_pieces(tok, ["Anna", word, "Paris"]) == [ids(tok, "Anna"), [tok.unk_token_id], ids(tok, "Paris")]


def test_word_pieces_cache_is_filled_and_used(tok):
    cache: dict = {}
    first = word_pieces(tok, ["Anna", "Hamburg", "Anna"], cache)
    assert set(cache) == {"Anna", "Hamburg"}
    assert first[0] == first[2] == ids(tok, "Anna")
    cache["Anna"] = [99]  # a cached entry is used as is, not re-tokenized
    assert word_pieces(tok, ["Anna", "Paris"], cache) == [[99], ids(tok, "Paris")]


# --------------------------------------------------------------------------- windows


def test_windows_hand_example():
    pieces = [[1], [1, 1], [1], [1, 1, 1]]
    assert windows(pieces, 3) == [(0, 2), (2, 3), (3, 4)]
    assert windows(pieces, 10) == [(0, 4)]
    assert windows([], 4) == [(0, 0)]


def test_windows_overlong_word_gets_own_window():
    pieces = [[1], [1] * 5, [1], [1] * 7]
    assert windows(pieces, 3) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert windows([[1] * 9], 3) == [(0, 1)]


@pytest.mark.parametrize("budget", [1, 2, 3, 5, 8])
def test_windows_cover_every_word_once_within_budget(budget):
    rng = random.Random(budget)
    for _ in range(50):
        pieces = [[0] * rng.randint(1, 6) for _ in range(rng.randint(1, 20))]
        spans = windows(pieces, budget)
        assert spans[0][0] == 0 and spans[-1][1] == len(pieces)
        for (a, b), (c, _) in zip(spans, spans[1:]):
            assert b == c  # consecutive, no gap, no overlap
        covered = [w for a, b in spans for w in range(a, b)]
        assert covered == list(range(len(pieces)))
        for a, b in spans:
            assert b > a
            used = sum(len(pieces[w]) for w in range(a, b))
            if b - a > 1:
                assert used <= budget
            elif used > budget:  # a single over-long word
                assert len(pieces[a]) > budget


# --------------------------------------------------------------------------- encode / decode


def test_encode_first_subword_alignment(tok, adapter):
    data = {"tokens": [["Anna", "visited", "Hamburg", "."]], "tags": [["B-PER", "O", "B-LOC", "O"]]}
    enc = adapter.encode(data, tok, max_length=32)
    assert len(enc) == 1 and enc.example == [0] and enc.n_words == [4]
    assert enc.input_ids[0] == ids(tok, "[CLS]", "Anna", "visited", "Ham", "##burg", ".", "[SEP]")
    l2i = adapter.label2id
    assert enc.labels[0] == [IGNORE, l2i["B-PER"], l2i["O"], l2i["B-LOC"], IGNORE, l2i["O"], IGNORE]
    assert enc.word_index[0] == [-1, 0, 1, 2, -1, 3, -1]
    assert enc.stats == {"examples": 1, "windows": 1, "examples_split_into_windows": 0,
                         "subwords_cut_from_overlong_words": 0}


def test_encode_unlabeled_rows_are_all_ignored(tok, adapter):
    data = {"tokens": [["Anna", "visited", "Montreal"], ["Bob"]], "tags": [[], []]}
    enc = adapter.encode(data, tok, max_length=32)
    assert len(enc) == 2
    for labels, row in zip(enc.labels, enc.input_ids):
        assert labels == [IGNORE] * len(row)
    assert enc.word_index[0] == [-1, 0, 1, 2, -1, -1, -1]


def test_encode_long_sentence_split_into_windows_and_decoded(tok, adapter):
    words = ["Anna", "visited", "Montreal", "and", "New", "York", "."]
    tags = ["B-PER", "O", "B-LOC", "O", "B-LOC", "I-LOC", "O"]
    data = {"tokens": [["Bob", "lives"], words, ["Carla"]], "tags": [["B-PER", "O"], tags, ["B-PER"]]}
    enc = adapter.encode(data, tok, max_length=6)  # budget 4 subwords per window
    assert enc.example == [0, 1, 1, 1, 2]
    assert enc.n_words == [2, 7, 1]
    assert enc.stats["examples_split_into_windows"] == 1
    for row in enc.input_ids:
        assert len(row) <= 6
        assert row[0] == tok.cls_token_id and row[-1] == tok.sep_token_id
    # windows (0,2) (2,4) (4,7) of sentence 1
    assert [w for w in enc.word_index[1] if w >= 0] == [0, 1]
    assert [w for w in enc.word_index[2] if w >= 0] == [2, 3]
    assert [w for w in enc.word_index[3] if w >= 0] == [4, 5, 6]
    # every word is labeled exactly once, on its first subword, in order
    l2i = adapter.label2id
    got = [lab for r in (1, 2, 3) for lab in enc.labels[r] if lab != IGNORE]
    assert got == [l2i[t] for t in tags]
    for row_ids, row_labels, row_widx in zip(enc.input_ids, enc.labels, enc.word_index):
        assert len(row_ids) == len(row_labels) == len(row_widx)
        assert [lab != IGNORE for lab in row_labels] == [w >= 0 for w in row_widx]

    preds = adapter.decode(one_hot_logits(adapter, enc, enc.labels), enc)
    assert preds == data["tags"]
    assert [len(p) for p in preds] == [2, 7, 1]


def test_decode_reads_each_words_first_subword(tok, adapter):
    data = {"tokens": [["Hamburg", "Anna"]], "tags": [["B-LOC", "B-PER"]]}
    enc = adapter.encode(data, tok, max_length=16)  # [CLS] Ham ##burg Anna [SEP]
    lg = np.zeros((5, 7), dtype=np.float32)
    lg[1, adapter.label2id["B-ORG"]] = 1.0  # first subword of Hamburg
    lg[2, adapter.label2id["I-LOC"]] = 9.0  # continuation: ignored
    lg[3, adapter.label2id["I-PER"]] = 1.0
    lg[0, 5] = lg[4, 5] = 9.0  # [CLS]/[SEP]: ignored
    assert adapter.decode([lg], enc) == [["B-ORG", "I-PER"]]


def test_encode_overlong_word_cut_to_budget(tok, adapter):
    data = {"tokens": [["Anna", "Montreal", "Bob"]], "tags": [["B-PER", "B-LOC", "B-PER"]]}
    enc = adapter.encode(data, tok, max_length=4)  # budget 2: Montreal's 3 pieces cut to 2
    assert enc.input_ids == [ids(tok, "[CLS]", "Anna", "[SEP]"), ids(tok, "[CLS]", "Mont", "##re", "[SEP]"),
                             ids(tok, "[CLS]", "Bob", "[SEP]")]
    assert enc.stats["subwords_cut_from_overlong_words"] == 1
    assert enc.labels[1] == [IGNORE, adapter.label2id["B-LOC"], IGNORE, IGNORE]
    assert adapter.decode(one_hot_logits(adapter, enc, enc.labels), enc) == data["tags"]


def test_encode_decode_random_round_trip(tok, adapter):
    data = sentences(40, seed=3, min_words=1, max_words=12)
    for max_length in (5, 8, 64):
        enc = adapter.encode(data, tok, max_length=max_length)
        assert all(len(r) <= max_length for r in enc.input_ids)
        assert sorted(set(enc.example)) == list(range(40)) and enc.example == sorted(enc.example)
        assert adapter.decode(one_hot_logits(adapter, enc, enc.labels), enc) == data["tags"]


def test_encode_accepts_a_datasets_dataset(tok, adapter):
    datasets = pytest.importorskip("datasets")
    data = sentences(5, seed=1)
    assert adapter.encode(datasets.Dataset.from_dict(data), tok, 16).input_ids == adapter.encode(data, tok, 16).input_ids


def test_gold(adapter):
    data = {"tokens": [["a", "b"], ["c"]], "tags": [("B-PER", "O"), ("O",)]}
    assert adapter.gold(data) == [["B-PER", "O"], ["O"]]


# --------------------------------------------------------------------------- subset_examples


def test_subset_examples(tok, adapter):
    words = ["Anna", "visited", "Montreal", "and", "New", "York", "."]
    data = {"tokens": [["Bob"], words, ["Carla", "lives"]], "tags": [["B-PER"], ["O"] * 7, ["B-PER", "O"]]}
    enc = adapter.encode(data, tok, max_length=6)
    assert enc.example == [0, 1, 1, 1, 2]
    sub = enc.subset_examples([2, 1])
    assert sub.n_words == [2, 7]
    # rows keep their original order; examples are renumbered by their place in `keep`
    assert sub.example == [1, 1, 1, 0]
    assert sub.input_ids == enc.input_ids[1:5]
    assert sub.labels == enc.labels[1:5] and sub.word_index == enc.word_index[1:5]
    preds = adapter.decode(one_hot_logits(adapter, sub, sub.labels), sub)
    assert preds == [data["tags"][2], data["tags"][1]]
    assert list(sub.lengths) == [len(r) for r in sub.input_ids]
    empty = enc.subset_examples([])
    assert len(empty) == 0 and empty.n_words == []


# --------------------------------------------------------------------------- distill_mask / teacher_outputs


def test_distill_mask_excludes_cls_sep_and_padding(adapter):
    att = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]])
    expected = torch.tensor([[0, 1, 1, 1, 0], [0, 1, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.bool)
    mask = adapter.level.distill_mask(att)
    assert mask.dtype == torch.bool and torch.equal(mask, expected)
    assert torch.equal(att, torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]]))  # not modified


def test_adapter_teacher_outputs_cut_rows_to_length(adapter):
    logits, hidden = torch.randn(2, 5, 7), torch.randn(2, 5, 3)
    lg, hd = adapter.level.feature_rows(logits, [5, 2]), adapter.level.feature_rows(hidden, [5, 2])
    assert [x.shape for x in lg] == [(5, 7), (2, 7)] and [x.shape for x in hd] == [(5, 3), (2, 3)]
    assert torch.equal(lg[1], logits[1, :2]) and torch.equal(hd[0], hidden[0])


def test_adapter_basics(adapter):
    assert adapter.level.name == "token" and adapter.primary_metric == "f1" and adapter.command == "ner"
    assert adapter.unit == "sentences" and adapter.group_name == "languages"
    assert adapter.labels == ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")
    assert adapter.num_labels == 7 and adapter.label2id["B-LOC"] == 5


# --------------------------------------------------------------------------- score


def test_score_one_of_two_entities_found(adapter):
    gold = [["B-PER", "I-PER", "O"], ["B-LOC", "O"]]
    pred = [["B-PER", "I-PER", "O"], ["O", "O"]]
    s = adapter.score(pred, gold)
    assert s["precision"] == pytest.approx(100.0)
    assert s["recall"] == pytest.approx(50.0)
    assert s["f1"] == pytest.approx(200 / 3)
    assert s["n"] == 2
    assert s["per_type"]["PER"] == {"f1": pytest.approx(100.0), "precision": pytest.approx(100.0),
                                    "recall": pytest.approx(100.0), "support": 1}
    assert s["per_type"]["LOC"]["f1"] == pytest.approx(0.0) and s["per_type"]["LOC"]["support"] == 1


def test_score_wrong_type_and_boundary(adapter):
    gold = [["B-PER", "I-PER", "O"], ["B-LOC", "O"]]
    # PER boundary wrong (only the first word), LOC predicted as ORG: 0 of 2 right
    pred = [["B-PER", "O", "O"], ["B-ORG", "O"]]
    s = adapter.score(pred, gold)
    assert s["f1"] == s["precision"] == s["recall"] == pytest.approx(0.0)
    # one right, one false positive: P = 1/2, R = 1/2
    pred = [["B-PER", "I-PER", "O"], ["B-ORG", "O"]]
    s = adapter.score(pred, gold)
    assert (s["precision"], s["recall"], s["f1"]) == (pytest.approx(50.0), pytest.approx(50.0), pytest.approx(50.0))
    assert s["per_type"]["ORG"]["support"] == 0


def test_score_unseen_leaves_out_the_rows_whose_text_is_in_train(adapter):
    gold = [["B-PER", "O"], ["B-LOC"], ["B-ORG", "I-ORG"]]
    pred = [["B-PER", "O"], ["O"], ["B-ORG", "I-ORG"]]
    s = adapter.score_unseen(pred, gold, [0])
    # all rows: 2 of 3 entities found, none wrong -> P 1, R 2/3, F1 0.8; without row 0: P 1, R 1/2
    assert (s["f1"], s["n"]) == (pytest.approx(80.0), 3)
    assert (s["unseen"]["f1"], s["unseen"]["recall"], s["unseen"]["n"]) == (pytest.approx(200 / 3), pytest.approx(50.0), 2)
    assert "PER" not in s["unseen"]["per_type"] and s["per_type"]["PER"]["support"] == 1
    assert adapter.score_unseen(pred, gold, [0, 2])["unseen"]["f1"] == 0.0
    assert adapter.score_unseen(pred, gold, [])["unseen"] == adapter.score(pred, gold)
    assert adapter.score_unseen(pred, gold, [0, 1, 2])["unseen"]["n"] == 0
    with pytest.raises(ValueError, match="seen positions 0..3"):
        adapter.score_unseen(pred, gold, [0, 3])
    with pytest.raises(ValueError, match="2 predictions, 3 gold"):
        adapter.score_unseen(pred[:2], gold, [])


def test_score_perfect_empty_and_mismatch(adapter):
    gold = [["B-PER", "I-PER", "O"], ["B-LOC", "O"]]
    assert adapter.score(gold, gold)["f1"] == pytest.approx(100.0)
    assert adapter.score([], []) == {"f1": 0.0, "precision": 0.0, "recall": 0.0, "per_type": {}, "n": 0}
    with pytest.raises(ValueError):
        adapter.score(gold[:1], gold)
