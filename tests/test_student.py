"""Tests for the BiLSTM student: vocabulary pruning, SVD embeddings, forward, layer groups,
saving and loading."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tiny import (  # single_thread: an autouse fixture
    make_adapter,
    make_student,
    make_teacher,
    make_tokenizer,
    packed_logits,
    random_student,
    sentences,
    single_thread,  # noqa: F401
    state_equal,
)
from xdistill.config import StudentArguments
from xdistill.data.types import Feature
from xdistill.errors import ConfigError
from xdistill.students import StudentContext, build_student
from xdistill.students import STUDENT_CONFIG, STUDENT_WEIGHTS, STUDENTS, is_student_dir, load_student
from xdistill.students.bilstm import BiLSTMStudent
from xdistill.students.vocab import PAD, UNK, prune_vocabulary, svd_embeddings

# --------------------------------------------------------------------------- prune_vocabulary


def test_prune_vocabulary():
    rows = [[2, 5, 7, 3], [2, 5, 9, 3, 0, 0], [1, 2, 3]]
    kept, vocab_map = prune_vocabulary(rows, teacher_vocab_size=12, pad_id=0, unk_id=1, keep_ids=(4, 2))
    assert kept.tolist() == [0, 1, 2, 3, 4, 5, 7, 9]
    assert kept.dtype == vocab_map.dtype == np.int64
    assert vocab_map.shape == (12,)
    assert vocab_map[0] == PAD == 0 and vocab_map[1] == UNK == 1
    for s, t in enumerate(kept):
        assert vocab_map[t] == s
    for t in (6, 8, 10, 11):  # never seen
        assert vocab_map[t] == UNK


def test_prune_vocabulary_other_special_ids():
    # a tokenizer whose pad/unk ids are not 0/1: they still become student ids 0 and 1
    kept, vocab_map = prune_vocabulary([[7, 3, 5], (5, 6)], teacher_vocab_size=10, pad_id=9, unk_id=4)
    assert kept.tolist() == [9, 4, 3, 5, 6, 7]
    assert vocab_map[9] == 0 and vocab_map[4] == 1
    assert vocab_map[[3, 5, 6, 7]].tolist() == [2, 3, 4, 5]
    assert vocab_map[[0, 1, 2, 8]].tolist() == [UNK] * 4


def test_prune_vocabulary_accepts_a_generator_and_empty_rows():
    kept, vocab_map = prune_vocabulary((r for r in [[], [3]]), 5, 0, 1)
    assert kept.tolist() == [0, 1, 3]
    assert vocab_map.tolist() == [0, 1, 1, 2, 1]


# --------------------------------------------------------------------------- svd_embeddings


@pytest.fixture(scope="module")
def teacher_emb():
    return torch.randn(30, 6, generator=torch.Generator().manual_seed(0))


KEPT = [0, 1, 3, 4, 7, 8, 11, 15, 20, 29]


def test_svd_embeddings_are_top_singular_coordinates(teacher_emb):
    w = teacher_emb[KEPT]
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    out = svd_embeddings(teacher_emb, KEPT, dim=4)
    assert out.shape == (len(KEPT), 4) and out.dtype == torch.float32
    expected = u[:, :4] * s[:4]
    assert torch.equal(out[0], torch.zeros(4))  # padding row
    # equal up to a sign per column
    torch.testing.assert_close(out[1:].abs(), expected[1:].abs(), atol=1e-5, rtol=1e-5)
    for j in range(4):
        sign = torch.sign((out[1:, j] * expected[1:, j]).sum())
        torch.testing.assert_close(out[1:, j], sign * expected[1:, j], atol=1e-5, rtol=1e-5)
    # times the top right singular vectors: the best rank-4 approximation of the kept rows
    best = u[:, :4] @ torch.diag(s[:4]) @ vh[:4]
    torch.testing.assert_close(out[1:] @ vh[:4], best[1:], atol=1e-5, rtol=1e-5)


def test_svd_embeddings_full_rank_reconstructs(teacher_emb):
    w = teacher_emb[KEPT]
    _, _, vh = torch.linalg.svd(w, full_matrices=False)
    out = svd_embeddings(teacher_emb, KEPT, dim=6)
    torch.testing.assert_close(out[1:] @ vh, w[1:], atol=1e-5, rtol=1e-5)
    # an orthogonal change of basis keeps the rows' geometry (norms and inner products)
    torch.testing.assert_close(out[1:] @ out[1:].T, w[1:] @ w[1:].T, atol=1e-4, rtol=1e-4)


def test_svd_embeddings_dim_above_rank_pads(teacher_emb):
    full = svd_embeddings(teacher_emb, KEPT, dim=6)
    out = svd_embeddings(teacher_emb, KEPT, dim=9, seed=5)
    assert out.shape == (len(KEPT), 9)
    torch.testing.assert_close(out[:, :6], full, atol=1e-6, rtol=1e-6)
    extra = out[1:, 6:]
    assert torch.all(torch.isfinite(extra)) and extra.abs().sum() > 0
    assert extra.std() < 0.5 * full[1:].std()  # small random values
    assert torch.equal(out[0], torch.zeros(9))
    torch.testing.assert_close(svd_embeddings(teacher_emb, KEPT, dim=9, seed=5), out)  # seeded
    assert not torch.equal(svd_embeddings(teacher_emb, KEPT, dim=9, seed=6)[1:, 6:], extra)


def test_svd_embeddings_fewer_rows_than_dims(teacher_emb):
    kept = [0, 1, 2, 5]  # rank at most 4 < D = 6
    out = svd_embeddings(teacher_emb, kept, dim=5)
    assert out.shape == (4, 5) and torch.equal(out[0], torch.zeros(5))
    w = teacher_emb[kept]
    _, _, vh = torch.linalg.svd(w, full_matrices=False)
    torch.testing.assert_close(out[1:, :4] @ vh, w[1:], atol=1e-5, rtol=1e-5)


def test_svd_embeddings_does_not_touch_teacher(teacher_emb):
    emb = teacher_emb.clone().requires_grad_(True)
    out = svd_embeddings(emb, KEPT, dim=3)
    assert not out.requires_grad
    assert torch.equal(emb.detach(), teacher_emb)


# --------------------------------------------------------------------------- forward


def batch(rows, pad=0):
    t = max(len(r) for r in rows)
    ids = torch.tensor([r + [pad] * (t - len(r)) for r in rows])
    att = torch.tensor([[1] * len(r) + [0] * (t - len(r)) for r in rows])
    return ids, att


def test_forward_shapes():
    m = random_student(vocab_size=20, num_labels=7, hidden_size=5).eval()
    ids, att = batch([[2, 5, 6, 3], [2, 7, 3], [2, 3]])
    out = m(ids, att)
    assert out.logits.shape == (3, 4, 7)
    assert len(out.hidden_states) == 1 and out.hidden_states[0].shape == (3, 4, 10)  # 2H, both directions
    assert out.attentions is None
    assert out.feature(Feature("hidden_states", -1)) is out.hidden_states[0]
    assert out.feature(Feature("logits")) is out.logits


def test_missing_outputs_are_clear_errors():
    out = random_student().eval()(*batch([[2, 5, 3]]))
    with pytest.raises(ConfigError, match="hidden_states.*1 hidden_states layers"):
        out.feature(Feature("hidden_states", 3))
    with pytest.raises(ConfigError, match="no attentions"):
        out.feature(Feature("attentions", 1))


def test_forward_max_pooling_shapes():
    m = random_student(pooling="max", num_labels=3, hidden_size=5).eval()
    ids, att = batch([[2, 5, 6, 3], [2, 7, 3]])
    out = m(ids, att)
    assert out.logits.shape == (2, 3) and out.hidden_states[0].shape == (2, 10)
    alone = m(*batch([[2, 7, 3]]))
    torch.testing.assert_close(out.logits[1], alone.logits[0], atol=1e-6, rtol=1e-5)


def test_padding_does_not_change_real_positions():
    m = random_student(dropout=0.3).eval()
    short, long = [2, 5, 9, 3], [2, 7, 8, 11, 12, 13, 4, 3]
    alone = m(*batch([short]))
    together = m(*batch([long, short]))
    torch.testing.assert_close(together.logits[1, :4], alone.logits[0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(together.hidden_states[0][1, :4], alone.hidden_states[0][0], atol=1e-6, rtol=1e-5)
    # the padding token id does not matter either
    ids, att = batch([long, short], pad=17)
    torch.testing.assert_close(m(ids, att).logits[1, :4], alone.logits[0], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("pooling", ["none", "max"])
def test_cpu_forward_and_gradients_equal_the_packed_lstm(pooling):
    """On CPUs the encoder runs as a MaskedBiLSTM (whole-sequence kernels): the same states, logits
    and gradients as nn.LSTM over packed sequences, zeros beyond each row's length."""
    m = random_student(pooling=pooling, seed=2)
    ids, att = batch([[2, 7, 8, 11, 12, 13, 4, 3], [2, 5, 9, 3], [2, 3]])
    out = m(ids, att)
    ref = packed_logits(m, ids, att)
    torch.testing.assert_close(out.logits, ref, atol=1e-6, rtol=1e-5)
    if pooling == "none":
        assert not out.hidden_states[0][att == 0].any()
    out.logits.square().sum().backward()
    got = {n: p.grad.clone() for n, p in m.named_parameters()}
    m.zero_grad()
    ref.square().sum().backward()
    for n, p in m.named_parameters():
        torch.testing.assert_close(got[n], p.grad, atol=1e-5, rtol=1e-4, msg=n)


