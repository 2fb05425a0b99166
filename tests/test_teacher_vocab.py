"""A scratch teacher's vocabulary pruned to the run's text (``--teacher-vocab pruned``,
:mod:`xdistill.pipeline.teacher_vocab`).

The main tests use real WikiANN sentences of several scripts and mBERT's cased WordPiece vocabulary
from the data folder (skipped without it); the option checks run everywhere.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from datasets import Dataset

from tests.tiny import make_adapter, make_tokenizer
from xdistill.cli import main
from xdistill.config import TeacherArguments
from xdistill.data.readers import read_panx
from xdistill.errors import ConfigError
from xdistill.pipeline.teacher_vocab import character_pieces, prune_teacher_vocabulary
from xdistill.teachers.base import describe_teacher
from xdistill.teachers.references import reference_for

LANGS = ("de", "ru", "ar", "hi", "zh", "ja")


@pytest.fixture(scope="module")
def mbert(data_dir):
    from transformers import BertTokenizerFast

    return BertTokenizerFast(vocab=str(data_dir / "tokenizers" / "bert-base-multilingual-cased" / "vocab.txt"),
                             do_lower_case=False, strip_accents=False, tokenize_chinese_chars=True)


@pytest.fixture(scope="module")
def splits(data_dir):
    """``(seen, unseen)`` datasets: 150 train sentences of each language, and 50 dev sentences of each."""
    def take(split, n):
        rows = {"tokens": [], "tags": []}
        for lang in LANGS:
            sents, _ = read_panx(data_dir / "wikiann" / f"{split}-{lang}.tsv")
            for s in sents[:n]:
                rows["tokens"].append(list(s.tokens))
                rows["tags"].append(list(s.tags))
        return Dataset.from_dict(rows)
    return take("train", 150), take("dev", 50)


def test_seen_text_encodes_to_the_same_pieces(mbert, splits):
    adapter = make_adapter()
    seen, _ = splits
    full = adapter.encode(seen, mbert, 64)
    pruned, counts = prune_teacher_vocabulary(mbert, [full], adapter.texts(seen))
    again = adapter.encode(seen, pruned, 64)
    full_tokens = mbert.convert_ids_to_tokens(full.input_ids.flat.tolist())
    assert pruned.convert_ids_to_tokens(again.input_ids.flat.tolist()) == full_tokens
    assert np.array_equal(again.input_ids.offsets, full.input_ids.offsets)
    assert np.array_equal(again.labels.flat, full.labels.flat) and np.array_equal(again.word_index.flat,
                                                                                     full.word_index.flat)
    assert len(pruned) == counts["pruned"] < counts["full"] == len(mbert) == 119547
    assert counts["from_text"] == len(np.unique(full.input_ids.flat))
    assert pruned.pad_token_id == 0 and pruned.unk_token_id == 1
    assert pruned.cls_token_id != pruned.unk_token_id and pruned.mask_token_id is not None


def test_unseen_words_split_into_kept_characters(mbert, splits):
    adapter = make_adapter()
    seen, unseen = splits
    full = adapter.encode(seen, mbert, 64)
    pruned, _ = prune_teacher_vocabulary(mbert, [full], adapter.texts(seen))
    seen_chars = set("".join(adapter.texts(seen)))
    words = [w for ws in unseen["tokens"] for w in ws if set(w) <= seen_chars]
    known = [w for w, x in zip(words, mbert(words, add_special_tokens=False)["input_ids"]) if mbert.unk_token_id not in x]
    # a word of the run's characters that the full vocabulary reads without [UNK] keeps real pieces
    ids = pruned(known, add_special_tokens=False)["input_ids"]
    assert len(known) > 3000 and all(x and pruned.unk_token_id not in x for x in ids)


def test_character_pieces_both_forms(mbert):
    ids = character_pieces(mbert, ["ab", "北"])
    assert set(mbert.convert_ids_to_tokens(ids)) == {"a", "b", "##a", "##b", "北", "##北"}


def test_pruned_tokenizer_saves_and_reloads(mbert, splits, tmp_path):
    from transformers import AutoTokenizer

    adapter = make_adapter()
    seen, _ = splits
    pruned, _ = prune_teacher_vocabulary(mbert, [adapter.encode(seen, mbert, 64)], adapter.texts(seen))
    pruned.save_pretrained(tmp_path)
    back = AutoTokenizer.from_pretrained(tmp_path)
    text = adapter.texts(seen)[:20]
    assert back(text)["input_ids"] == pruned(text)["input_ids"] and len(back) == len(pruned)


def test_sentencepiece_tokenizer_is_refused(tmp_path):
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    uni = Tokenizer(models.Unigram([("<pad>", 0.0), ("<unk>", 0.0), ("a", -1.0)], unk_id=1))
    tok = PreTrainedTokenizerFast(tokenizer_object=uni, pad_token="<pad>", unk_token="<unk>")
    with pytest.raises(ConfigError, match="--teacher-vocab pruned.*not a WordPiece"):
        prune_teacher_vocabulary(tok, [], ["a"])


def test_option_checks():
    with pytest.raises(ConfigError, match="--teacher-vocab: expected one of full, pruned"):
        TeacherArguments(teacher_vocab="small")
    assert TeacherArguments(teacher_vocab="pruned").prunes_vocabulary
    assert not TeacherArguments(teacher_vocab="pruned", teacher="some/checkpoint").prunes_vocabulary
    assert not TeacherArguments().prunes_vocabulary


def test_description_names_the_pruning():
    ref = reference_for("bert")
    assert describe_teacher("bert", True, "scratch", 119547, ref) == \
        "BERT trained from scratch with the mBERT vocabulary (not mBERT)"
    assert describe_teacher("bert", True, "scratch", 4321, ref, pruned_from=119547) == \
        "BERT trained from scratch with the mBERT vocabulary pruned to 4,321 pieces of the run's text (not mBERT)"


def test_tiny_wordpiece_prunes_to_the_seen_pieces(tmp_path):
    tok = make_tokenizer(tmp_path)
    adapter = make_adapter()
    ds = Dataset.from_dict({"tokens": [["Anna", "lives", "in", "Hamburg"]], "tags": [["B-PER", "O", "O", "B-LOC"]]})
    pruned, counts = prune_teacher_vocabulary(tok, [adapter.encode(ds, tok, 16)], adapter.texts(ds))
    kept = set(pruned.get_vocab())
    assert {"Anna", "lives", "in", "Ham", "##burg"} <= kept and "Paris" not in kept and "visited" not in kept
    assert counts["full"] == len(tok) and counts["pruned"] == len(pruned)


@pytest.mark.integration
def test_run_with_the_recipe_options(data_dir, tmp_path):
    from transformers import AutoConfig, AutoTokenizer

    out = tmp_path / "run"
    argv = ["ner", "--preset", "smoke", "--data-dir", str(data_dir), "--output-dir", str(out), "--langs", "en,sw",
            "--teacher-vocab", "pruned", "--teacher-epochs", "1", "--max-epochs", "1", "--baseline-max-epochs", "1",
            "--teacher-label-all-tokens", "--teacher-dropout", "0.2"]
    assert main(argv) == 0
    r = json.loads((out / "report.json").read_text())
    v = r["teacher_vocabulary"]
    assert v["full"] == 119547 and 1000 < v["pruned"] < 20000 and v["from_text"] <= v["pruned"]
    assert r["student"]["teacher_vocabulary"] == v["pruned"]
    assert f"pruned to {v['pruned']:,} pieces" in r["teacher"]["description"]
    tok, cfg = AutoTokenizer.from_pretrained(out / "teacher"), AutoConfig.from_pretrained(out / "teacher")
    assert len(tok) == v["pruned"] and cfg.vocab_size == v["pruned"]
    # the other two recipe options of this run reach the teacher
    assert cfg.hidden_dropout_prob == cfg.attention_probs_dropout_prob == 0.2
    assert r["teacher"]["labeled_data"].endswith("every subword labeled")
    assert r["settings"]["teacher"]["teacher_vocab"] == "pruned"
