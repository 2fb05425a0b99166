"""The teacher: weights fingerprint, tokenizer loading, checkpoint handling, prepare/reuse."""

from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pytest
import torch

import tiny_models as tm
from xdistill.adapters import TOKEN
from xdistill.config import NERDataArguments as DataArguments
from xdistill.config import TeacherArguments
from xdistill.data.types import Feature
from xdistill.errors import ConfigError
from xdistill.teachers import (REFERENCE_MODELS, TEACHER_META, Teacher, TeacherInfo, get_reference, reference_for,
                               weights_fingerprint)
from xdistill.teachers.build import load_tokenizer, output_layer, permute_labels, scratch_architecture
from xdistill.teachers.finetune import TeacherTrainer

SCRATCH_SIZES = tm.SCRATCH_TEACHER_SIZES


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with tm.single_thread():
        yield


@pytest.fixture(autouse=True)
def _no_data_dir_env(monkeypatch):
    monkeypatch.delenv("XDISTILL_DATA_DIR", raising=False)


@pytest.fixture(scope="module")
def adapter():
    return tm.wikiann_adapter()


@pytest.fixture(scope="module")
def enc(adapter, tok):
    return tm.encode(adapter, tok, tm.SENTENCES)


def hub_data_args() -> DataArguments:
    return DataArguments(source="hub")


def logits_of(model, enc, tok) -> list[np.ndarray]:
    return tm.teacher_of(model, tok).logits(TOKEN, enc, tok.pad_token_id)


def no_training(*args, **kw):
    raise AssertionError("the teacher was fine-tuned but should not have been")


# --------------------------------------------------------------------------- weights_fingerprint


def test_fingerprint_is_stable_and_changes_with_any_weight(tok):
    model = tm.make_teacher(len(tok))
    fp = weights_fingerprint(model)
    assert len(fp) == 16
    assert weights_fingerprint(copy.deepcopy(model)) == fp
    for name in ("classifier.bias", "bert.encoder.layer.1.output.dense.weight", "bert.embeddings.word_embeddings.weight"):
        other = copy.deepcopy(model)
        with torch.no_grad():
            other.get_parameter(name).view(-1)[0] += 1e-3
        assert weights_fingerprint(other) != fp, name


def test_fingerprint_differs_between_seeds(tok):
    assert weights_fingerprint(tm.make_teacher(len(tok), seed=0)) != weights_fingerprint(tm.make_teacher(len(tok), seed=1))


def test_fingerprint_of_bfloat16_model(tok):
    model = tm.make_teacher(len(tok)).to(torch.bfloat16)
    fp = weights_fingerprint(model)
    assert len(fp) == 16
    assert fp != weights_fingerprint(tm.make_teacher(len(tok)))


def test_prepare_accepts_a_bfloat16_checkpoint(tmp_path, tok, adapter, enc, monkeypatch):
    tm.make_teacher(len(tok)).to(torch.bfloat16).save_pretrained(tmp_path / "ckpt")
    tok.save_pretrained(tmp_path / "ckpt")
    monkeypatch.setattr(TeacherTrainer, "_fine_tune", no_training)
    trainer = TeacherTrainer(adapter, TeacherArguments(teacher=str(tmp_path / "ckpt")), tmp_path / "out", 0, {})
    teacher = trainer.prepare(tok, enc, enc, False, "d")
    assert teacher.info.fine_tuned_here is False


# --------------------------------------------------------------------------- load_tokenizer