def test_masked_encoder_is_not_a_parameter_and_draws_no_random_numbers():
    m = random_student()
    keys = set(m.state_dict())
    torch.manual_seed(5)
    m(*batch([[2, 5, 9, 3]]))  # makes the masked encoder
    after = torch.rand(1)
    torch.manual_seed(5)
    assert torch.equal(torch.rand(1), after)
    assert set(m.state_dict()) == keys and len(list(m.parameters())) == len(list(random_student().parameters()))
    assert m.masked_encoder().bwd.weight_hh_l0 is m.encoder.weight_hh_l0_reverse


def test_vocab_map_routes_teacher_ids():
    vmap = np.full(50, UNK)
    vmap[[0, 10, 20, 30]] = [0, 2, 3, 4]
    m = BiLSTMStudent.build(vocab_map=vmap, student_vocab_size=5, embedding_dim=4, hidden_size=3, num_labels=2,
                            dropout=0.0).eval()
    a = m(*batch([[10, 20, 45, 30]]))
    b = m(*batch([[10, 20, 1, 30]]))  # 45 is unknown: same as teacher id 1 (also unknown)
    torch.testing.assert_close(a.logits, b.logits)
    assert m.config["teacher_vocab_size"] == 50 and m.embeddings.weight.shape == (5, 4)


