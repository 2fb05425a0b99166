"""Integration: ``python -m xdistill classify --preset smoke`` on real IMDB rows with ``--augment generate``.

Trains a tiny scratch teacher on real reviews from ``../shared/data/imdb``, a
tiny scratch GPT-2 that writes new reviews, and students distilled on the
unlabeled, generated and combined transfer sets; checks the report's rows and
the saved student.
"""

from __future__ import annotations

import json

import pytest

from xdistill.cli import main

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def classify_run(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("classify")
    argv = ["classify", "--task", "imdb", "--preset", "smoke", "--data-dir", str(data_dir), "--output-dir", str(out)]
    assert main(argv) == 0
    return out


def test_report_rows(classify_run):
    r = json.loads((classify_run / "report.json").read_text())
    assert r["task"] == "imdb" and r["task_type"] == "sequence-classification" and r["metric"] == "accuracy"
    names = [m["model"] for m in r["models"]]
    assert names == ["teacher", "student (no distillation)", "student (no distillation, SVD embeddings)",
                     "student (distilled, unlabeled)",
                     "student (distilled, generated)", "student (distilled, both)"]
    for m in r["models"]:
        assert 0 <= m["accuracy"] <= 100 and 0 <= m["macro_f1"] <= 100
        assert m["parameters"] > 0 and m["compression_vs_reference"] == pytest.approx(177.3e6 / m["parameters"])
    assert r["groups"]["imdb"]["n_eval"] == 100
    g = r["generation"]
    assert g["trained_from_scratch"] is True and g["sampled"] == 120 and 0 < g["kept"] <= g["sampled"]
    assert g["kept"] == g["sampled"] - sum(g["removed"].values())
    assert g["mean_words"] >= 5 and g["samples"]
    assert set(r["mean"]["generated_vs_unlabeled"]) == {"generated", "both"}
    prof = r["transfer_profile"]  # the teacher's class balance on each transfer set, from the cache
    assert set(prof) == {"unlabeled", "generated", "both"} and prof["generated"]["n"] == g["kept"]
    assert all(sum(p["labels"].values()) == pytest.approx(100, abs=0.02) for p in prof.values())
    enc = r["data"]["encoding"]
    assert enc["labeled"]["max_length"] == 64 and enc["labeled"]["examples_truncated"] > 0  # real reviews exceed 64 tokens
    counts = r["data"]["per_group"]["imdb"]
    assert counts["labeled"] == 80 and counts["validation"] == 40
    assert r["teacher"]["trained_from_scratch"] is True
    md = (classify_run / "report.md").read_text()
    assert "Generated transfer text" in md and "Truncation" in md


def test_saved_students_predict_and_evaluate(classify_run, tmp_path, capsys):
    for name in ("student", "student-generated", "student-both"):
        assert (classify_run / name / "model.safetensors").is_file()
    assert main(["predict", "--model", str(classify_run / "student"), "--text", "A wonderful, moving film.",
                 "--text", "Dull and far too long."]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert len(lines) == 2 and all(x["label"] in ("neg", "pos") and 0.5 <= x["probability"] <= 1 for x in lines)
    csv_path = tmp_path / "few.csv"
    csv_path.write_text('text,label\n"Great acting, great story.",1\n"Terrible.<br />Boring.",0\n', encoding="utf-8")
    assert main(["evaluate", "--model", str(classify_run / "student"), "--data", str(csv_path)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["texts"] == 2 and 0 <= res["accuracy"] <= 100 and "macro_f1" in res


def test_classifier_card_export_and_onnx_predict(classify_run, data_dir, capsys):
    """Each saved classifier has a model card naming its transfer set; export on the real IMDB test
    file passes parity, and ONNX Runtime classifies real reviews as PyTorch does."""
    import gzip

    import pandas as pd

    from xdistill.serving.inference import load_model

    for name, transfer in (("student", "unlabeled"), ("student-generated", "generated")):
        summary = json.loads((classify_run / name / "training_summary.json").read_text())
        assert summary["transfer"] == transfer and summary["metric"] == "accuracy"
        assert "accuracy" in (classify_run / name / "README.md").read_text()
    st = classify_run / "student"
    assert main(["export", "--model", str(st), "--quantize", "int8", "--data-dir", str(data_dir), "--max-examples", "200"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["examples"] == 200 and res["max_abs_logit_diff_fp32"] <= 1e-3 and set(res["accuracy"]) == {
        "torch_fp32", "onnx_fp32", "onnx_int8"}
    with gzip.open(data_dir / "imdb" / "test.csv.gz", "rt", encoding="utf-8") as f:
        texts = pd.read_csv(f, nrows=50)["text"].tolist()
    a, b = load_model(st).predict(texts), load_model(st, runtime="onnx").predict(texts)
    assert [x["label"] for x in a] == [x["label"] for x in b]
    assert max(abs(x["probability"] - y["probability"]) for x, y in zip(a, b)) < 1e-4