def test_load_tokenizer_from_a_bare_vocab_folder(tmp_path):
    tm.write_vocab(tmp_path / "vocab_only")
    tok = load_tokenizer(TeacherArguments(tokenizer=str(tmp_path / "vocab_only")), hub_data_args())
    assert len(tok) == len(tm.VOCAB)
    assert tok.is_fast
    # cased, accents kept, WordPiece continuation pieces
    assert tok.tokenize("Anna Zürich visited xyz") == ["Anna", "Zürich", "visited", "x", "##y", "##z"]
    assert tok.convert_tokens_to_ids(["[PAD]", "[UNK]", "[CLS]", "[SEP]"]) == [0, 1, 2, 3]
    assert tok.pad_token_id == 0 and tok.cls_token_id == 2 and tok.sep_token_id == 3
    ids = tok("Anna visited Berlin")["input_ids"]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert tok.unk_token_id not in ids


def test_scratch_teacher_finds_the_tokenizer_under_data_dir(tmp_path):
    tm.write_vocab(tmp_path / "tokenizers" / "bert-base-multilingual-cased")
    tok = load_tokenizer(TeacherArguments(), DataArguments(data_dir=str(tmp_path)))
    assert len(tok) == len(tm.VOCAB)


def test_scratch_teacher_without_any_tokenizer_is_a_config_error():
    with pytest.raises(ConfigError, match="--tokenizer"):
        load_tokenizer(TeacherArguments(), hub_data_args())


def test_a_too_small_vocab_is_a_config_error(tmp_path):
    tm.write_vocab(tmp_path / "tiny", tm.SPECIALS)
    with pytest.raises(ConfigError, match="vocab.txt"):
        load_tokenizer(TeacherArguments(tokenizer=str(tmp_path / "tiny")), hub_data_args())


def test_load_tokenizer_from_a_saved_folder(tmp_path, tok):
    tok.save_pretrained(tmp_path / "saved")
    assert (tmp_path / "saved" / "tokenizer_config.json").is_file()
    for targs in (TeacherArguments(tokenizer=str(tmp_path / "saved")), TeacherArguments(teacher=str(tmp_path / "saved"))):
        loaded = load_tokenizer(targs, hub_data_args())
        assert len(loaded) == len(tok)
        text = "Carl met Anna in Zürich , qxz"
        assert loaded(text)["input_ids"] == tok(text)["input_ids"]


# --------------------------------------------------------------------------- _build: checkpoints


def trainer_for(adapter, path, out) -> TeacherTrainer:
    return TeacherTrainer(adapter, TeacherArguments(teacher=str(path)), out, 0, {"test": 1})


