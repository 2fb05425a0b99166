"""The task-level word splitter: raw text is split as the gold NER files are, whatever the teacher's tokenizer."""

from __future__ import annotations

import pytest

import tiny_models as tm
from xdistill.adapters import TokenClassificationAdapter, load_task, make_adapter
from xdistill.data.taskspec import TaskSpec
from xdistill.data.words import WORD_SPLITTERS, make_word_splitter, punctuation_splitter, whitespace_splitter
from xdistill.errors import ConfigError


@pytest.fixture(scope="module")
def split():
    return punctuation_splitter()


@pytest.mark.parametrize("text, words", [
    ("Angela Merkel besuchte Paris.", ["Angela", "Merkel", "besuchte", "Paris", "."]),
    ("(München) liegt in Bayern!", ["(", "München", ")", "liegt", "in", "Bayern", "!"]),
    ("東京都に住む", ["東", "京", "都", "に", "住", "む"]),           # CJK ideographs are words of their own
    ("naïve café — «quoted»", ["naïve", "café", "—", "«", "quoted", "»"]),  # case and accents kept
    ("U.S.-based, 3.5%", ["U", ".", "S", ".", "-", "based", ",", "3", ".", "5", "%"]),
    ("   ", []),
    ("", []),
])
def test_punctuation_splitter_words(split, text, words):
    assert split.words([text]) == [words]


def test_spans_are_offsets_into_the_original_text(split):
    texts = ["Angela Merkel besuchte Paris.", "  two  spaces\tand tab", "a\u200bb c\x00d e", "北京 和 上海"]
    for text, spans in zip(texts, split.spans(texts)):
        assert all(text[s:e] == w for w, s, e in spans)
        assert [s for _, s, _ in spans] == sorted(s for _, s, _ in spans)


def test_control_characters_belong_to_no_word(split):
    # BERT's clean_text removes control and format characters; a word keeps its span in the original text
    assert split.words(["ab\x01 cd"]) == [["ab", "cd"]]
    assert split.words(["a\x01b \x01 x"]) == [["a\x01b", "x"]]


def test_whitespace_splitter_keeps_punctuation():
    assert whitespace_splitter().words(["Paris. (München)"]) == [["Paris.", "(München)"]]


def test_unknown_splitter_names_the_key():
    with pytest.raises(ConfigError, match="word_splitter.*nonsense.*punctuation"):
        make_word_splitter("nonsense")
    assert set(WORD_SPLITTERS) >= {"punctuation", "whitespace"}


def test_task_file_picks_the_splitter(tmp_path):
    p = tmp_path / "conll.toml"
    p.write_text('name = "x"\ntype = "token-classification"\nlabels = ["O", "B-PER", "I-PER"]\nmetric = "seqeval"\n'
                 'word_splitter = "whitespace"\n')
    adapter = make_adapter(load_task(p))
    assert adapter.splitter.name == "whitespace"
    p.write_text(p.read_text().replace('"whitespace"', '"bogus"'))
    with pytest.raises(ConfigError, match=r"conll\.toml: key 'word_splitter'"):
        load_task(p)


def test_word_splitter_is_for_token_tasks_only(tmp_path):
    p = tmp_path / "t.toml"
    p.write_text('name = "t"\ntype = "sequence-classification"\nlabels = ["a", "b"]\nmetric = "accuracy"\n'
                 'word_splitter = "punctuation"\n')
    with pytest.raises(ConfigError, match="word_splitter.*token-classification"):
        load_task(p)


def test_default_is_punctuation():
    adapter = TokenClassificationAdapter(TaskSpec(name="t", type="token-classification", labels=("O",), metric="seqeval"))
    assert adapter.splitter.name == "punctuation"


def test_same_words_as_a_bert_tokenizers_own_pre_tokenizer(split, data_dir, tmp_path):
    """With the mBERT vocabulary the words are exactly what the teacher tokenizer's normaliser and
    pre-tokenizer give (the behaviour before the splitter was separated from the tokenizer), on real
    sentences in Latin, Cyrillic, Arabic, Devanagari, CJK and Thai script."""
    from transformers import BertTokenizerFast

    tok = BertTokenizerFast(vocab=str(data_dir / "tokenizers" / "bert-base-multilingual-cased" / "vocab.txt"),
                            do_lower_case=False, strip_accents=False, tokenize_chinese_chars=True)
    texts = []
    for lang in ("de", "ru", "ar", "hi", "zh", "ja", "th"):
        path = data_dir / "unlabeled" / "leipzig" / f"{lang}.txt"
        texts += [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()][:150]
    enc = tok(texts, add_special_tokens=False, return_offsets_mapping=True)
    for i, (text, spans) in enumerate(zip(texts, split.spans(texts))):
        by_word: dict[int, list[int]] = {}
        for wid, (s, e) in zip(enc.word_ids(i), enc["offset_mapping"][i]):
            if wid is not None:
                by_word.setdefault(wid, [s, e])[1] = e
        expected = [(text[s:e], s, e) for s, e in by_word.values() if e > s]
        assert spans == expected, text


def test_predict_uses_the_task_splitter_with_a_sentencepiece_tokenizer(tmp_path):
    """An XLM-R-style tokenizer splits on whitespace only; the served words still split punctuation."""
    adapter = make_adapter(load_task("wikiann"))
    tok = tm.make_sentencepiece_tokenizer(tmp_path / "tok")
    own = tok(["Paris."], add_special_tokens=False)
    assert len(set(own.word_ids(0))) == 1  # the tokenizer's own pre-tokenizer keeps "Paris." one word
    model = _ConstantModel(tok)
    out = adapter.predict_texts(model, ["Angela Merkel besuchte Paris.", "(München)"])
    assert out[0]["words"] == ["Angela", "Merkel", "besuchte", "Paris", "."]
    assert out[1]["words"] == ["(", "München", ")"]
    assert len(out[0]["tags"]) == 5


class _ConstantModel:
    """Predicts O everywhere (logits favour label 0)."""

    max_length = 32

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def logits(self, encoded):
        import numpy as np

        return [np.tile(np.eye(7)[0], (len(ids), 1)).astype(np.float32) for ids in encoded.input_ids]


def test_adapters_split_words_for_ood_spans():
    """``--ood-span`` counts the words the task splits: punctuation and CJK ideographs for WikiANN,
    whitespace for a classification task."""
    ner = make_adapter(load_task("wikiann"))
    assert ner.words(["北京市很大。", "Paris, France"]) == [["北", "京", "市", "很", "大", "。"], ["Paris", ",", "France"]]
    assert make_adapter(load_task("imdb")).words(["Paris, France"]) == [["Paris,", "France"]]
