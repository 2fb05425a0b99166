"""The student's tokenizer over the pruned vocabulary (:mod:`xdistill.students.tokenizer`).

The main tests use the real mBERT (cased WordPiece) vocabulary from the data folder and are skipped
without it; the error cases and the tiny-tokenizer checks run everywhere.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from xdistill.errors import ConfigError
from xdistill.students.tokenizer import can_prune, pruned_tokenizer
from xdistill.students.vocab import prune_vocabulary

SENTENCES = {
    "de": "Angela Merkel besuchte Paris .",
    "ru": "Владимир Путин посетил Москву .",
    "zh": "北京是中国的首都。",
    "ar": "زار أنجيلا ميركل باريس .",
}


@pytest.fixture(scope="module")
def mbert(data_dir):
    """mBERT's cased WordPiece tokenizer, loaded as the other tests load it."""
    from transformers import BertTokenizerFast

    return BertTokenizerFast(vocab=str(data_dir / "tokenizers" / "bert-base-multilingual-cased" / "vocab.txt"),
                             do_lower_case=False, strip_accents=False, tokenize_chinese_chars=True)


def _prune(teacher, texts):
    rows = [teacher(t)["input_ids"] for t in texts] + [teacher(t.split(), is_split_into_words=True)["input_ids"]
                                                       for t in texts]
    return prune_vocabulary(rows, len(teacher), teacher.pad_token_id, teacher.unk_token_id, teacher.all_special_ids)


@pytest.fixture(scope="module")
def pruned(mbert):
    kept, vocab_map = _prune(mbert, SENTENCES.values())
    return pruned_tokenizer(mbert, kept.tolist()), kept, vocab_map


def _same_encodings(student, teacher, vocab_map, *args, **kw):
    t, s = teacher(*args, **kw), student(*args, **kw)
    assert s["input_ids"] == vocab_map[t["input_ids"]].tolist()
    assert s.word_ids() == t.word_ids()
    assert s["token_type_ids"] == t["token_type_ids"] and s["attention_mask"] == t["attention_mask"]


def test_seen_sentences_tokenize_as_the_teacher(mbert, pruned):
    tok, kept, vocab_map = pruned
    assert type(tok) is type(mbert)
    assert set(mbert.all_special_ids) <= set(kept.tolist())
    assert tok.pad_token_id == 0 and tok.unk_token_id == 1
    for text in SENTENCES.values():
        _same_encodings(tok, mbert, vocab_map, text)
        _same_encodings(tok, mbert, vocab_map, text.split(), is_split_into_words=True)
        ids = tok(text)["input_ids"]
        assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
        assert tok.convert_ids_to_tokens(ids) == mbert.convert_ids_to_tokens(mbert(text)["input_ids"])
        assert tok.decode(ids, skip_special_tokens=True) == mbert.decode(mbert(text)["input_ids"],
                                                                          skip_special_tokens=True)
    _same_encodings(tok, mbert, vocab_map, SENTENCES["de"], SENTENCES["ru"])  # a pair: [CLS] A [SEP] B [SEP]
    batch = tok(list(SENTENCES.values()), padding=True)  # padding uses the new pad id
    assert batch["input_ids"][2][-1] == 0 and batch["attention_mask"][2][-1] == 0


def test_special_tokens_and_settings_follow_the_teacher(mbert, pruned):
    tok, _, vocab_map = pruned
    for attr in ("cls", "sep", "pad", "unk", "mask"):
        assert getattr(tok, f"{attr}_token") == getattr(mbert, f"{attr}_token")
        assert getattr(tok, f"{attr}_token_id") == vocab_map[getattr(mbert, f"{attr}_token_id")]
    assert tok("[MASK] Paris")["input_ids"][1] == tok.mask_token_id  # an added token keeps working
    assert sorted(tok.all_special_ids) == sorted(vocab_map[mbert.all_special_ids].tolist())
    assert tok.model_max_length == mbert.model_max_length and tok.padding_side == mbert.padding_side
    assert tok.truncation_side == mbert.truncation_side
    assert tok.init_kwargs["do_lower_case"] is False and tok.init_kwargs["tokenize_chinese_chars"] is True
    t_spec, s_spec = (json.loads(x.backend_tokenizer.to_str()) for x in (mbert, tok))
    for part in ("normalizer", "pre_tokenizer", "decoder"):
        assert s_spec[part] == t_spec[part]
    assert {k: v for k, v in s_spec["model"].items() if k != "vocab"} == \
        {k: v for k, v in t_spec["model"].items() if k != "vocab"}


