"""Zero-shot runs on real data: the NER command with adversarial examples on poisoned task files (no
task text reaches the student), the classification command, and bad input from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from xdistill import cli
from xdistill.distill.adversarial import AdversarialExamples
from xdistill.distill.loop import Distiller
from xdistill.students import load_student
from xdistill.teachers.build import load_tokenizer
from xdistill.config import NERDataArguments, TeacherArguments


def _poison_token(vocab_file: Path, ood_lines: list[str], tokenizer) -> str:
    """A whole-word token of the vocabulary that is one id and appears nowhere in the OOD text."""
    text = "\n".join(ood_lines)
    for tok in vocab_file.read_text(encoding="utf-8").split("\n")[20000:]:
        if tok.isalpha() and tok.isascii() and len(tok) >= 7 and tok not in text \
                and len(tokenizer(tok, add_special_tokens=False)["input_ids"]) == 1:
            return tok
    raise AssertionError("no poison token found")


def _poisoned_copy(src: Path, dst: Path, poison: str, sentences: int) -> None:
    """The first ``sentences`` sentences of a PAN-X file, each starting with the word ``poison`` (tag O)."""
    blocks = [b for b in src.read_text(encoding="utf-8").split("\n\n") if b.strip()][:sentences]
    dst.write_text("\n\n".join(f"{poison}\tO\n{b.strip()}" for b in blocks) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def poisoned(data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("poisoned")
    (root / "wikiann").mkdir()
    (root / "tokenizers").symlink_to(data_dir / "tokenizers")
    ood = [ln for ln in (data_dir / "unlabeled/leipzig/sw.txt").read_text(encoding="utf-8").splitlines() if ln][:300]
    tokenizer = load_tokenizer(TeacherArguments(), NERDataArguments(data_dir=str(root), langs="sw"))
    poison = _poison_token(data_dir / "tokenizers/bert-base-multilingual-cased/vocab.txt", ood, tokenizer)
    for split, n in (("train", 500), ("dev", 150)):
        _poisoned_copy(data_dir / f"wikiann/{split}-sw.tsv", root / f"wikiann/{split}-sw.tsv", poison, n)
    (root / "ood.txt").write_text("\n".join(ood) + "\n", encoding="utf-8")
    return root, poison, tokenizer.convert_tokens_to_ids(poison)


def test_ner_zero_shot_student_never_sees_task_text(poisoned, tmp_path, monkeypatch):
    root, poison, poison_id = poisoned
    seen, perturbed = [], []
    original_loss, original_perturb = Distiller._loss_and_batch, AdversarialExamples.perturb

    def recording_loss(self, stage, source, rows):
        loss, batch = original_loss(self, stage, source, rows)
        seen.append(batch["input_ids"].clone())
        return loss, batch

    def recording_perturb(self, ids, mask):
        out = original_perturb(self, ids, mask)
        perturbed.append(out.clone())
        return out

    monkeypatch.setattr(Distiller, "_loss_and_batch", recording_loss)
    monkeypatch.setattr(AdversarialExamples, "perturb", recording_perturb)
    out = tmp_path / "run"
    status = cli.main(["ner", "--preset", "smoke", "--data-dir", str(root), "--langs", "sw", "--output-dir", str(out),
                       "--zero-shot", "--ood-text", str(root / "ood.txt"), "--adversarial", "--adversarial-generator-mlm",
                       "5", "--adversarial-generator-hidden", "32", "--adversarial-generator-layers", "1",
                       "--adversarial-generator-heads", "1", "--student-steps", "3", "--generator-steps", "2", "--max-epochs", "1"])
    assert status == 0
    assert seen and perturbed
    assert not any(bool((ids == poison_id).any()) for ids in seen + perturbed)
    # the task's text did carry the poison: the teacher fine-tuned on it, and evaluation reads it
    assert poison in (root / "wikiann/train-sw.tsv").read_text(encoding="utf-8")
    report = json.loads((out / "report.json").read_text())
    assert report["stages"] == ["representation", "logits"] and report["labeled_stage"] is False
    assert report["ood"]["sources"] == {str(root / "ood.txt"): 300}
    assert "no text and no labels of the task" in report["data"]["student_saw"]
    assert report["adversarial"]["generator_updates"] > 0 and report["adversarial"]["perturbed_batches"] > 0
    assert {m["model"] for m in report["models"]} == {"teacher", "student (zero-shot, OOD text)",
                                                      "student (zero-shot, OOD text + adversarial)"}
    for d in ("student", "student-adversarial"):
        student, _ = load_student(out / d)
        assert poison_id not in set(student.known_input_ids().tolist())
    assert (out / "generator-mlm" / "config.json").is_file() and (out / "report.md").is_file()


def test_classify_zero_shot_smoke(data_dir, tmp_path):
    ood = tmp_path / "wiki.txt"
    words = [ln.split("\t")[0] for ln in (data_dir / "wikiann/dev-en.tsv").read_text(encoding="utf-8").split("\n")[:4000]]
    ood.write_text(" ".join(words).replace(" . ", " .\n"), encoding="utf-8")
    out = tmp_path / "cls"
    status = cli.main(["classify", "--preset", "smoke", "--data-dir", str(data_dir), "--output-dir", str(out),
                       "--zero-shot", "--ood-text", str(ood), "--max-epochs", "1"])
    assert status == 0
    report = json.loads((out / "report.json").read_text())
    assert report["task"] == "imdb" and set(report["mean"]) >= {"teacher_accuracy", "ood_accuracy", "ood_to_teacher"}
    assert report["adversarial"] is None and report["ood"]["train_texts"] > 50
    student, _ = load_student(out / "student")
    assert student.kind == "bilstm" and torch.isfinite(next(student.parameters())).all()


@pytest.mark.parametrize("extra, message", [
    (["--zero-shot", "--ood-text", "x.txt", "--labeled-per-lang", "50"], "--zero-shot: --labeled-per-lang gives the student task data"),
    (["--adversarial"], "--adversarial: adversarial examples are part of zero-shot distillation"),
    (["--zero-shot"], "--zero-shot: expected --ood-text"),
    (["--zero-shot", "--ood-text", "x.txt", "--mask-fraction", "0"], "--mask-fraction: expected 0 < f < 1"),
])
def test_bad_zero_shot_options(extra, message, tmp_path, capsys):
    status = cli.main(["ner", "--preset", "smoke", "--output-dir", str(tmp_path / "o"), "--source", "hub", *extra])
    assert status == 2
    assert message in capsys.readouterr().err


def test_missing_ood_file_and_labeled_stage_fail_before_training(data_dir, tmp_path, capsys):
    base = ["ner", "--preset", "smoke", "--data-dir", str(data_dir), "--langs", "sw", "--zero-shot"]
    assert cli.main([*base, "--output-dir", str(tmp_path / "a"), "--ood-text", str(tmp_path / "none.txt")]) == 2
    assert "--ood-text" in capsys.readouterr().err and not (tmp_path / "a" / "teacher").exists()
    ood = tmp_path / "ood.txt"
    ood.write_text("Hii ni sentensi moja.\nNa hii ni nyingine kabisa.\n", encoding="utf-8")
    assert cli.main([*base, "--output-dir", str(tmp_path / "b"), "--ood-text", str(ood),
                     "--stages", "representation,logits,labeled"]) == 2
    assert "--stages: labeled trains on the task's labeled data" in capsys.readouterr().err
    assert not (tmp_path / "b" / "teacher").exists()
