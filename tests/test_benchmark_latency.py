"""The batch-inference latency benchmark (``python -m xdistill benchmark``) on tiny models, offline.

One quick run (module fixture) times a NER student (exported with :func:`export_student`), a
sequence-classification student (ONNX written directly), the NER student's teacher and two tiny
"mBERT-base" references (one per head) built from a config folder passed with ``--mbert``.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from tiny_models import SENTENCES, bert_config, make_student_dir, make_teacher, make_tokenizer, single_thread, write_panx  # noqa: E402

from xdistill import benchmark as bm  # noqa: E402
from xdistill.errors import ConfigError  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
BATCHES = [1, 4]
SEQ = 16


def make_sequence_student(directory: Path, tokenizer) -> Path:
    """A saved max-pooling BiLSTM classifier (2 labels) with its ONNX fp32/int8 files (no parity.json)."""
    from xdistill.onnx_export import META_FINGERPRINT, export_module_to_onnx, file_sha256, onnx_path, quantize_int8
    from xdistill.students.bilstm import BiLSTMStudent, prune_vocabulary

    kept, vocab_map = prune_vocabulary([list(range(len(tokenizer)))], len(tokenizer), tokenizer.pad_token_id,
                                       tokenizer.unk_token_id, tokenizer.all_special_ids)
    student = BiLSTMStudent.build(vocab_map=vocab_map, student_vocab_size=len(kept), embedding_dim=8, hidden_size=8,
                                  num_labels=2, teacher_hidden_size=32, dropout=0.0, pooling="max").eval()
    student.save(directory, tokenizer=tokenizer, extra={"task": "toy-sentiment", "task_type": "sequence-classification",
                                                        "labels": ["neg", "pos"], "max_length": 32})
    example = (torch.tensor([[2, 5, 6, 3], [2, 7, 3, 0]]), torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]))
    export_module_to_onnx(student.export_module().eval(), example, onnx_path(directory, "fp32"), False,
                          {META_FINGERPRINT: file_sha256(directory / "model.safetensors")})
    quantize_int8(onnx_path(directory, "fp32"), onnx_path(directory, "int8"))
    return directory


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Tiny students, teacher and mBERT config folder."""
    from xdistill.onnx_export import export_student

    root = tmp_path_factory.mktemp("latency")
    with single_thread():
        tok = make_tokenizer(root / "tok")
        ner = make_student_dir(root / "ner" / "student", tok)
        teacher = make_teacher(len(tok))
        teacher.save_pretrained(root / "ner" / "teacher")
        tok.save_pretrained(root / "ner" / "teacher")
        export_student(ner, [write_panx(root / "eval.tsv", SENTENCES)], quantize="int8", threads=1)
        cls = make_sequence_student(root / "cls" / "student", tok)
    mbert = root / "mbert"
    bert_config(len(tok)).save_pretrained(mbert)  # config.json only: random weights
    return {"root": root, "tok": tok, "ner": ner, "cls": cls, "teacher": root / "ner" / "teacher", "mbert": mbert}


@pytest.fixture(scope="module")
def result(tiny):
    """One quick benchmark run; ``cls`` is given as its run folder (expanded to the student inside)."""
    out = tiny["root"] / "out"
    argv = ["--students", str(tiny["ner"]), str(tiny["root"] / "cls"), "--mbert", str(tiny["mbert"]),
            "--batch-sizes", ",".join(map(str, BATCHES)), "--sequence-length", str(SEQ), "--quick", "--threads", "1",
            "--output-dir", str(out)]
    before = torch.get_num_threads()
    assert bm.main(argv) == 0
    assert torch.get_num_threads() == before  # restored
    return {"out": out, "json": json.loads((out / "latency.json").read_text()), "argv": argv}


NER, CLS, TEACHER = "ner/student", "cls/student", "ner/teacher"
MB_TOKEN, MB_SEQ = "mBERT-base (token, 7 labels)", "mBERT-base (sequence, 2 labels)"


