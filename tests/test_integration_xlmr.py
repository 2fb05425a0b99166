"""Integration: an XLM-R (sentencepiece) teacher through ``ner`` on real WikiANN data, ``predict``, ``export``
and the latency benchmark.

The teacher is a tiny random ``XLMRobertaForTokenClassification`` base checkpoint (default labels, so it is
fine-tuned here) whose sentencepiece model is trained in the test on fixture text. Raw text is split into
words by the task's splitter (punctuation split), not by XLM-R's whitespace pre-tokenizer, exactly as with the
mBERT vocabulary; the report and the benchmark compare the student with XLM-R-base, not mBERT-base.
"""

from __future__ import annotations

import json

import pytest
import torch

import tiny_models as tm
from xdistill.cli import main
from xdistill.serving.inference import load_model

pytestmark = pytest.mark.integration

TEXT = "Angela Merkel besuchte Paris."


@pytest.fixture(scope="module")
def xlmr_run(tmp_path_factory, data_dir):
    from transformers import XLMRobertaConfig, XLMRobertaForTokenClassification

    root = tmp_path_factory.mktemp("xlmr")
    tok = tm.make_sentencepiece_tokenizer(root / "teacher")
    torch.manual_seed(0)
    cfg = XLMRobertaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=37, max_position_embeddings=130, type_vocab_size=1,
                           pad_token_id=tok.pad_token_id, bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id)
    XLMRobertaForTokenClassification(cfg).save_pretrained(root / "teacher")  # a base checkpoint: LABEL_0, LABEL_1
    out = root / "run"
    argv = ["ner", "--preset", "smoke", "--langs", "de,sw", "--teacher", str(root / "teacher"), "--data-dir",
            str(data_dir), "--output-dir", str(out)]
    assert main(argv) == 0
    return root, out


def test_report_compares_with_xlmr_base(xlmr_run):
    _, out = xlmr_run
    r = json.loads((out / "report.json").read_text())
    t = r["teacher"]
    assert t["family"] == "xlm-roberta" and t["architecture"] == "XLMRobertaForTokenClassification"
    assert t["fine_tuned_here"] is True and t["trained_from_scratch"] is False and t["vocabulary"] == "Unigram"
    assert r["reference"]["name"] == "XLM-R-base" and r["reference"]["hub_id"] == "xlm-roberta-base"
    s = r["student"]
    assert s["compression_vs_reference"] == pytest.approx(277.5e6 / s["parameters"])
    assert "mBERT" not in (out / "report.md").read_text()
    assert set(r["languages"]) == {"de", "sw"} and all(0 <= v["student_f1"] <= 100 for v in r["languages"].values())
    cfg = json.loads((out / "student" / "config.json").read_text())
    assert cfg["reference"] == "xlmr-base"
    card = (out / "student" / "README.md").read_text()
    assert "XLM-R-base" in card and "Unigram tokens" in card and "WordPiece" not in card


def test_predict_splits_punctuation_as_with_mbert(xlmr_run, data_dir, capsys):
    from transformers import BertTokenizerFast

    _, out = xlmr_run
    assert main(["predict", "--model", str(out / "student"), "--text", TEXT]) == 0
    row = json.loads(capsys.readouterr().out.strip())
    assert row["words"] == ["Angela", "Merkel", "besuchte", "Paris", "."]
    assert len(row["tags"]) == 5
    # the same words as mBERT's own pre-tokenizer gives
    mbert = BertTokenizerFast(vocab=str(data_dir / "tokenizers" / "bert-base-multilingual-cased" / "vocab.txt"),
                              do_lower_case=False, strip_accents=False)
    enc = mbert(TEXT, add_special_tokens=False, return_offsets_mapping=True)
    spans = {}
    for w, (s, e) in zip(enc.word_ids(), enc["offset_mapping"]):
        spans.setdefault(w, [s, e])[1] = e
    assert [TEXT[s:e] for s, e in spans.values()] == row["words"]
    # entities are runs of those words ("Paris" ends where the word does, whatever the tiny model tags ".")
    starts, ends = {s for s, _ in spans.values()}, {e for _, e in spans.values()}
    for e in row["entities"]:
        assert row["text"][e["start"]:e["end"]] == e["text"] and e["start"] in starts and e["end"] in ends
    # while XLM-R's own pre-tokenizer keeps "Paris." as one word
    xlmr = load_model(out / "student").tokenizer
    assert len(set(xlmr(TEXT, add_special_tokens=False).word_ids())) == 4


def test_export_and_benchmark_against_xlmr_base(xlmr_run, data_dir, capsys):
    from transformers import XLMRobertaConfig

    root, out = xlmr_run
    assert main(["export", "--model", str(out / "student"), "--quantize", "int8", "--data-dir", str(data_dir),
                 "--max-examples", "50"]) == 0
    assert json.loads(capsys.readouterr().out)["max_abs_logit_diff_fp32"] <= 1e-3
    # XLM-R-base's shape at a fraction of its width (latency here only needs the configuration to be XLM-R's)
    small = root / "xlmr-base-small"
    XLMRobertaConfig(vocab_size=250002, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=514, type_vocab_size=1).save_pretrained(small)
    assert main(["benchmark", "--students", str(out / "student"), "--quick", "--batch-sizes", "1,4",
                 "--reference", f"xlmr-base={small}", "--output-dir", str(root / "latency")]) == 0
    capsys.readouterr()
    lat = json.loads((root / "latency" / "latency.json").read_text())
    rows = [x for x in lat["rows"] if x["role"] == "student"]
    assert rows and all(x["reference"].startswith("XLM-R-base") for x in rows)
    assert {x["name"] for x in lat["references"]} == {"XLM-R-base (token, 7 labels)"}
    assert all(x["speedup_vs_reference"] > 0 for x in rows)