def test_checkpoint_with_the_task_labels_is_used_as_is(tmp_path, tok, adapter, enc, monkeypatch):
    original = tm.make_teacher(len(tok))
    original.save_pretrained(tmp_path / "ckpt")
    tok.save_pretrained(tmp_path / "ckpt")
    monkeypatch.setattr(TeacherTrainer, "_fine_tune", no_training)
    trainer = trainer_for(adapter, tmp_path / "ckpt", tmp_path / "out")

    model, needs_training = trainer._build(tok)
    assert needs_training is False
    teacher = trainer.prepare(tok, enc, enc, False, "8 labeled sentences")
    model, info = teacher.model, teacher.info
    assert isinstance(teacher, Teacher) and isinstance(info, TeacherInfo)
    assert info.fine_tuned_here is False
    assert info.trained_from_scratch is False
    assert info.source == str(tmp_path / "ckpt")
    assert info.best_validation_score is None
    assert "none" in info.labeled_data  # the report must not claim it saw our labeled data
    assert info.hidden_size == 32 and info.num_layers == 2
    assert info.fingerprint == weights_fingerprint(original)
    for a, b in zip(logits_of(model, enc, tok), logits_of(original, enc, tok)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    saved = tmp_path / "out" / "teacher"
    assert (saved / TEACHER_META).is_file() and (saved / "config.json").is_file()
    assert json.loads((saved / TEACHER_META).read_text())["info"]["fine_tuned_here"] is False


def test_checkpoint_with_labels_in_another_order_is_permuted(tmp_path, tok, adapter, enc):
    order = ["I-LOC", "O", "B-ORG", "B-PER", "I-ORG", "B-LOC", "I-PER"]
    ckpt = tm.make_teacher(len(tok), labels=order)
    ckpt.save_pretrained(tmp_path / "ckpt")
    model, needs_training = trainer_for(adapter, tmp_path / "ckpt", tmp_path / "out")._build(tok)
    assert needs_training is False
    assert [model.config.id2label[i] for i in range(7)] == list(tm.LABELS)
    assert model.config.label2id == {lab: i for i, lab in enumerate(tm.LABELS)}
    ours, theirs = logits_of(model, enc, tok), logits_of(ckpt, enc, tok)
    for a, b in zip(ours, theirs):
        for j, lab in enumerate(tm.LABELS):
            np.testing.assert_allclose(a[:, j], b[:, order.index(lab)], atol=1e-5, err_msg=lab)
    # the permutation matters: without it the logits would differ
    assert not np.allclose(ours[0], theirs[0], atol=1e-3)
    # decoded tags name the same labels
    assert adapter.decode(ours, enc) == [[order[k] for k in np.asarray(t)] for t in
                                         _word_argmax(theirs, enc)]


def _word_argmax(logits, enc):
    out = [[None] * n for n in enc.n_words]
    for row, lg in enumerate(logits):
        for pos, w in enumerate(enc.word_index[row]):
            if w >= 0:
                out[enc.example[row]][w] = int(lg[pos].argmax())
    return out


@pytest.mark.parametrize("labels", [("O", "B-MISC", "I-MISC"),
                                    ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-MISC", "I-MISC")])
def test_checkpoint_with_other_labels_is_a_config_error(tmp_path, tok, adapter, labels):
    tm.make_teacher(len(tok), labels=labels).save_pretrained(tmp_path / "ckpt")
    with pytest.raises(ConfigError) as ei:
        trainer_for(adapter, tmp_path / "ckpt", tmp_path / "out")._build(tok)
    msg = str(ei.value)
    assert "--teacher" in msg
    assert "B-MISC" in msg  # the checkpoint's labels
    assert "B-LOC" in msg  # the task's labels


def test_base_checkpoint_with_default_labels_needs_training(tmp_path, tok, adapter):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    base = BertModel(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=37, max_position_embeddings=64))
    assert set(base.config.id2label.values()) == {"LABEL_0", "LABEL_1"}
    base.save_pretrained(tmp_path / "base")
    model, needs_training = trainer_for(adapter, tmp_path / "base", tmp_path / "out")._build(tok)
    assert needs_training is True
    assert model.num_labels == 7
    assert model.classifier.out_features == 7
    assert [model.config.id2label[i] for i in range(7)] == list(tm.LABELS)
    # the encoder comes from the checkpoint
    torch.testing.assert_close(model.bert.embeddings.word_embeddings.weight, base.embeddings.word_embeddings.weight)


def test_folder_without_a_checkpoint_is_a_config_error(tmp_path, tok, adapter):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="--teacher"):
        trainer_for(adapter, tmp_path / "empty", tmp_path / "out")._build(tok)


# --------------------------------------------------------------------------- prepare: scratch teacher, reuse


SETUP = {"task": "wikiann", "langs": ["xx"], "seed": 0, "teacher_data": "abc"}


@pytest.fixture(scope="module")
def scratch_run(tmp_path_factory, tok, adapter, enc):
    """One real (tiny, one epoch) fine-tuning of a scratch teacher; shared by the tests below."""
    out = tmp_path_factory.mktemp("run")
    validation = tm.encode(adapter, tok, tm.SENTENCES[:3])
    trainer = TeacherTrainer(adapter, TeacherArguments(**SCRATCH_SIZES), out, 0, SETUP)
    teacher = trainer.prepare(tok, enc, validation, False, "8 labeled sentences")
    return out, teacher.model, teacher.info, validation


def test_scratch_teacher_is_trained_and_saved(scratch_run, tok):
    out, model, info, _ = scratch_run
    assert info.trained_from_scratch is True
    assert info.fine_tuned_here is True
    assert info.source == "scratch"
    assert info.hidden_size == 32 and info.num_layers == 1
    assert info.architecture == "BertForTokenClassification"
    assert info.family == "bert" and info.reference == "mbert-base" and info.vocabulary == "WordPiece"
    assert info.description.startswith("BERT trained from scratch with a ") and info.description.endswith("(not mBERT)")
    assert info.parameters == sum(p.numel() for p in model.parameters())
    assert info.labeled_data == "8 labeled sentences"
    assert isinstance(info.best_validation_score, float)
    assert info.reused is False and isinstance(info.minutes, float) and info.minutes >= 0
    assert info.fingerprint == weights_fingerprint(model)
    assert model.config.vocab_size == len(tok)
    assert [model.config.id2label[i] for i in range(7)] == list(tm.LABELS)
    saved = out / "teacher"
    assert saved.is_dir() and not (out / "teacher.tmp").exists()
    meta = json.loads((saved / TEACHER_META).read_text())
    assert set(meta) == {"setup_key", "info", "task", "files"}
    assert meta["files"]["model.safetensors"]["bytes"] == (saved / "model.safetensors").stat().st_size
    assert meta["info"]["fingerprint"] == info.fingerprint
    assert (saved / "config.json").is_file() and (saved / "tokenizer_config.json").is_file()


def test_same_setup_reuses_the_saved_teacher(scratch_run, tok, adapter, enc, monkeypatch):
    out, model, info, validation = scratch_run

    def no_build(*a, **k):
        raise AssertionError("the saved teacher should have been reused")

    monkeypatch.setattr(TeacherTrainer, "_build", no_build)
    monkeypatch.setattr(TeacherTrainer, "_fine_tune", no_training)
    again = TeacherTrainer(adapter, TeacherArguments(**SCRATCH_SIZES), out, 0, dict(reversed(list(SETUP.items()))))
    teacher2 = again.prepare(tok, enc, validation, False, "8 labeled sentences")
    model2, info2 = teacher2.model, teacher2.info
    assert info2 == dataclasses.replace(info, reused=True)  # and the minutes of the run that trained it
    assert weights_fingerprint(model2) == info.fingerprint
    for a, b in zip(logits_of(model2, enc, tok), logits_of(model, enc, tok)):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_other_setup_does_not_reuse_the_saved_teacher(scratch_run, tok, adapter, enc, monkeypatch, tmp_path):
    import shutil

    out0, _, info, validation = scratch_run
    out = tmp_path / "copy"
    shutil.copytree(out0 / "teacher", out / "teacher")  # leave the shared run untouched
    calls = []

    def fake_fine_tune(self, model, tokenizer, train, validation, resume):
        calls.append(len(train))
        return 12.5

    monkeypatch.setattr(TeacherTrainer, "_fine_tune", fake_fine_tune)
    other = TeacherTrainer(adapter, TeacherArguments(**SCRATCH_SIZES), out, 0, {**SETUP, "teacher_data": "xyz"})
    info2 = other.prepare(tok, enc, validation, False, "8 labeled sentences").info
    assert calls == [len(enc)]
    assert info2.best_validation_score == 12.5
    meta = json.loads((out / "teacher" / TEACHER_META).read_text())
    assert meta["setup_key"] == other.setup_key != TeacherTrainer(adapter, TeacherArguments(), out, 0, SETUP).setup_key
    assert info2.fingerprint != info.fingerprint  # a fresh scratch model, not the saved one


# --------------------------------------------------------------------------- named features


def test_features_returns_the_requested_named_outputs(tok, enc):
    model = tm.make_teacher(len(tok))
    teacher = tm.teacher_of(model, tok)
    b = TOKEN.collate(enc, [0, 2], tok.pad_token_id)
    feats = teacher.features(b["input_ids"], b["attention_mask"],
                             [Feature("logits"), Feature("hidden_states", 0), Feature("hidden_states", -1),
                              Feature("attentions", 2)])
    with torch.no_grad():
        ref = model(**{k: b[k] for k in ("input_ids", "attention_mask")}, output_hidden_states=True,
                    output_attentions=True)
    B, T = b["input_ids"].shape
    assert list(feats) == ["logits", "hidden_states.0", "hidden_states.-1", "attentions.2"]
    torch.testing.assert_close(feats["logits"], ref.logits)
    torch.testing.assert_close(feats["hidden_states.0"], ref.hidden_states[0])  # the embedding output
    torch.testing.assert_close(feats["hidden_states.-1"], ref.hidden_states[2])  # -1 is the last layer
    assert feats["attentions.2"].shape == (B, 2, T, T)
    torch.testing.assert_close(feats["attentions.2"].sum(-1), torch.ones(B, 2, T))  # softmax over the last axis


def test_feature_layers_are_checked(tok, enc):
    teacher = tm.teacher_of(tm.make_teacher(len(tok)), tok)
    assert teacher.layer(-1) == 2 and teacher.layer(0) == 0 and teacher.layer(-3) == 0
    with pytest.raises(ConfigError, match=r"--teacher-layer 3: the teacher has 2 layers; expected -3\.\.2"):
        teacher.layer(3)
    b = TOKEN.collate(enc, [0], tok.pad_token_id)
    with pytest.raises(ConfigError, match="attentions.0.*1..2"):
        teacher.features(b["input_ids"], b["attention_mask"], [Feature("attentions", 0)])
    assert teacher.feature_width(Feature("logits")) == 7 and teacher.feature_width(Feature("hidden_states", 1)) == 32


# --------------------------------------------------------------------------- architectures, heads, references


def test_scratch_architecture_follows_the_vocabulary(tok, tmp_path):
    assert scratch_architecture("auto", tok) == "bert"
    sp = tm.make_sentencepiece_tokenizer(tmp_path / "sp")
    assert scratch_architecture("auto", sp) == "xlm-roberta"
    assert scratch_architecture("bert", sp) == "bert"
    with pytest.raises(ConfigError, match="--teacher-architecture.*bert, xlm-roberta"):
        scratch_architecture("gpt", tok)


def test_scratch_teacher_dropout(tok, tmp_path):
    from xdistill.teachers.build import scratch_config

    for arch, t in (("bert", tok), ("xlm-roberta", tm.make_sentencepiece_tokenizer(tmp_path / "sp"))):
        cfg = scratch_config(TeacherArguments(teacher_architecture=arch, teacher_dropout=0.25), t, ["O", "B-PER"])
        assert cfg.hidden_dropout_prob == cfg.attention_probs_dropout_prob == 0.25
    assert scratch_config(TeacherArguments(), tok, ["O"]).hidden_dropout_prob == 0.1
    with pytest.raises(ConfigError, match="--teacher-dropout: expected 0 <= p < 1, got 1.0"):
        TeacherArguments(teacher_dropout=1.0)


def test_scratch_xlmr_teacher_is_trained_and_named_honestly(tmp_path, adapter):
    sp = tm.make_sentencepiece_tokenizer(tmp_path / "sp")
    enc = tm.encode(adapter, sp, tm.SENTENCES)
    targs = TeacherArguments(**SCRATCH_SIZES, tokenizer=str(tmp_path / "sp"))
    teacher = TeacherTrainer(adapter, targs, tmp_path / "out", 0, {"x": 1}).prepare(sp, enc, enc, False, "8")
    info = teacher.info
    assert info.architecture == "XLMRobertaForTokenClassification" and info.family == "xlm-roberta"
    assert info.reference == "xlmr-base" and teacher.reference.name == "XLM-R-base"
    assert info.vocabulary == "Unigram"
    assert info.description == f"XLM-R trained from scratch with a {len(sp):,}-token vocabulary (not XLM-R)"
    assert teacher.model.config.pad_token_id == sp.pad_token_id == 1
    loaded = Teacher.load(tmp_path / "out" / "teacher")
    assert loaded.info == info and loaded.level is TOKEN and loaded.task["task"] == "wikiann"


def test_output_layer_of_a_roberta_style_head_is_permuted(tok):
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    torch.manual_seed(0)
    cfg = XLMRobertaConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=20, num_labels=3, max_position_embeddings=40)
    model = XLMRobertaForSequenceClassification(cfg).eval()
    assert output_layer(model, 3) is model.classifier.out_proj  # not the (16 -> 16) dense layer before it
    ids = torch.tensor([[0, 5, 6, 7, 2]])
    before = model(input_ids=ids).logits
    permute_labels(model, [2, 0, 1])
    torch.testing.assert_close(model(input_ids=ids).logits, before[:, [2, 0, 1]])
    with pytest.raises(ConfigError, match="no linear output layer with 5 outputs"):
        output_layer(model, 5)