def test_outputs_and_schema(result):
    out, r = result["out"], result["json"]
    for f in ("latency.json", "latency.md", "latency.png"):
        assert (out / f).is_file() and (out / f).stat().st_size > 0
    assert not list(out.glob(".*.tmp"))
    assert set(r) == {"settings", "machine", "mbert_base", "rows", "goals"}
    assert r["settings"] == {"batch_sizes": BATCHES, "sequence_length": SEQ, "warmup": 1, "repeats": 3, "threads": 1,
                             "quick": True, "seed": 0}
    m = r["machine"]
    assert {"cpu", "physical_cores", "logical_cores", "threads", "platform", "python", "torch", "onnxruntime",
            "transformers", "numpy"} <= set(m) and m["threads"] == 1 and m["cpu"]
    mb = r["mbert_base"]
    assert mb["weights"] == "random" and "latency does not depend on weight values" in mb["note"]
    assert mb["parameters"] > 0 and {i["head"] for i in mb["references"]} == {"token-classification", "sequence-classification"}
    assert (out / "onnx" / "mbert-base-token-7.onnx").is_file() and (out / "onnx" / "mbert-base-sequence-2.int8.onnx").is_file()
    md = (out / "latency.md").read_text()
    assert "random weights" in md and "Speedup against mBERT-base" in md and NER in md
    assert (out / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rows_cover_every_model_runtime_batch(result):
    rows = result["json"]["rows"]
    keys = {(x["model"], x["runtime"], x["batch_size"]) for x in rows}
    models = {NER, CLS, TEACHER, MB_TOKEN, MB_SEQ}
    assert keys == {(m, rt, b) for m in models for rt in bm.RUNTIMES for b in BATCHES}
    assert len(rows) == len(keys)
    roles = {x["model"]: x["role"] for x in rows}
    assert roles == {NER: "student", CLS: "student", TEACHER: "teacher", MB_TOKEN: "mbert-base", MB_SEQ: "mbert-base"}
    for x in rows:
        assert 0 < x["min_ms"] <= x["median_ms"] <= x["p90_ms"] <= x["max_ms"]
        assert x["sequences_per_second"] == pytest.approx(x["batch_size"] / (x["median_ms"] / 1000))
        assert x["sequence_length"] == SEQ and x["parameters"] > 0
        assert x["speedup_vs_mbert_base"] is not None and x["speedup_vs_mbert_base"] > 0


def test_speedups_compression_and_metrics(result):
    rows = result["json"]["rows"]
    get = {(x["model"], x["runtime"], x["batch_size"]): x for x in rows}
    for model, ref in ((NER, MB_TOKEN), (CLS, MB_SEQ), (TEACHER, MB_TOKEN)):
        for rt in bm.RUNTIMES:
            for b in BATCHES:
                x, m = get[(model, rt, b)], get[(ref, rt, b)]
                assert x["speedup_vs_mbert_base"] == pytest.approx(m["median_ms"] / x["median_ms"])
                assert x["compression_vs_mbert_base"] == pytest.approx(m["parameters"] / x["parameters"])
    assert get[(MB_TOKEN, "torch-fp32", 1)]["speedup_vs_mbert_base"] == pytest.approx(1.0)
    # the NER student's metric per runtime comes from onnx/parity.json; the classifier has none
    parity = json.loads((Path(get[(NER, "onnx-int8", 1)]["path"]) / "onnx" / "parity.json").read_text())
    x = get[(NER, "onnx-int8", 1)]
    assert x["metric"] == parity["metric"] and x["metric_value"] == parity["scores"]["onnx_int8"][parity["metric"]]
    assert get[(CLS, "torch-fp32", 1)]["metric"] is None and get[(MB_SEQ, "torch-fp32", 1)]["metric_value"] is None


def test_goals(result):
    g = result["json"]["goals"]
    assert g["batch_size"] == max(BATCHES) and set(g["students"]) == {NER, CLS}
    ner, cls = g["students"][NER], g["students"][CLS]
    assert ner["speedup_goal"] == 300.0 and isinstance(ner["speedup_goal_met"], bool)
    assert cls["speedup_goal"] is None and cls["speedup_goal_met"] is None
    for v in (ner, cls):
        assert set(v["onnx_fp32_speedup_vs_torch"]) == {str(b) for b in BATCHES}
        assert isinstance(v["onnx_fp32_not_slower_than_torch"], bool) and isinstance(v["int8_faster_than_fp32"], bool)
        assert v["compression_goal_met"] == (v["compression_vs_mbert_base"] >= 35)


def test_per_student_latency_and_card(result, tiny):
    for d, model, ref in ((tiny["ner"], NER, MB_TOKEN), (tiny["cls"], CLS, MB_SEQ)):
        s = json.loads((d / "latency.json").read_text())
        assert set(s) == {"settings", "machine", "mbert_base", "rows", "goals"}
        assert {x["model"] for x in s["rows"]} == {model, ref} and len(s["rows"]) == 2 * 3 * len(BATCHES)
        assert set(s["goals"]["students"]) == {model}
        card = (d / "README.md").read_text()
        assert "## Latency" in card and "onnx-int8" in card


def test_reference_onnx_is_cached(result, tiny):
    """A second export of the same reference reuses OUT/onnx; another identity re-exports."""
    from transformers import AutoModelForTokenClassification

    with single_thread():
        torch.manual_seed(0)
        model = AutoModelForTokenClassification.from_config(bert_config(len(tiny["tok"]))).eval()
        c = bm.Candidate(name="mBERT-base (token, 7 labels)", role="mbert-base", task="t", path="x", head=bm.TOKEN,
                         num_labels=7, parameters=1, known_ids=np.arange(5, 40), forward=bm.LogitsModule(model).eval())
        out = tiny["root"] / "cache"
        first = bm.prepare_reference_onnx(c, out, "identity-a", 1)
        assert first["cached"] is False and first["max_abs_logit_diff"] < 1e-3
        assert bm.prepare_reference_onnx(c, out, "identity-a", 1)["cached"] is True
        assert bm.prepare_reference_onnx(c, out, "identity-b", 1)["cached"] is False


def test_folder_without_student_is_a_config_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"--students .*empty: no xdistill student here"):
        bm.main(["--students", str(tmp_path / "empty"), "--quick", "--output-dir", str(tmp_path / "out")])
    with pytest.raises(ConfigError, match="no such directory"):
        bm.main(["--students", str(tmp_path / "missing"), "--quick", "--output-dir", str(tmp_path / "out")])