def test_save_and_reload_round_trip(mbert, pruned, tmp_path):
    from transformers import AutoTokenizer

    tok, kept, vocab_map = pruned
    tok.save_pretrained(tmp_path)
    back = AutoTokenizer.from_pretrained(tmp_path)
    assert type(back) is type(tok) and len(back) == len(kept)
    assert back.get_vocab() == tok.get_vocab()
    for attr in ("cls", "sep", "pad", "unk", "mask"):
        assert getattr(back, f"{attr}_token") == getattr(mbert, f"{attr}_token")
        assert getattr(back, f"{attr}_token_id") == vocab_map[getattr(mbert, f"{attr}_token_id")]
    for text in list(SENTENCES.values()) + ["Путинил Αθήνα Merkels"]:
        assert back(text)["input_ids"] == tok(text)["input_ids"]
        words = text.split()
        assert back(words, is_split_into_words=True).word_ids() == tok(words, is_split_into_words=True).word_ids()
    assert json.loads(back.backend_tokenizer.to_str())["normalizer"] == \
        json.loads(mbert.backend_tokenizer.to_str())["normalizer"]


def test_teacher_loaded_from_a_saved_folder(mbert, tmp_path):
    """A teacher from ``from_pretrained`` carries its ids in ``init_kwargs`` (added_tokens_decoder): not copied."""
    from transformers import AutoTokenizer

    mbert.save_pretrained(tmp_path / "teacher")
    teacher = AutoTokenizer.from_pretrained(tmp_path / "teacher")
    kept, vocab_map = _prune(teacher, SENTENCES.values())
    tok = pruned_tokenizer(teacher, kept.tolist())
    tok.save_pretrained(tmp_path / "student")
    back = AutoTokenizer.from_pretrained(tmp_path / "student")
    assert len(tok) == len(back) == len(kept)
    for text in SENTENCES.values():
        _same_encodings(tok, teacher, vocab_map, text)
        _same_encodings(back, teacher, vocab_map, text)


def test_unseen_words_use_kept_pieces_or_unk(mbert, pruned):
    tok, kept, _ = pruned
    kept_tokens = set(mbert.convert_ids_to_tokens(kept.tolist()))
    # "Путин" was seen as П ##ути ##н and "посетил" as посет ##ил: an unseen word reuses those pieces
    assert tok.tokenize("Путинил") == ["П", "##ути", "##н", "##ил"]
    # no Greek piece is kept, and "Merkel" is but "##s" is not: WordPiece makes the whole word [UNK]
    assert tok.tokenize("Αθήνα Merkels") == ["[UNK]", "[UNK]"]
    for text in ["Путинил", "Αθήνα", "Merkels", "Москвуу", "ParisParis", "北京大学", "Zwischenstaatlichkeit"]:
        ids = tok(text)["input_ids"]
        assert all(0 <= i < len(kept) for i in ids)
        pieces = tok.convert_ids_to_tokens(ids)[1:-1]
        assert set(pieces) <= kept_tokens
        if "[UNK]" not in pieces:
            assert "".join(p.removeprefix("##") for p in pieces) == text.replace(" ", "")


def test_length_is_the_kept_vocabulary(mbert, pruned):
    tok, kept, _ = pruned
    assert len(tok) == tok.vocab_size == len(kept)
    assert tok.get_vocab() == {t: s for s, t in enumerate(mbert.convert_ids_to_tokens(kept.tolist()))}
    assert can_prune(mbert) and can_prune(tok)


# --- tiny tokenizers: run without the data folder -----------------------------------------------------------------

def test_tiny_tokenizer_with_a_special_token_left_out(tok, tmp_path):
    from transformers import AutoTokenizer

    texts = ["Anna visited Berlin .", "Bob lives in Paris ."]
    rows = [tok(t)["input_ids"] for t in texts]
    keep = [tok.cls_token_id, tok.sep_token_id]  # [MASK] not kept: it is dropped
    kept, vocab_map = prune_vocabulary(rows, len(tok), tok.pad_token_id, tok.unk_token_id, keep)
    small = pruned_tokenizer(tok, kept)  # a numpy array is fine too
    assert len(small) == len(kept) and small.mask_token is None
    for t in texts:
        assert small(t)["input_ids"] == vocab_map[tok(t)["input_ids"]].tolist()
    small.save_pretrained(tmp_path)
    back = AutoTokenizer.from_pretrained(tmp_path)
    assert len(back) == len(kept) and back.mask_token is None
    assert back(texts[0])["input_ids"] == small(texts[0])["input_ids"]


