"""The teacher recipe: masked-language-model pretraining (xdistill.teachers.mlm: whole-word masking, the
masked-positions loss, saving (AutoModelForMaskedLM loads it and fills a mask), reuse and exact resume)
and temperature-based sampling over languages."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest
import torch
from transformers import AutoModelForMaskedLM, BertForMaskedLM, pipeline

import tiny
import tiny_models as tm
from xdistill.config import TeacherArguments
from xdistill.data.types import Ragged
from xdistill.errors import ConfigError
from xdistill.data.batching import temperature_repeats
from xdistill.teachers.sampling import repeat_groups
from xdistill.teachers.build import scratch_config
from xdistill.teachers.mlm import (MLM_META, MaskedPositionsTrainer, MLMPretrainer, MLMText, WholeWordMaskCollator,
                                   encode_mlm_text, masked_lm_loss, mlm_head)

# words of 1 to 4 subwords over the tiny vocabulary ("abcd" -> a ##b ##c ##d)
WORDS = ["Anna", "visited", "Berlin", "abcd", "xy", "Paris", "klmn", "pq", "Zürich", "rst"]


def _rows(tok, n: int = 200):
    texts = [" ".join(WORDS[(i + j) % len(WORDS)] for j in range(3 + i % 5)) for i in range(n)]
    return encode_mlm_text(texts, tok, 32)


def test_encoding_keeps_words_and_cuts_long_texts_into_windows(tok):
    text = encode_mlm_text(["abcd xy Anna", " ".join(["klmn"] * 20)], tok, 16)
    assert text.texts == 2 and text.words == 23
    assert text.input_ids[0] == tok("abcd xy Anna")["input_ids"]
    assert text.word_ids[0] == [-1, 0, 0, 0, 0, 1, 1, 2, -1]
    assert len(text) == 1 + 6  # 20 words of 4 subwords: 80 tokens in windows of 14
    assert all(len(r) <= 16 for r in text.input_ids)


def test_text_rows_are_compact_and_the_fingerprint_is_unchanged(tok):
    text = MLMText([[101, 5, 70000, 102], [101, 7, 102]], [[-1, 0, 0, -1], [-1, 0, -1]])
    assert isinstance(text.input_ids, Ragged) and isinstance(text.word_ids, Ragged) and text.tokens == 7
    # the value the list-of-lists MLMText gave (before 2026-12-03): saved teachers' keys still match
    assert text.fingerprint() == "6e26ee21cf19beca"
    rows = _rows(tok, 60)
    rows_in_chunks = encode_mlm_text([" ".join(WORDS[(i + j) % len(WORDS)] for j in range(3 + i % 5))
                                      for i in range(60)] + ["", "  "], tok, 32, chunk=7)
    assert rows_in_chunks.input_ids == rows.input_ids and rows_in_chunks.word_ids == rows.word_ids
    assert (rows_in_chunks.texts, rows_in_chunks.words) == (rows.texts, rows.words)
    train, held = rows.split(10, seed=0)
    assert len(train) == 50 and len(held) == 10 and sorted(map(tuple, [*train.input_ids, *held.input_ids])) == sorted(
        map(tuple, rows.input_ids))


def test_whole_word_masking_covers_every_subword_at_the_right_rate(tok):
    torch.manual_seed(0)
    text = _rows(tok)
    collate = WholeWordMaskCollator(tok, 0.15)
    words = masked_words = positions = as_mask = kept = 0
    for epoch in range(30):
        collate.epoch = epoch
        batch = collate([{"input_ids": text.input_ids[i], "word_ids": text.word_ids[i], "key": i}
                         for i in range(len(text))])
        for i in range(len(text)):
            groups = defaultdict(list)
            for j, w in enumerate(text.word_ids[i]):
                if w >= 0:
                    groups[w].append(j)
                else:
                    assert batch["labels"][i, j] == -100  # special tokens are never predicted
            for pos in groups.values():
                chosen = {bool(batch["labels"][i, j] != -100) for j in pos}
                assert len(chosen) == 1, "a word is masked whole or not at all"
                words += 1
                masked_words += chosen.pop()
            sel = batch["labels"][i] != -100
            positions += int(sel.sum())
            as_mask += int((batch["input_ids"][i][sel] == tok.mask_token_id).sum())
            kept += int((batch["input_ids"][i][sel] == batch["labels"][i][sel]).sum())
    assert masked_words / words == pytest.approx(0.15, abs=0.01)
    assert as_mask / positions == pytest.approx(0.8, abs=0.02)
    assert kept / positions == pytest.approx(0.1 + 0.1 / len(tok), abs=0.02)


def test_masks_are_fixed_for_held_out_rows_and_new_each_epoch(tok):
    text = _rows(tok, 150)
    collate = WholeWordMaskCollator(tok, 0.15, seed=1)
    train = [{"input_ids": text.input_ids[i], "word_ids": text.word_ids[i], "key": i} for i in range(150)]
    held = [{**e, "key": -1 - e["key"]} for e in train]
    first = collate(train)["labels"]
    assert torch.equal(collate(train)["labels"], first)  # same epoch, same rows: same masks (a resume sees them)
    collate.epoch = 1
    assert not torch.equal(collate(train)["labels"], first)  # dynamic: new masks each epoch
    h = collate(held)["labels"]
    collate.epoch = 2
    assert torch.equal(collate(held)["labels"], h)


def test_masked_positions_loss_equals_the_models_own_loss(tok):
    torch.manual_seed(0)
    model = BertForMaskedLM(tm.bert_config(len(tok))).eval()
    ids = torch.randint(5, len(tok), (3, 9))
    labels = torch.full_like(ids, -100)
    labels[0, 2], labels[1, 5], labels[2, 7], labels[2, 1] = 7, 9, 11, 30
    full = model(input_ids=ids, labels=labels).loss
    hidden = model.bert(input_ids=ids).last_hidden_state
    assert masked_lm_loss(hidden, labels, mlm_head(model)).item() == pytest.approx(full.item(), rel=1e-5)


def _targs(**kw) -> TeacherArguments:
    sizes = dict(teacher_hidden_size=32, teacher_layers=2, teacher_heads=2, teacher_intermediate_size=37,
                 mlm_batch_size=16, mlm_eval_steps=10, mlm_lr=3e-3)
    return TeacherArguments(**{**sizes, **kw})


def _pretrain(tmp_path, tok, text, resume=False, **kw):
    targs = _targs(**kw)
    with tm.single_thread():
        return MLMPretrainer(targs, tmp_path, seed=3).run(text, tok, resume,
                                                         lambda: scratch_config(targs, tok, list(tm.LABELS)))


def test_pretraining_saves_a_masked_lm_that_fills_a_mask_and_is_reused(tmp_path, tok):
    text = encode_mlm_text(["Anna visited Berlin ."] * 300, tok, 16)
    report = _pretrain(tmp_path, tok, text, teacher_mlm="60")
    assert report.steps == 60 and report.held_out_loss[-1][1] < report.held_out_loss[0][1] < 10
    assert report.train_loss and report.sources == {} and report.rows + report.held_out_rows == len(text)
    model = AutoModelForMaskedLM.from_pretrained(report.path)
    fill = pipeline("fill-mask", model=model, tokenizer=tok)
    assert fill("Anna [MASK] Berlin .")[0]["token_str"] == "visited"
    meta = json.loads((tmp_path / "teacher-mlm" / MLM_META).read_text())
    assert meta["report"]["steps"] == 60
    again = _pretrain(tmp_path, tok, text, teacher_mlm="60")  # same inputs: reused, not retrained
    assert again == report


def test_pretraining_resumes_exactly(tmp_path, tok, monkeypatch):
    text = _rows(tok)
    whole = _pretrain(tmp_path / "whole", tok, text, teacher_mlm="30")
    real_step = MaskedPositionsTrainer.training_step

    def crash_at_25(self, *a, **kw):
        if self.state.global_step == 25:
            raise KeyboardInterrupt("killed")
        return real_step(self, *a, **kw)

    monkeypatch.setattr(MaskedPositionsTrainer, "training_step", crash_at_25)
    with pytest.raises(KeyboardInterrupt):
        _pretrain(tmp_path / "cut", tok, text, teacher_mlm="30")
    monkeypatch.setattr(MaskedPositionsTrainer, "training_step", real_step)
    resumed = _pretrain(tmp_path / "cut", tok, text, resume=True, teacher_mlm="30")
    assert resumed.held_out_loss == whole.held_out_loss and resumed.steps == 30
    a = AutoModelForMaskedLM.from_pretrained(whole.path).state_dict()
    b = AutoModelForMaskedLM.from_pretrained(resumed.path).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_minutes_budget_stops_training(tmp_path, tok):
    report = _pretrain(tmp_path, tok, _rows(tok), teacher_mlm="0.02min")
    assert 1 <= report.steps and report.minutes >= 0.02 and report.epochs < 1000


@pytest.mark.parametrize("value, steps, minutes", [("off", 0, 0.0), ("3000", 3000, 0.0), ("15min", 0, 15.0),
                                                   ("0.5MIN", 0, 0.5)])
def test_budget_option(value, steps, minutes):
    t = TeacherArguments(teacher_mlm=value)
    assert t.mlm_budget == (steps, minutes) and t.mlm_enabled == bool(steps or minutes)


@pytest.mark.parametrize("value", ["0", "-3", "0min", "-1min", "soon", "3.5"])
def test_bad_budget_names_the_option(value):
    with pytest.raises(ConfigError, match="--teacher-mlm"):
        TeacherArguments(teacher_mlm=value)


def test_too_little_text_is_refused(tmp_path, tok):
    with pytest.raises(ConfigError, match="--mlm-text"):
        _pretrain(tmp_path, tok, encode_mlm_text(["Anna"], tok, 16), teacher_mlm="5")


def test_temperature_sampling_repeats_small_groups():
    sizes = {"de": 1500, "sw": 900, "yo": 80, "none": 0}
    assert temperature_repeats(sizes, 1.0) == {"de": 1, "sw": 1, "yo": 1, "none": 1}
    # p ∝ n^(1/2): yo's share over its natural share is (1500/80)^(1/2) = 4.3 times de's
    assert temperature_repeats(sizes, 2.0) == {"de": 1, "sw": 1, "yo": 4, "none": 1}
    assert temperature_repeats(sizes, 5.0) == {"de": 1, "sw": 2, "yo": 10, "none": 1}


def test_repeat_groups_keeps_each_groups_rows(tok):
    adapter = tiny.make_adapter()
    data = tiny.sentences(5, seed=0)
    enc = adapter.encode(adapter.from_texts([" ".join(w) for w in data["tokens"]]), tok, 32)
    out = repeat_groups(enc, {"a": 3, "b": 2}, {"a": 1, "b": 3})
    assert len(out.n_words) == 3 + 2 * 3
    assert out.input_ids[:3] == enc.input_ids[:3] and out.input_ids[3:5] == out.input_ids[5:7] == enc.input_ids[3:5]