def test_student_without_onnx_is_a_config_error(tmp_path, tiny):
    d = make_student_dir(tmp_path / "run" / "student", tiny["tok"])
    with pytest.raises(ConfigError, match=r"onnx/model\.onnx does not exist.*xdistill export --model .* --quantize int8"):
        bm.main(["--students", str(d), "--quick", "--output-dir", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_parse_batch_sizes():
    assert bm.parse_batch_sizes("1,32") == [1, 32]
    assert bm.parse_batch_sizes(" 32, 1,1") == [1, 32]
    for bad in ("0", "1,x", "", "1.5", "-1", "1,,2", "4,0"):
        with pytest.raises(ConfigError, match="--batch-sizes"):
            bm.parse_batch_sizes(bad)


@pytest.mark.parametrize("option,value", [("--batch-sizes", "0"), ("--batch-sizes", "1,x"), ("--sequence-length", "0"),
                                          ("--repeats", "0"), ("--warmup", "-1"), ("--threads", "two"), ("--seed", "1.5")])
def test_main_rejects_bad_numbers(tmp_path, option, value):
    with pytest.raises(ConfigError, match=option):
        bm.main(["--students", str(tmp_path), option, value, "--output-dir", str(tmp_path / "out")])


def test_settings_defaults_and_quick():
    p = bm.build_parser()
    s = bm.settings_from_args(p.parse_args(["--students", "x"]))
    assert (s.batch_sizes, s.sequence_length, s.warmup, s.repeats, s.quick) == ([1, 32], 32, bm.DEFAULT_WARMUP, bm.DEFAULT_REPEATS, False)
    assert s.threads == torch.get_num_threads()
    q = bm.settings_from_args(p.parse_args(["--students", "x", "--quick", "--repeats", "5"]))
    assert (q.warmup, q.repeats, q.quick) == (bm.QUICK_WARMUP, 5, True)


def test_inputs_and_stats():
    known = np.array([5, 9, 11])
    ids, mask = bm.make_inputs(known, 4, 7, seed=3)
    assert ids.shape == (4, 7) and ids.dtype == np.int64 and set(ids.ravel()) <= set(known) and mask.all()
    assert np.array_equal(ids, bm.make_inputs(known, 4, 7, seed=3)[0])
    st = bm.latency_stats([1.0, 2.0, 3.0, 4.0, 10.0], batch_size=2)
    assert st["median_ms"] == 3.0 and st["p90_ms"] == pytest.approx(np.percentile([1, 2, 3, 4, 10], 90))
    assert (st["min_ms"], st["max_ms"], st["mean_ms"]) == (1.0, 10.0, 4.0)
    assert st["sequences_per_second"] == pytest.approx(2 / 0.003)
    assert list(bm.known_student_ids(torch.tensor([0, 1, 2, 1, 3]))) == [2, 4]


def test_mbert_falls_back_to_builtin_config_offline(monkeypatch):
    """Without the hub (probe fails fast) and no cache: mBERT-base's configuration, random weights."""
    monkeypatch.setattr(bm, "hub_probe", lambda ref, timeout=bm.HUB_TIMEOUT_S: (False, "ConnectError: offline"))
    monkeypatch.setattr(bm, "_cached_hub_file", lambda ref, name: None)
    src = bm.resolve_mbert(bm.DEFAULT_MBERT)
    c = src.config
    assert src.weights == "random" and "latency does not depend on weight values" in src.note and "offline" in src.source
    assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.intermediate_size, c.vocab_size,
            c.max_position_embeddings, c.type_vocab_size) == (12, 768, 12, 3072, 119547, 512, 2)
    with pytest.raises(ConfigError, match="--mbert someone/other-model: .*hub is not reachable"):
        bm.resolve_mbert("someone/other-model")


def test_mbert_folder_without_config_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="--mbert .*config.json"):
        bm.resolve_mbert(str(tmp_path))