def test_known_input_ids_are_the_ids_with_their_own_embedding():
    vmap = np.full(50, UNK)
    vmap[[0, 10, 20, 30]] = [0, 2, 3, 4]
    m = BiLSTMStudent.build(vocab_map=vmap, student_vocab_size=5, embedding_dim=4, hidden_size=3, num_labels=2,
                            dropout=0.0)
    assert m.known_input_ids().tolist() == [10, 20, 30]


def test_build_copies_init_embeddings_and_is_seeded():
    init = torch.randn(20, 6)
    m = BiLSTMStudent.build(vocab_map=np.arange(20), student_vocab_size=20, embedding_dim=6, hidden_size=5,
                            num_labels=7, dropout=0.0, init_embeddings=init)
    assert torch.equal(m.embeddings.weight.detach(), init)
    assert state_equal(random_student(seed=3).state_dict(), random_student(seed=3).state_dict())
    assert not state_equal(random_student(seed=3).state_dict(), random_student(seed=4).state_dict())


def test_factory_builds_a_pruned_svd_student(tok):
    adapter = make_adapter()
    teacher = make_teacher(tok)
    enc = adapter.encode(sentences(6, seed=0), tok, 16)
    args = StudentArguments(embedding_dim=8, hidden_size=6, dropout=0.0)
    ctx = StudentContext.for_tokenizer(tok, num_labels=7, level=adapter.level, rows=[enc],
                                       teacher_embeddings=teacher.get_input_embeddings().weight, seed=0)
    m = build_student(args, ctx)
    assert isinstance(m, BiLSTMStudent) and m.config["embedding_init"] == "svd"
    seen = {i for ids in enc.input_ids for i in ids} | set(tok.all_special_ids)
    assert set(m.known_input_ids().tolist()) == seen - {tok.pad_token_id, tok.unk_token_id}
    baseline = build_student(args, StudentContext.for_tokenizer(tok, num_labels=7, level=adapter.level, rows=[enc],
                                                                teacher_embeddings=None, seed=0))
    assert baseline.config["embedding_init"] == "random"
    assert not torch.equal(baseline.embeddings.weight, m.embeddings.weight)
    with pytest.raises(ConfigError, match="--student.*cnn"):
        build_student(StudentArguments(student="cnn"), ctx)


