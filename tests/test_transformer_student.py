"""Transformer students (XtremeDistilTransformers): layer maps, attention and relation matches, a
tiny student trained one step per stage, saving as a standard ``transformers`` model.

Tiny random models only (the teacher of ``tiny.py``: BERT, hidden 32, 2 layers, 2 heads); the
round trip on the real mBERT tokenizer with German, Russian and Chinese text is at the end.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoModelForTokenClassification, AutoTokenizer

import tiny_models as tm
from tiny import HIDDEN, make_adapter, make_teacher, sentences, single_thread  # noqa: F401  (fixture)
from xdistill.adapters import SEQUENCE, TOKEN
from xdistill.config import DistillArguments, StudentArguments
from xdistill.data.types import Feature
from xdistill.distill import (DataSource, DistillData, Distiller, StageContext, Trainee, build_stages, layer_map,
                              make_schedule)
from xdistill.errors import ConfigError
from xdistill.serving.inference import load_model
from xdistill.students import StudentContext, build_student, load_student
from xdistill.students.transformer import TransformerStudent
from xdistill.teachers import Teacher, TeacherInfo
from xdistill.transfer import LiveTeacherTargets, SplitTargets


# --------------------------------------------------------------------------- layer maps and matches


def test_uniform_top_and_explicit_layer_maps():
    assert layer_map("uniform", 2, 4) == [(0, 0), (1, 2), (2, 4)]
    assert layer_map("uniform", 4, 12) == [(0, 0), (1, 3), (2, 6), (3, 9), (4, 12)]
    assert layer_map("top", 2, 4) == [(0, 2), (1, 3), (2, 4)]
    assert layer_map("0:0, 2:4", 2, 4) == [(0, 0), (2, 4)]
    assert layer_map("uniform", 0, 4) == layer_map("top", 0, 4) == [(0, 4)]  # the BiLSTM: the teacher's last layer


@pytest.mark.parametrize("spec, student, teacher, match", [
    ("0:0,3:4", 2, 4, r"--layer-map: 3:4 names a layer that does not exist; student layers are 0\.\.2"),
    ("1:5", 2, 4, "teacher layers 0..4"),
    ("top", 6, 4, "--layer-map top: the student has 6 layers, the teacher only 4"),
])
def test_layer_map_errors_name_the_option(spec, student, teacher, match):
    with pytest.raises(ConfigError, match=match):
        layer_map(spec, student, teacher)


def test_layer_map_syntax_is_checked_with_the_options():
    with pytest.raises(ConfigError, match="--layer-map: expected uniform, top or student:teacher pairs"):
        DistillArguments(layer_map="every-other")


def _ctx(student_layers=2, student_heads=2, student_hidden=16, teacher_heads=2, teacher_hidden=32):
    return StageContext(teacher_layer=4, teacher_layers=4, teacher_heads=teacher_heads, teacher_hidden=teacher_hidden,
                        student_layers=student_layers, student_heads=student_heads, student_hidden=student_hidden)


def test_intermediate_stage_with_equal_heads_matches_attention_maps():
    (stage,) = build_stages(["intermediate"], DistillArguments(), _ctx())
    keys = [(m.student, m.target, m.loss) for m in stage.matches]
    assert keys == [("hidden_states.0", "hidden_states.0", "mse"), ("hidden_states.1", "hidden_states.2", "mse"),
                    ("hidden_states.2", "hidden_states.4", "mse"), ("attentions.1", "attentions.2", "attention_kl"),
                    ("attentions.2", "attentions.4", "attention_kl")]
    assert not stage.gradual and stage.select_by == "loss"
    assert [f.key for f in stage.student_features] == ["attentions.1", "attentions.2"]


def test_intermediate_stage_with_other_heads_matches_minilm_relations():
    (stage,) = build_stages(["intermediate"], DistillArguments(layer_map="top"), _ctx(student_heads=4))
    rel = [m for m in stage.matches if m.loss == "relation_kl"]
    assert [(m.student, m.target, m.relation_heads) for m in rel] == [
        ("queries.2", "queries.4", 4), ("keys.2", "keys.4", 4), ("values.2", "values.4", 4)]
    # the default relation heads are lowered until they divide both widths
    (stage,) = build_stages(["intermediate"], DistillArguments(), _ctx(student_heads=4, student_hidden=24))
    assert {m.relation_heads for m in stage.matches if m.loss == "relation_kl"} == {4}
    (stage,) = build_stages(["intermediate"], DistillArguments(), _ctx(student_heads=5, student_hidden=20))
    assert {m.relation_heads for m in stage.matches if m.loss == "relation_kl"} == {4}


@pytest.mark.parametrize("args, ctx, match", [
    (dict(attention_loss="kl"), dict(student_heads=4), "--attention-loss kl: the student has 4 heads, the teacher 2"),
    (dict(attention_loss="relation"), dict(student_layers=0, student_heads=0), "this student has no attention"),
    (dict(attention_loss="relation", relation_heads=3), {}, "--relation-heads 3: must divide"),
])
def test_attention_match_errors_name_the_option(args, ctx, match):
    with pytest.raises(ConfigError, match=match):
        build_stages(["intermediate"], DistillArguments(**args), _ctx(**ctx))


def test_bilstm_intermediate_stage_has_no_attention_matches():
    (stage,) = build_stages(["intermediate"], DistillArguments(), _ctx(student_layers=0, student_heads=0))
    assert [(m.student, m.target) for m in stage.matches] == [("hidden_states.0", "hidden_states.4")]


# --------------------------------------------------------------------------- the student


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    tok = tm.make_tokenizer(tmp_path_factory.mktemp("tok"))
    adapter = make_adapter()
    teacher = make_teacher(tok)
    enc = adapter.encode(sentences(24, seed=1), tok, 32, "transfer")
    return tok, adapter, teacher, enc


def _student(parts, level=TOKEN, **kw) -> TransformerStudent:
    tok, adapter, teacher, enc = parts
    args = StudentArguments(student="transformer", **{"student_layers": 2, "student_hidden": 16, "student_heads": 2,
                                                      **kw})
    ctx = StudentContext.for_tokenizer(tok, num_labels=7, level=level, rows=[enc],
                                       teacher_embeddings=teacher.get_input_embeddings().weight, seed=0,
                                       teacher_model=teacher)
    return build_student(args, ctx)


def test_shapes_outputs_and_pruned_vocabulary(parts):
    tok, adapter, teacher, enc = parts
    s = _student(parts).eval()
    assert s.config["vocabulary"] == "pruned" and s.config["embedding_init"] == "svd"
    seen = {i for ids in enc.input_ids for i in ids}
    assert s.config["student_vocab_size"] == len(seen | {tok.pad_token_id, tok.unk_token_id} | set(tok.all_special_ids))
    ids = torch.tensor([enc.input_ids[0], enc.input_ids[1][:len(enc.input_ids[0])]])
    mask = torch.ones_like(ids)
    feats = [Feature.parse(k) for k in ("attentions.1", "attentions.-1", "values.2", "queries.-1")]
    out = s(ids, mask, feats)
    B, T = ids.shape
    assert out.logits.shape == (B, T, 7) and len(out.hidden_states) == 3
    assert all(h.shape == (B, T, 16) for h in out.hidden_states)
    assert out.feature(Feature.parse("attentions.1")).shape == (B, 2, T, T)
    assert torch.equal(out.feature(Feature.parse("attentions.-1")), out.attentions[1])
    assert out.feature(Feature.parse("values.2")).shape == (B, T, 16)
    assert s(ids, mask).attentions is None  # attentions only when asked for
    assert torch.allclose(s.inference_logits(ids, mask), out.logits)
    assert s.body_groups() == ["layer.1", "layer.0", "embeddings"] and s.head_groups("logits") == ["classifier"]
    params = [p for g in s.body_groups() + ["classifier"] for p in s.group_parameters(g)]
    assert len(params) == len(list(s.parameters())) and len({id(p) for p in params}) == len(params)


def test_sequence_level_hidden_states_are_the_first_position(parts):
    tok, adapter, teacher, enc = parts
    s = _student(parts, level=SEQUENCE).eval()
    ids = torch.tensor([enc.input_ids[0]])
    out = s(ids, torch.ones_like(ids), [Feature.parse("keys.1")])
    assert out.logits.shape == (1, 7) and out.hidden_states[1].shape == (1, 16)
    assert out.feature(Feature.parse("keys.1")).shape == (1, ids.size(1), 16)  # relational: every position


def test_teacher_layers_initialisation_copies_every_kth_layer(parts):
    tok, adapter, teacher, enc = parts
    s = _student(parts, student_layers=1, student_hidden=HIDDEN, student_heads=2, student_intermediate=37,
                 student_init="teacher-layers")
    assert s.config["embedding_init"].startswith("teacher")
    t_layer, s_layer = teacher.bert.encoder.layer[0].state_dict(), s.model.bert.encoder.layer[0].state_dict()
    assert all(torch.equal(t_layer[k], s_layer[k]) for k in t_layer)
    kept = s.kept_ids
    assert torch.equal(s.model.bert.embeddings.word_embeddings.weight, teacher.bert.embeddings.word_embeddings.weight[kept])
    with pytest.raises(ConfigError, match=r"--student-init teacher-layers needs a student shaped like the teacher: "
                                          r"--student-hidden 16 vs the teacher's 32"):
        _student(parts, student_init="teacher-layers")


def test_student_options_are_checked():
    assert StudentArguments(student_shape="l4-h256").feed_forward == 1024
    a = StudentArguments(student_shape="L2-H128-A2")
    assert (a.student_layers, a.student_hidden, a.student_heads) == (2, 128, 2)
    with pytest.raises(ConfigError, match="--student-shape: expected l<layers>-h<hidden>"):
        StudentArguments(student_shape="tiny")
    with pytest.raises(ConfigError, match="--student-heads 3 does not divide --student-hidden 128"):
        StudentArguments(student_hidden=128, student_heads=3)
    with pytest.raises(ConfigError, match="--student-init"):
        StudentArguments(student_init="copy")


def _teacher(parts) -> Teacher:
    tok, adapter, teacher, enc = parts
    info = TeacherInfo(source="tiny", trained_from_scratch=True, fine_tuned_here=False, architecture="bert",
                       parameters=0, hidden_size=HIDDEN, num_layers=2, path="", fingerprint="tiny")
    return Teacher(teacher, tok, info)


@pytest.mark.parametrize("heads, attention", [(2, "attention_kl"), (4, "relation_kl")])
def test_one_step_per_stage(parts, tmp_path, heads, attention):
    """stage 1 end to end (hidden states, attentions or relations from the live teacher), stages 2 and 3
    with gradual unfreezing: every step runs, the losses are finite and the weights move."""
    tok, adapter, teacher, enc = parts
    t = _teacher(parts)
    s = _student(parts, student_heads=heads)
    ctx = StageContext(teacher_layer=2, teacher_layers=2, teacher_heads=2, teacher_hidden=HIDDEN, student_layers=2,
                       student_heads=heads, student_hidden=16)
    stages = build_stages(["intermediate", "logits", "labeled"], DistillArguments(), ctx)
    assert attention in {m.loss for m in stages[0].matches}
    widths = {m.target: t.feature_width(m.target_feature) for st in stages for m in st.matches if m.projection}
    trainee = Trainee(s, [m for st in stages for m in st.matches], widths)
    steps = make_schedule(trainee, stages, gradual=True)
    assert [x.name for x in steps] == ["intermediate:1"] + [f"logits:{k}" for k in range(1, 5)] + \
        [f"labeled:{k}" for k in range(1, 5)]
    live = SplitTargets(LiveTeacherTargets(t, TOKEN), LiveTeacherTargets(t, TOKEN))
    labeled = adapter.encode(sentences(16, seed=2), tok, 32, "labeled")
    val = adapter.encode(sentences(8, seed=3), tok, 32, "validation")
    data = DistillData({"transfer": DataSource(enc, live), "labeled": DataSource(labeled)}, DataSource(val, live),
                       adapter.gold(sentences(8, seed=3)), tok.pad_token_id)
    before = {k: v.clone() for k, v in s.state_dict().items()}
    d = Distiller(trainee, adapter, DistillArguments(batch_size=8, lr=1e-3, max_epochs=1, patience=1), data,
                  tmp_path / "ckpt", seed=0)
    loss = d.stage_loss(stages[0], data.sources["transfer"], list(range(8)))
    assert torch.isfinite(loss) and loss > 0
    done = d.run(steps, max_epochs=1)
    assert len(done) == len(steps) and all(np.isfinite(r["best_score"]) for r in done)
    assert any(not torch.equal(before[k], v) for k, v in s.state_dict().items())
    assert live.live.batches > 0


# --------------------------------------------------------------------------- saving


def _save(student, directory, tokenizer, labels=tm.LABELS, max_length=32):
    extra = {"task": "wikiann", "task_type": "token-classification", "labels": list(labels), "max_length": max_length,
             "groups": ["xx"], "teacher": "scratch", "teacher_trained_from_scratch": True, "reference": "mbert-base"}
    student.eval()
    student.save(directory, tokenizer=tokenizer, extra=extra)
    return directory


def test_saved_student_is_a_transformers_model(parts, tmp_path):
    tok, adapter, teacher, enc = parts
    s = _student(parts)
    d = _save(s, tmp_path / "student", tok)
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["xdistill_student"] and cfg["kind"] == "transformer" and cfg["id2label"]["1"] == "B-PER"
    hf = AutoModelForTokenClassification.from_pretrained(d).eval()
    own = AutoTokenizer.from_pretrained(d)
    assert len(own) == s.config["student_vocab_size"] == hf.config.vocab_size
    words = ["Anna", "visited", "Paris", "."]
    t_ids = tok(words, is_split_into_words=True, return_tensors="pt")["input_ids"]
    o_ids = own(words, is_split_into_words=True, return_tensors="pt")["input_ids"]
    assert torch.equal(o_ids, s.vocab_map[t_ids])  # seen words tokenize the same in the pruned vocabulary
    with torch.no_grad():
        expected = s.inference_logits(t_ids, torch.ones_like(t_ids))
        assert torch.allclose(hf(input_ids=o_ids).logits, expected, atol=1e-5)
        loaded, lcfg = load_student(d)
        assert lcfg["labels"] == list(tm.LABELS) and loaded.config["vocabulary"] == "own"
        assert torch.allclose(loaded.inference_logits(o_ids, torch.ones_like(o_ids)), expected, atol=1e-5)
    assert not list(d.glob(".saving*"))


@pytest.fixture(scope="module")
def real_student_dir(data_dir, tmp_path_factory):
    """A random transformer student over the real mBERT vocabulary pruned to German, Russian and Chinese
    WikiANN sentences, saved as the pipeline saves it."""
    from xdistill.data.readers import read_ner_file

    from xdistill.config import DataArguments, TeacherArguments
    from xdistill.teachers.build import load_tokenizer

    tok = load_tokenizer(TeacherArguments(), DataArguments(data_dir=str(data_dir)))  # as a run loads mBERT's vocab.txt
    sents = [s for lang in ("de", "ru", "zh") for s in read_ner_file(data_dir / "wikiann" / f"dev-{lang}.tsv",
                                                                      format="panx")[0][:40]]
    adapter = make_adapter()
    enc = adapter.encode({"tokens": [list(s.tokens) for s in sents], "tags": [list(s.tags) for s in sents]}, tok, 64)
    args = StudentArguments(student="transformer", student_shape="l2-h32-a2")
    emb = torch.randn(len(tok), 48, generator=torch.Generator().manual_seed(0))
    ctx = StudentContext.for_tokenizer(tok, num_labels=7, level=TOKEN, rows=[enc], teacher_embeddings=emb, seed=3)
    s = build_student(args, ctx)
    with torch.no_grad():  # larger logits: random weights then tag plenty of entities
        s.model.classifier.weight.mul_(20)
    d = _save(s, tmp_path_factory.mktemp("real") / "student", tok, max_length=64)
    return d, [" ".join(x.tokens) for x in sents]


def test_pipeline_tags_like_xdistill_predict_on_real_text(real_student_dir):
    """``transformers.pipeline(..., aggregation_strategy="first")`` on the saved folder gives the same
    entities (type and character span) as ``xdistill predict``, on German, Russian and Chinese text."""
    from transformers import pipeline

    d, texts = real_student_dir
    texts = texts[:30] + texts[40:70] + texts[80:110]
    ours = load_model(d).predict(texts)
    tagger = pipeline("token-classification", model=str(d), aggregation_strategy="first")
    theirs = tagger(texts)
    n = 0
    for o, t in zip(ours, theirs):
        assert [(e["type"], e["start"], e["end"]) for e in o["entities"]] == \
            [(e["entity_group"], e["start"], e["end"]) for e in t]
        n += len(o["entities"])
    assert n > 20  # random weights tag plenty: the comparison is not vacuous


def test_onnx_export_and_int8_parity(real_student_dir, data_dir):
    from xdistill.serving.export import export_student

    d, texts = real_student_dir
    files = [data_dir / "wikiann" / f"dev-{lang}.tsv" for lang in ("de", "ru", "zh")]
    parity = export_student(d, files, quantize="int8", max_examples=40)
    assert parity["fp32"]["max_abs_logit_diff"] <= 1e-3
    a = load_model(d).predict(texts[:20])
    b = load_model(d, runtime="onnx").predict(texts[:20])
    assert [r["tags"] for r in a] == [r["tags"] for r in b]
