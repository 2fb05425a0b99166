"""ONNX export, int8 quantization, parity and ONNX Runtime inference of students (issue 4)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import tiny_models as tm
from tiny import packed_logits, random_student
from tiny_models import single_thread
from xdistill.cli import main
from xdistill.errors import ConfigError
from xdistill.serving.inference import load_model
from xdistill.serving.export import export_student
from xdistill.serving.onnx import META_FINGERPRINT, ExportError, onnx_metadata, onnx_path, ort_session
from xdistill.students import load_student
from xdistill.students.bilstm import MaskedBiLSTM

@pytest.fixture(autouse=True)
def _one_thread():
    with single_thread():
        yield


def ragged_batch(vocab: int = 20, lengths=(9, 3, 1, 6), seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lens = torch.tensor(lengths)
    width = int(lens.max())
    mask = (torch.arange(width)[None] < lens[:, None]).long()
    ids = torch.randint(2, vocab, (len(lengths), width), generator=g) * mask
    return ids, mask, lens


# --------------------------------------------------------------------------- the masked forward


@pytest.mark.parametrize("pooling", ["none", "max", "mean", "attention"])
def test_export_module_equals_packed_forward_on_real_positions(pooling):
    s = random_student(pooling=pooling, seed=3).eval()
    ids, mask, lens = ragged_batch()
    with torch.no_grad():
        ref = packed_logits(s, ids, mask)
        got = s.export_module()(ids, mask)
    if pooling == "none":
        for i, n in enumerate(lens):
            torch.testing.assert_close(got[i, :n], ref[i, :n], atol=1e-6, rtol=0)
    else:
        torch.testing.assert_close(got, ref, atol=1e-6, rtol=0)


def test_masked_bilstm_reverse_index_and_shared_weights():
    idx = MaskedBiLSTM.reverse_index(torch.tensor([3, 1, 4]), 4)
    assert idx.tolist() == [[2, 1, 0, 3], [0, 1, 2, 3], [3, 2, 1, 0]]
    lstm = torch.nn.LSTM(4, 3, batch_first=True, bidirectional=True)
    m = MaskedBiLSTM(lstm)
    assert m.bwd.weight_hh_l0 is lstm.weight_hh_l0_reverse and m.fwd.weight_ih_l0 is lstm.weight_ih_l0
    with pytest.raises(ValueError, match="one-layer, bidirectional"):
        MaskedBiLSTM(torch.nn.LSTM(4, 3, batch_first=True))


def test_inference_parameters_are_the_students_own():
    """The stage-1 projection is a distillation head of the trainee, not part of the student."""
    s = random_student()
    assert s.inference_parameters() == sum(p.numel() for p in s.parameters())
    assert not hasattr(s, "projection")


# --------------------------------------------------------------------------- export on tiny students


@pytest.fixture(scope="module")
def ner_export(tmp_path_factory, tok):
    root = tmp_path_factory.mktemp("ner")
    d = tm.make_student_dir(root / "student", tok, seed=1)
    data = tm.write_panx(root / "dev.tsv", tm.SENTENCES)
    with single_thread():
        parity = export_student(d, [data], quantize="int8")
    return d, data, parity


@pytest.fixture(scope="module")
def seq_export(tmp_path_factory, tok):
    root = tmp_path_factory.mktemp("seq")
    d = tm.make_classifier_dir(root / "student", tok, pooling="attention", max_length=16)
    data = root / "eval.csv"
    data.write_text("text,label\n" + "".join(f'"{" ".join(w)}",{i % 2}\n' for i, (w, _) in enumerate(tm.SENTENCES))
                    + '"' + " ".join(["Anna visited Berlin ."] * 10) + '",1\n', encoding="utf-8")
    with single_thread():
        parity = export_student(d, [data], quantize="int8")
    return d, data, parity


@pytest.mark.parametrize("which", ["ner_export", "seq_export"])
def test_export_writes_both_files_and_parity(which, request):
    d, data, parity = request.getfixturevalue(which)
    assert onnx_path(d, "fp32").is_file() and onnx_path(d, "int8").is_file()
    on_disk = json.loads((d / "onnx" / "parity.json").read_text())
    assert on_disk["fp32"]["max_abs_logit_diff"] == pytest.approx(parity["fp32"]["max_abs_logit_diff"])
    assert parity["fp32"]["passed"] and parity["fp32"]["max_abs_logit_diff"] <= 1e-3
    assert parity["fp32"]["argmax_agreement"] == 1.0
    k = parity["metric"]
    assert k == ("f1" if which == "ner_export" else "accuracy")
    assert set(parity["scores"]) == {"torch_fp32", "onnx_fp32", "onnx_int8"}
    assert parity["int8"]["quantization"]["weight_type"] == "QInt8"
    assert parity["int8"]["metric_diff"] == pytest.approx(parity["scores"]["onnx_int8"][k] - parity["scores"]["onnx_fp32"][k])
    assert parity["data"]["examples"] == (8 if which == "ner_export" else 9)
    assert parity["data"]["files"][0]["file"] == str(data)
    for p in ("fp32", "int8"):
        assert onnx_metadata(onnx_path(d, p))[META_FINGERPRINT] == parity["student_sha256"]


@pytest.mark.parametrize("which", ["ner_export", "seq_export"])
def test_onnx_axes_are_dynamic(which, request):
    d, _, _ = request.getfixturevalue(which)
    model, _ = load_student(d)
    sess = ort_session(onnx_path(d, "fp32"), threads=1)
    assert [i.name for i in sess.get_inputs()] == ["input_ids", "attention_mask"]
    for lengths in [(1,), (5, 2), (17, 3, 11)]:
        ids, mask, lens = ragged_batch(vocab=len(model.vocab_map), lengths=lengths, seed=len(lengths))
        got = sess.run(["logits"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
        with torch.no_grad():
            ref = model(ids, mask).logits.numpy()
        if ref.ndim == 3:
            assert got.shape == ref.shape
            for i, n in enumerate(lens):
                np.testing.assert_allclose(got[i, :n], ref[i, :n], atol=1e-5)
        else:
            np.testing.assert_allclose(got, ref, atol=1e-5)


def test_ner_predictions_equal_across_runtimes(ner_export):
    d, data, _ = ner_export
    texts = ["Anna visited Berlin.", "Carl met Anna in Zürich, and Bob lives in Paris.", "",
             " ".join(["Anna visited Berlin ."] * 12)]  # longer than max_length 32: windows
    torch_pred = load_model(d).predict(texts)
    for precision in ("fp32",):
        onnx_pred = load_model(d, runtime="onnx", precision=precision).predict(texts)
        assert onnx_pred == torch_pred
    assert torch_pred[2] == {"text": "", "words": [], "tags": [], "entities": []}
    tags = load_model(d, runtime="onnx").tag_words([t.split() for t in texts[3:]])
    assert len(tags[0]) == len(texts[3].split())  # every word of the windowed sentence is tagged
    a = load_model(d).evaluate_file(data)
    b = load_model(d, runtime="onnx", precision="int8").evaluate_file(data)
    assert b["runtime"] == "onnx-int8" and a["runtime"] == "torch-fp32"
    assert b["sentences"] == a["sentences"] == len(tm.SENTENCES)


def test_classification_predictions_equal_across_runtimes(seq_export):
    d, _, _ = seq_export
    texts = ["Anna visited Berlin", "the Schweiz is big and Paris is big", " ".join(["Bob lives in Paris ."] * 20)]
    a = load_model(d).predict(texts)
    b = load_model(d, runtime="onnx").predict(texts)
    assert [r["label"] for r in a] == [r["label"] for r in b]
    for x, y in zip(a, b):
        assert x["probability"] == pytest.approx(y["probability"], abs=1e-5)
        assert x["tokens_cut"] == y["tokens_cut"]
    assert a[2]["tokens_cut"] > 0


# --------------------------------------------------------------------------- bad input


def test_export_of_a_folder_without_a_student(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no xdistill student"):
        export_student(tmp_path / "empty", [tmp_path / "x.tsv"])
    assert main(["export", "--model", str(tmp_path / "empty"), "--data", "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --model") and "no xdistill student" in err


def test_a_run_folder_points_to_its_student(ner_export, capsys):
    d, data, _ = ner_export  # d is RUN/student
    for argv in (["export", "--model", str(d.parent), "--data", str(data)], ["predict", "--model", str(d.parent), "--text", "x"]):
        assert main(argv) == 2
        assert f"did you mean {d}?" in capsys.readouterr().err


def test_export_needs_data(ner_export, capsys, monkeypatch):
    d, _, _ = ner_export
    monkeypatch.delenv("XDISTILL_DATA_DIR", raising=False)
    assert main(["export", "--model", str(d), "--format", "onnx"]) == 2
    assert "--data-dir" in capsys.readouterr().err
    assert main(["export", "--model", str(d), "--data-dir", str(d)]) == 2  # no wikiann/dev-xx.tsv there
    err = capsys.readouterr().err
    assert "evaluation file" in err and "dev-xx.tsv" in err


def test_export_fails_above_the_tolerance_and_leaves_no_model(tmp_path, tok):
    d = tm.make_student_dir(tmp_path / "student", tok)
    data = tm.write_panx(tmp_path / "dev.tsv", tm.SENTENCES)
    with pytest.raises(ExportError, match="differ from PyTorch"):
        export_student(d, [data], tolerance=-1.0)  # any difference (even 0) exceeds a negative tolerance
    assert not onnx_path(d, "fp32").exists()
    parity = json.loads((d / "onnx" / "parity.json").read_text())
    assert parity["fp32"]["passed"] is False


def test_onnx_file_from_another_student_is_refused(ner_export, tmp_path, tok):
    d, _, _ = ner_export
    other = tm.make_student_dir(tmp_path / "other", tok, seed=7)
    shutil.copytree(d / "onnx", other / "onnx")
    with pytest.raises(ConfigError, match="exported from another student"):
        load_model(other, runtime="onnx")


def test_runtime_errors(ner_export, tmp_path, tok, capsys):
    d, _, _ = ner_export
    fresh = tm.make_student_dir(tmp_path / "fresh", tok)
    with pytest.raises(ConfigError, match="run `python -m xdistill export"):
        load_model(fresh, runtime="onnx")
    with pytest.raises(ConfigError, match="--quantize int8"):
        load_model(fresh, runtime="onnx", precision="int8")
    with pytest.raises(ConfigError, match="--runtime"):
        load_model(d, runtime="tensorrt")
    with pytest.raises(ConfigError, match="needs --runtime onnx"):
        load_model(d, precision="int8")
    (tmp_path / "bad" / "onnx").mkdir(parents=True)
    tm.make_student_dir(tmp_path / "bad", tok)
    onnx_path(tmp_path / "bad").write_bytes(b"not an onnx file")
    with pytest.raises(ConfigError, match="not a readable ONNX model"):
        load_model(tmp_path / "bad", runtime="onnx")
    assert main(["predict", "--model", str(fresh), "--runtime", "onnx", "--text", "Anna"]) == 2
    assert "export" in capsys.readouterr().err


def test_onnx_runtime_refuses_a_teacher(tmp_path, tok):
    teacher = tm.make_teacher(len(tok))
    teacher.save_pretrained(tmp_path / "teacher")
    tok.save_pretrained(tmp_path / "teacher")
    with pytest.raises(ConfigError, match="a teacher checkpoint"):
        load_model(tmp_path / "teacher", runtime="onnx")


def test_cli_export_and_predict(tmp_path, tok, capsys):
    d = tm.make_student_dir(tmp_path / "student", tok, seed=2)
    data = tm.write_panx(tmp_path / "dev.tsv", tm.SENTENCES)
    assert main(["export", "--model", str(d), "--format", "onnx", "--quantize", "int8", "--data", str(data),
                 "--max-examples", "3", "--threads", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["examples"] == 3 and out["max_abs_logit_diff_fp32"] <= 1e-3 and out["int8"] == "onnx/model.int8.onnx"
    assert (d / "README.md").is_file() and "ONNX export" in (d / "README.md").read_text()
    lines = {}
    for runtime in ("torch", "onnx"):
        assert main(["predict", "--model", str(d), "--runtime", runtime, "--text", "Anna visited Berlin ."]) == 0
        lines[runtime] = json.loads(capsys.readouterr().out)
    assert lines["torch"] == lines["onnx"]
    # re-export without --quantize keeps the int8 file only while it still matches the weights
    assert main(["export", "--model", str(d), "--data", str(data), "--max-examples", "3"]) == 0
    assert onnx_path(d, "int8").is_file()


# --------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def mbert_tok(data_dir):
    from transformers import BertTokenizer

    tok = BertTokenizer(vocab=str(data_dir / "tokenizers" / "bert-base-multilingual-cased" / "vocab.txt"),
                        do_lower_case=False, strip_accents=False)
    assert len(tok) == 119547
    return tok


def test_onnx_and_torch_agree_on_real_wikiann_sentences(data_dir, mbert_tok, tmp_path):
    """A student over the real mBERT vocabulary (random weights, so every tag occurs), exported with
    parity on real dev files; ORT and PyTorch then give the same entity spans for raw real text."""
    from xdistill.data.readers import read_ner_file
    from xdistill.students.bilstm import BiLSTMStudent
    from xdistill.students.vocab import prune_vocabulary

    files = [data_dir / "wikiann" / f"dev-{lang}.tsv" for lang in ("de", "sw", "ar")]
    sents = [s for f in files for s in read_ner_file(f, format="panx")[0][:60]]
    ids = [mbert_tok(list(s.tokens), is_split_into_words=True)["input_ids"] for s in sents]
    kept, vocab_map = prune_vocabulary(ids, len(mbert_tok), mbert_tok.pad_token_id, mbert_tok.unk_token_id,
                                       mbert_tok.all_special_ids)
    s = BiLSTMStudent.build(vocab_map=vocab_map, student_vocab_size=len(kept), embedding_dim=16, hidden_size=16,
                            num_labels=7, dropout=0.0, seed=5)
    s.eval()
    d = tmp_path / "student"
    s.save(d, tokenizer=mbert_tok, extra={"task": "wikiann", "task_type": "token-classification",
                                          "labels": list(tm.LABELS), "max_length": 24, "groups": ["de", "sw", "ar"]})
    assert main(["export", "--model", str(d), "--quantize", "int8", "--data-dir", str(data_dir), "--max-examples", "60"]) == 0
    parity = json.loads((d / "onnx" / "parity.json").read_text())
    assert parity["data"]["examples"] == 180 and parity["fp32"]["max_abs_logit_diff"] <= 1e-3
    texts = [" ".join(s.tokens) for s in sents]
    a = load_model(d).predict(texts)
    b = load_model(d, runtime="onnx").predict(texts)
    assert a == b
    assert sum(len(r["entities"]) for r in a) > 0  # random weights tag plenty; the comparison is not vacuous