def test_whole_vocabulary_keeps_every_teacher_token_with_its_svd_row(tok):
    """``--student-vocabulary whole``: every teacher id has its own row, unseen ones included, and the
    SVD rows of the seen ids are those of a student over the whole teacher vocabulary."""
    adapter = make_adapter()
    teacher = make_teacher(tok)
    enc = adapter.encode(sentences(2, seed=0), tok, 16)
    emb = teacher.get_input_embeddings().weight
    ctx = StudentContext.for_tokenizer(tok, num_labels=7, level=adapter.level, rows=[enc], teacher_embeddings=emb, seed=0)
    pruned = build_student(StudentArguments(embedding_dim=8, hidden_size=6), ctx)
    whole = build_student(StudentArguments(embedding_dim=8, hidden_size=6, student_vocabulary="whole"), ctx)
    ids = set(range(len(tok))) - {tok.pad_token_id, tok.unk_token_id}
    assert set(whole.known_input_ids().tolist()) == ids
    assert whole.config["student_vocab_size"] == len(tok) > pruned.config["student_vocab_size"]
    unseen = sorted(ids - set(pruned.known_input_ids().tolist()))
    assert unseen and bool((whole.embed(torch.tensor(unseen)).abs().sum(-1) > 0).all())
    kept, _ = ctx.vocabulary("whole")
    assert torch.allclose(whole.embeddings.weight, svd_embeddings(emb, kept, 8, seed=0))
    with pytest.raises(ConfigError, match="--student-vocabulary"):
        StudentArguments(student_vocabulary="all")


def test_describe_names_the_architecture():
    d = random_student(embedding_dim=6, hidden_size=5).describe()
    assert d["architecture"].startswith("BiLSTM") and d["name"] == "BiLSTM" and d["summary"] == "E=6 H=5"


# --------------------------------------------------------------------------- layer groups


def test_body_and_head_groups():
    m = random_student()
    assert m.body_groups() == ["encoder", "embeddings"]
    assert m.head_groups("logits") == ["classifier", "pooling"]
    assert m.head_groups("hidden_states") == ["pooling"]
    assert m.group_parameters("pooling") == []  # no attention pooling
    assert m.output_size(Feature("hidden_states", -1)) == 2 * m.config["hidden_size"]
    assert m.output_size(Feature("logits")) == m.config["num_labels"]


@pytest.mark.parametrize("pooling", ["none", "attention"])
def test_groups_partition_the_parameters(pooling):
    m = random_student(pooling=pooling if pooling == "none" else "attention")
    groups = ["classifier", "pooling", "encoder", "embeddings"]
    ids = [id(p) for g in groups for p in m.group_parameters(g)]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in m.parameters()}
    assert (len(m.group_parameters("pooling")) > 0) == (pooling == "attention")
    with pytest.raises(KeyError):
        m.group_parameters("vocab_map")


# --------------------------------------------------------------------------- save / load


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return make_tokenizer(tmp_path_factory.mktemp("tok"))