def test_reference_models_by_family():
    assert reference_for("bert").name == "mBERT-base" and reference_for("distilbert").key == "mbert-base"
    assert reference_for("xlm-roberta").name == "XLM-R-base" and reference_for(None).key == "mbert-base"
    assert get_reference("xlm-roberta-base") is REFERENCE_MODELS["xlmr-base"]
    with pytest.raises(ConfigError, match="unknown reference model"):
        get_reference("gpt2")


@pytest.mark.parametrize("key", sorted(REFERENCE_MODELS))
def test_reference_parameter_counts_match_their_configurations(key):
    """The parameter counts reports divide by are those of the configuration with a 7-label token head."""
    from transformers import AutoConfig, AutoModelForTokenClassification

    ref = REFERENCE_MODELS[key]
    cfg = AutoConfig.for_model(ref.model_type, **ref.config, num_labels=7)
    with torch.device("meta"):
        model = AutoModelForTokenClassification.from_config(cfg)
    assert abs(sum(p.numel() for p in model.parameters()) - ref.parameters) < 0.05e6
    assert ref.vocab_size == cfg.vocab_size


def test_usable_positions_of_roberta_style_models():
    from transformers import BertConfig, XLMRobertaConfig

    from xdistill.teachers import usable_positions

    assert usable_positions(XLMRobertaConfig(max_position_embeddings=514, pad_token_id=1)) == 512
    assert usable_positions(BertConfig(max_position_embeddings=512)) == 512


