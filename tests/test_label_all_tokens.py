"""``--teacher-label-all-tokens``: every subword of a word labeled for the teacher's fine-tuning
(:func:`xdistill.adapters.token_encoding.label_all_tokens`)."""

from __future__ import annotations

import pytest
from datasets import Dataset

from tests.tiny import make_adapter, make_tokenizer
from xdistill.adapters import load_task, make_adapter as adapter_for
from xdistill.data.batching import IGNORE
from xdistill.errors import ConfigError


def _names(adapter, row):
    return [adapter.labels[i] if i != IGNORE else "-" for i in row]


def test_continuation_subwords_take_the_inside_tag(tmp_path):
    tok, adapter = make_tokenizer(tmp_path), make_adapter()
    ds = Dataset.from_dict({"tokens": [["Anna", "lives", "in", "Hamburg", "Montreal"], ["Montreal", "longerest"]],
                            "tags": [["B-PER", "O", "O", "B-LOC", "I-LOC"], ["B-ORG", "O"]]})
    enc = adapter.encode(ds, tok, 32)
    out = adapter.label_all_tokens(enc)
    assert tok.convert_ids_to_tokens(list(enc.input_ids[0])) == \
        ["[CLS]", "Anna", "lives", "in", "Ham", "##burg", "Mont", "##re", "##al", "[SEP]"]
    assert _names(adapter, enc.labels[0]) == ["-", "B-PER", "O", "O", "B-LOC", "-", "I-LOC", "-", "-", "-"]
    assert _names(adapter, out.labels[0]) == ["-", "B-PER", "O", "O", "B-LOC", "I-LOC", "I-LOC", "I-LOC", "I-LOC", "-"]
    assert _names(adapter, out.labels[1]) == ["-", "B-ORG", "I-ORG", "I-ORG", "O", "O", "O", "-"]
    # ids and the first-subword map are untouched: decoding reads the same positions
    assert (out.input_ids.flat == enc.input_ids.flat).all() and (out.word_index.flat == enc.word_index.flat).all()
    assert (enc.labels.flat[enc.word_index.flat >= 0] == out.labels.flat[out.word_index.flat >= 0]).all()


def test_windows_and_unlabeled_rows(tmp_path):
    tok, adapter = make_tokenizer(tmp_path), make_adapter()
    words = ["Hamburg", "lives", "Montreal", "in", "Hamburg", "Anna"]
    ds = Dataset.from_dict({"tokens": [words, ["Hamburg", "Anna"]], "tags": [["B-LOC", "O", "B-LOC", "O", "B-LOC", "B-PER"], []]})
    enc = adapter.encode(ds, tok, 7)  # 5 pieces per window: the first sentence needs several
    out = adapter.label_all_tokens(enc)
    rows = [_names(adapter, r) for r in out.labels]
    assert len(rows) > 2 and all(r[0] == "-" and r[-1] == "-" for r in rows)
    flat = [x for r in rows[:-1] for x in r if x != "-"]
    assert flat == ["B-LOC", "I-LOC", "O", "B-LOC", "I-LOC", "I-LOC", "O", "B-LOC", "I-LOC", "B-PER"]
    assert set(rows[-1]) == {"-"}  # an untagged sentence stays unlabeled


def test_sequence_tasks_refuse_the_option():
    with pytest.raises(ConfigError, match="--teacher-label-all-tokens.*token tasks"):
        adapter_for(load_task("imdb")).label_all_tokens(None)