def test_generic_fast_wordpiece_tokenizer(tmp_path):
    """A WordPiece backend wrapped in ``PreTrainedTokenizerFast`` (no BERT class) with a BertProcessing
    post-processor, padding enabled in the backend and an extra special token."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["[UNK]", "[X]", "[PAD]", "[CLS]", "[SEP]", "paris", "berlin", "ber",
                                         "##lin", "##is", "par", "<e1>", "."])}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.BertProcessing(("[SEP]", 4), ("[CLS]", 3))
    backend.enable_padding(pad_id=2, pad_token="[PAD]")
    teacher = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]",
                                      cls_token="[CLS]", sep_token="[SEP]", extra_special_tokens=["<e1>"])
    texts = ["Paris .", "Berlin <e1> Paris"]
    # (calling a transformers tokenizer turns its backend's padding off: encode with the backends first)
    teacher_batch = [e.ids for e in teacher.backend_tokenizer.encode_batch(texts)]
    kept, vocab_map = prune_vocabulary(teacher_batch, len(teacher), teacher.pad_token_id, teacher.unk_token_id,
                                       teacher.all_special_ids)
    tok = pruned_tokenizer(teacher, kept)
    assert len(tok) == len(kept) and tok.extra_special_tokens == ["<e1>"]
    assert tok.backend_tokenizer.padding["pad_id"] == tok.pad_token_id == 0  # the backend pads with the new id
    assert [e.ids for e in tok.backend_tokenizer.encode_batch(texts)] == [vocab_map[r].tolist() for r in teacher_batch]
    assert teacher_batch[0][-1] == teacher.pad_token_id  # the batch was padded
    for t in texts:
        assert tok(t)["input_ids"] == vocab_map[teacher(t)["input_ids"]].tolist()
    batch = tok(texts, padding=True)
    assert batch["input_ids"][0][-1] == 0
    tok.save_pretrained(tmp_path)
    back = AutoTokenizer.from_pretrained(tmp_path)
    assert len(back) == len(kept) and back(texts, padding=True)["input_ids"] == batch["input_ids"]


def test_post_processor_tokens_must_be_kept(tok):
    rows = [tok("Anna visited Berlin .", add_special_tokens=False)["input_ids"]]
    kept, _ = prune_vocabulary(rows, len(tok), tok.pad_token_id, tok.unk_token_id)
    with pytest.raises(ValueError, match=r"post-processor adds '\[CLS\]'"):
        pruned_tokenizer(tok, kept)


@pytest.mark.parametrize("bad, match", [
    ([1, 0, 2, 3], "must start with the teacher's pad and unknown ids"),
    ([0, 1, 2, 3, 2], "repeats ids"),
    ([0, 1, 2, 10_000], "out of range"),
    ([0, 1, -1], "out of range"),
    ([0], "must start with"),
    ([[0, 1]], "1-D"),
])
def test_bad_kept_raises_value_error(tok, bad, match):
    with pytest.raises(ValueError, match=match) as e:
        pruned_tokenizer(tok, bad)
    assert not isinstance(e.value, ConfigError)


def _unigram_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = [("<pad>", 0.0), ("<unk>", 0.0), ("▁Paris", -1.0), ("▁Berlin", -1.0), ("▁", -2.0), ("a", -3.0)]
    backend = Tokenizer(models.Unigram(vocab, unk_id=1))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>")


def _bpe_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE({"<pad>": 0, "<unk>": 1, "a": 2, "b": 3, "ab": 4}, [("a", "b")], unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>")


def test_sentencepiece_tokenizers_are_not_pruned(tmp_path):
    pytest.importorskip("sentencepiece")
    import tiny_models

    xlmr = tiny_models.make_sentencepiece_tokenizer(tmp_path / "xlmr")  # XLM-R's layout, a Unigram model
    for teacher, model in [(xlmr, "Unigram"), (_unigram_tokenizer(), "Unigram"), (_bpe_tokenizer(), "BPE")]:
        assert not can_prune(teacher)
        with pytest.raises(ConfigError, match=rf"tokenizer {type(teacher).__name__}.*its model is {model}, "
                                              r"not WordPiece, so its vocabulary cannot be pruned safely.*kept whole"):
            pruned_tokenizer(teacher, [teacher.pad_token_id, teacher.unk_token_id])


def test_can_prune(tok):
    assert can_prune(tok)
    assert not can_prune(object())
    kept = np.arange(len(tok))  # keeping everything gives the same tokenizer
    same = pruned_tokenizer(tok, kept)
    assert same.get_vocab() == tok.get_vocab() and same("Anna visited Zürich .")["input_ids"] == \
        tok("Anna visited Zürich .")["input_ids"]