def test_a_distilbert_teacher_returns_named_features_and_fills_the_cache(tok, enc, adapter, tmp_path):
    """Any transformers family: DistilBERT names its sizes dim/n_layers and has no token types."""
    from transformers import DistilBertConfig, DistilBertForTokenClassification

    from xdistill.transfer import label_rows

    torch.manual_seed(0)
    model = DistilBertForTokenClassification(DistilBertConfig(
        vocab_size=len(tok), dim=32, n_layers=2, n_heads=2, hidden_dim=37, max_position_embeddings=64,
        num_labels=7)).eval()
    teacher = tm.teacher_of(model, tok)
    assert teacher.num_layers == 2 and teacher.hidden_size == 32 and teacher.level is TOKEN
    b = TOKEN.collate(enc, [0, 1], tok.pad_token_id)
    feats = teacher.features(b["input_ids"], b["attention_mask"], [Feature("logits"), Feature("hidden_states", 1)])
    assert feats["logits"].shape[-1] == 7 and feats["hidden_states.1"].shape[-1] == 32
    cache, _ = label_rows(teacher, adapter.level, enc, [Feature("hidden_states", 2), Feature("logits")], tmp_path,
                          max_tokens=64, name="transfer")
    assert cache.row("hidden_states.2", 0).shape == (len(enc.input_ids[0]), 32)
    assert reference_for(model.config.model_type).name == "mBERT-base"