def test_script_prints_one_line_error(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("benchmark_latency_script", REPO_ROOT / "scripts" / "benchmark_latency.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.run(["--students", str(tmp_path), "--quick", "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: --students") and "Traceback" not in "\n".join(err)


def test_student_metrics_put_onnx_runtimes_on_the_run_evaluation(tmp_path):
    """With a training summary, PyTorch's metric is the run's and each ONNX runtime's is shifted by
    its parity difference, so teacher and student rows compare on one evaluation."""
    from xdistill.benchmark import student_metrics

    d = tmp_path / "student"
    (d / "onnx").mkdir(parents=True)
    (d / "onnx" / "parity.json").write_text(json.dumps({"metric": "f1", "scores": {
        "torch_fp32": {"f1": 60.0}, "onnx_fp32": {"f1": 60.0}, "onnx_int8": {"f1": 59.75}}}))
    assert student_metrics(d) == ("f1", {"torch-fp32": 60.0, "onnx-fp32": 60.0, "onnx-int8": 59.75})
    (d / "training_summary.json").write_text(json.dumps({"metric": "f1", "scores": {"student": {"f1": 55.5}}}))
    k, v = student_metrics(d)
    assert k == "f1" and v["torch-fp32"] == 55.5 and v["onnx-fp32"] == 55.5 and v["onnx-int8"] == pytest.approx(55.25)
    (d / "onnx" / "parity.json").unlink()
    assert student_metrics(d) == ("f1", {"torch-fp32": 55.5})
    assert student_metrics(tmp_path / "none") == (None, {})