def test_save_load_round_trip(tmp_path, tok):
    adapter = make_adapter()
    teacher = make_teacher(tok)
    enc = adapter.encode(sentences(6, seed=0), tok, 16)
    m = make_student(tok, teacher, [enc], dropout=0.2)
    m.train()
    d = tmp_path / "student"
    m.save(d, tokenizer=tok, extra={"labels": list(adapter.labels)})
    files = {p.name for p in d.iterdir()}
    assert {STUDENT_CONFIG, STUDENT_WEIGHTS} <= files
    assert not any(f.endswith((".pt", ".tmp")) for f in files)  # no optimizer or temporary files
    cfg = json.loads((d / STUDENT_CONFIG).read_text())
    assert cfg["kind"] == "bilstm" and cfg["labels"] == list(adapter.labels)
    assert is_student_dir(d)

    loaded, cfg2 = load_student(d)
    assert isinstance(loaded, BiLSTMStudent) and not loaded.training
    assert cfg2 == cfg
    assert state_equal(loaded.state_dict(), m.state_dict())
    m.eval()
    ids, att = batch([[2, 5, 14, 23, 3], [2, 6, 3]])
    a, b = m(ids, att), loaded(ids, att)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.hidden_states[0], b.hidden_states[0])
    # the tokenizer files come back too
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(d)("Anna visited Hamburg")["input_ids"] == tok("Anna visited Hamburg")["input_ids"]


def test_load_student_only_needs_config_and_weights(tmp_path):
    m = random_student(seed=2).eval()
    m.save(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {STUDENT_CONFIG, STUDENT_WEIGHTS}
    loaded, _ = load_student(tmp_path)
    ids, att = batch([[2, 5, 6, 3]])
    assert torch.equal(loaded(ids, att).logits, m(ids, att).logits)
    # loading again from the loaded model's own save gives the same model
    loaded.save(tmp_path / "again")
    again, _ = load_student(tmp_path / "again")
    assert state_equal(again.state_dict(), m.state_dict())


def test_load_student_errors(tmp_path):
    with pytest.raises(ConfigError):
        load_student(tmp_path)  # empty folder
    with pytest.raises(ConfigError):
        load_student(tmp_path / "missing")
    (tmp_path / STUDENT_CONFIG).write_text('{"kind": "bilstm"}')  # no marker: e.g. a Hugging Face model folder
    assert not is_student_dir(tmp_path)
    with pytest.raises(ConfigError):
        load_student(tmp_path)
    (tmp_path / STUDENT_CONFIG).write_text("not json")
    with pytest.raises(ConfigError):
        load_student(tmp_path)
    (tmp_path / STUDENT_CONFIG).write_text('{"xdistill_student": true, "kind": "transformer9"}')
    with pytest.raises(ConfigError, match="unknown student kind"):
        load_student(tmp_path)
    assert "bilstm" in STUDENTS


def test_load_student_shape_mismatch_is_config_error(tmp_path):
    random_student(vocab_size=20).save(tmp_path)
    cfg = json.loads((tmp_path / STUDENT_CONFIG).read_text())
    cfg["hidden_size"] = 9  # the weights are for hidden size 5
    (tmp_path / STUDENT_CONFIG).write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="do not match"):
        load_student(tmp_path)


def test_load_student_missing_weights_is_config_error(tmp_path):
    random_student().save(tmp_path)
    (tmp_path / STUDENT_WEIGHTS).unlink()
    with pytest.raises(ConfigError):
        load_student(tmp_path)


@pytest.mark.parametrize("text", ["[1, 2]", '"xdistill_student"', "null"])
def test_is_student_dir_non_object_config(tmp_path, text):
    (tmp_path / STUDENT_CONFIG).write_text(text)
    assert not is_student_dir(tmp_path)
    with pytest.raises(ConfigError):
        load_student(tmp_path)


def test_load_student_unexpected_weights_is_config_error(tmp_path):
    from safetensors.torch import load_file, save_file

    random_student().save(tmp_path)
    state = load_file(str(tmp_path / STUDENT_WEIGHTS))
    state["extra.weight"] = torch.zeros(2)
    save_file(state, str(tmp_path / STUDENT_WEIGHTS))
    with pytest.raises(ConfigError, match="unexpected"):
        load_student(tmp_path)
    del state["extra.weight"], state["classifier.bias"]
    save_file(state, str(tmp_path / STUDENT_WEIGHTS))
    with pytest.raises(ConfigError, match="missing"):
        load_student(tmp_path)
