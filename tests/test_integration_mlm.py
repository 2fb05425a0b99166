"""Integration: the paper recipe (``--preset paper``: continued MLM pretraining of mBERT, then
fine-tuning and distillation) end to end on real WikiANN data, with a tiny random checkpoint of
mBERT's shape (BERT with mBERT's 119,547-token WordPiece vocabulary, hidden size 32) standing in for
``bert-base-multilingual-cased``, and the sizes cut down to run in about a minute.
"""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForMaskedLM, BertConfig, BertForMaskedLM, BertTokenizerFast

from xdistill.cli import main

pytestmark = pytest.mark.integration

SMALL = ["--langs", "sw", "--labeled-per-lang", "60", "--teacher-labeled-per-lang", "200", "--validation-per-lang", "40",
         "--transfer-per-lang", "150", "--unlabeled-per-lang", "100", "--eval-per-lang", "60", "--max-length", "64",
         "--teacher-epochs", "1", "--teacher-batch-size", "16", "--max-epochs", "1", "--baseline-max-epochs", "2",
         "--embedding-dim", "16", "--hidden-size", "16", "--teacher-mlm", "30", "--mlm-batch-size", "16",
         "--mlm-eval-steps", "15"]


@pytest.fixture(scope="module")
def tiny_mbert(tmp_path_factory, data_dir):
    """A randomly initialised ``BertForMaskedLM`` with mBERT's vocabulary and a tiny body, saved with its tokenizer."""
    d = tmp_path_factory.mktemp("tiny-mbert")
    tok = BertTokenizerFast(vocab=str(data_dir / "tokenizers" / "bert-base-multilingual-cased" / "vocab.txt"),
                            do_lower_case=False, strip_accents=False, tokenize_chinese_chars=True)
    torch.manual_seed(0)
    BertForMaskedLM(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                               intermediate_size=64)).save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory, data_dir, tiny_mbert):
    out = tmp_path_factory.mktemp("paper")
    argv = ["ner", "--preset", "paper", "--source", "local", "--data-dir", str(data_dir), "--teacher", str(tiny_mbert),
            "--output-dir", str(out), *SMALL]
    torch.set_num_threads(2)
    assert main(argv) == 0
    return out


def test_paper_recipe_pretrains_the_checkpoint_further(paper_run, tiny_mbert):
    r = json.loads((paper_run / "report.json").read_text())
    t = r["teacher"]
    assert t["source"] == str(tiny_mbert) and not t["trained_from_scratch"] and t["fine_tuned_here"]
    assert "MLM-pretrained further" in t["description"]
    mlm = t["mlm"]
    assert mlm["started_from"] == str(tiny_mbert) and mlm["steps"] == 30 and mlm["budget"] == "30"
    assert set(mlm["sources"]) == {"transfer", "labeled"} and mlm["sources"]["labeled"] == 200
    assert [s for s, _ in mlm["held_out_loss"]] == [15, 30] and mlm["train_loss"]
    ph = r["phases"]
    assert ph["mlm_pretraining"]["steps"] == 30 and ph["mlm_pretraining"]["held_out_loss_last"] == mlm["held_out_loss"][-1][1]
    assert ph["distillation"]["stronger_baseline"] in ("baseline", "baseline_svd")
    assert {m["model"] for m in r["models"]} >= {"student (no distillation)", "student (no distillation, SVD embeddings)"}
    assert "What each phase gave" in (paper_run / "report.md").read_text()


def test_the_pretrained_masked_lm_is_saved_next_to_the_teacher(paper_run):
    model = AutoModelForMaskedLM.from_pretrained(paper_run / "teacher-mlm")
    tok = BertTokenizerFast.from_pretrained(paper_run / "teacher-mlm")
    enc = tok("Nairobi ni [MASK] kuu .", return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits
    assert logits.shape == (1, enc["input_ids"].shape[1], len(tok))


def test_scratch_teacher_with_ppmi_embeddings_of_every_train_sentence(tmp_path, data_dir):
    """``--teacher-embeddings ppmi --mlm-text transfer,labeled,train`` end to end on real Swahili data:
    the report says what the vectors were computed from, the validation sentences left out."""
    small = SMALL[:SMALL.index("--teacher-mlm")]   # the MLM options last
    argv = ["ner", "--preset", "smoke", "--source", "local", "--data-dir", str(data_dir), "--output-dir", str(tmp_path),
            *small, "--teacher-hidden-size", "32", "--teacher-heads", "2", "--teacher-intermediate-size", "64",
            "--teacher-layers", "1", "--teacher-embeddings", "ppmi", "--mlm-text", "transfer,labeled,train"]
    torch.set_num_threads(2)
    assert main(argv) == 0
    r = json.loads((tmp_path / "report.json").read_text())
    t = r["teacher"]
    assert t["trained_from_scratch"] and "word embeddings from PPMI-SVD of the task text" in t["description"]
    e = t["embeddings"]
    n_train = sum(1 for line in open(data_dir / "wikiann" / "train-sw.tsv", encoding="utf-8") if not line.strip())
    assert e["method"] == "ppmi-svd" and e["dim"] == 32 and e["pieces"] > 1000
    # the 40 validation sentences and the train sentences equal to one of them are left out
    assert e["sources"]["labeled"] == 200 and 0.9 * n_train <= e["sources"]["train"] <= n_train - 40
    assert t["mlm"] is None
    assert r["phases"]["word_embeddings"] == {k: e[k] for k in ("method", "tokens", "pieces", "seconds")}
    assert r["phases"]["mlm_pretraining"] is None
    assert f"- Teacher word embeddings: ppmi-svd of {e['tokens']} tokens" in (tmp_path / "report.md").read_text()
