"""Bad input, as a table: each case runs the command line (``xdistill.cli.main``) on one malformed input
and expects exit status 2, an ``error:`` message naming the file and line or the option, and no traceback.

The cases cover NER files (PAN-X and CoNLL), task files, CSV and JSON-lines files, ``predict``'s
stdin, options, and model and data folders.
"""

from __future__ import annotations

import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch

import tiny_models as tm
from xdistill.cli import main
from xdistill.config import (DistillArguments, NERDataArguments, RunArguments, RunSettings, StudentArguments,
                             TeacherArguments)
from xdistill.pipeline.folder import RunFolder


@dataclass
class Case:
    """``make(world) -> (argv, stdin bytes or None)``; ``expect``: substrings of the error (``{tmp}`` and
    ``{x}`` are filled from the world)."""

    id: str
    make: Callable
    expect: tuple[str, ...]


class World:
    """Tiny students, a tiny local data folder and a scratch folder for one case."""

    def __init__(self, root: Path, tok):
        self.root = root
        self.tok = tok
        self.ner = tm.make_student_dir(root / "ner" / "student", tok, max_length=16)
        self.cls = tm.make_classifier_dir(root / "cls" / "student", tok)
        self.data = root / "data"
        (self.data / "wikiann").mkdir(parents=True)
        # 30 copies, each sentence ending in its copy number: validation is held out by text, so
        # identical copies would leave nothing outside it
        tm.write_panx(self.data / "wikiann" / "train-sw.tsv",
                      [(words + [str(k)], tags + ["O"]) for k in range(30) for words, tags in tm.SENTENCES])
        tm.write_panx(self.data / "wikiann" / "dev-sw.tsv", tm.SENTENCES)
        tm.write_vocab(self.data / "tokenizers" / "bert-base-multilingual-cased")

    def file(self, name: str, content: str | bytes) -> str:
        p = self.root / "files" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        return str(p)

    def ner_run(self, *extra: str, out: str = "out") -> list[str]:
        return ["ner", "--preset", "smoke", "--langs", "sw", "--data-dir", str(self.data),
                "--output-dir", str(self.root / out), *extra]

    def evaluate(self, model: Path, data: str, *extra: str) -> list[str]:
        return ["evaluate", "--model", str(model), "--data", data, *extra]


TASK = 'name = "t"\ntype = "token-classification"\nlabels = ["O", "B-PER", "I-PER"]\nmetric = "seqeval"\n'
CLS_TASK = ('name = "t"\ntype = "sequence-classification"\nlabels = ["neg", "pos"]\nmetric = "accuracy"\n'
            '[local]\nformat = "csv"\ntrain = "t.csv"\neval = "t.csv"\nlabel_values = { "0" = "neg", "1" = "pos" }\n')


def _task(w: World, text: str) -> list[str]:
    return w.ner_run("--task", w.file("task.toml", text))


def _tiny_teacher(w: World, vocab_size: int) -> str:
    """A tiny BERT checkpoint fine-tuned on the NER labels (its config names them) whose embeddings
    have ``vocab_size`` rows, saved with the tiny tokenizer."""
    from transformers import BertForTokenClassification

    d = w.root / "teacher"
    torch.manual_seed(0)
    BertForTokenClassification(tm.bert_config(vocab_size)).save_pretrained(d)
    w.tok.save_pretrained(d)
    return str(d)


def _tiny_gpt2(w: World) -> str:
    """A tiny GPT-2 checkpoint (no masked-language-model architecture) with the tiny tokenizer."""
    from transformers import GPT2Config, GPT2ForTokenClassification

    d = w.root / "gpt2"
    torch.manual_seed(0)
    GPT2ForTokenClassification(GPT2Config(vocab_size=len(tm.VOCAB), n_embd=16, n_layer=1, n_head=2)).save_pretrained(d)
    w.tok.save_pretrained(d)
    return str(d)


def _settings_recorded(w: World, **distill) -> None:
    out = w.root / "out"
    s = RunSettings(NERDataArguments(source="hub"), TeacherArguments(), StudentArguments(), DistillArguments(**distill),
                    RunArguments(output_dir=str(out)))
    with RunFolder(out, s):
        pass


def _locked(w: World):
    """Hold the output folder's lock (a run in progress) while the case runs."""
    s = RunSettings(NERDataArguments(source="hub"), TeacherArguments(), StudentArguments(), DistillArguments(),
                    RunArguments(output_dir=str(w.root / "out")))
    return RunFolder(w.root / "out", s, command="the other run")


PANX = "Anna\tB-PER\nvisited\tO\n\n"
CASES = [
    # ---- NER files (PAN-X): evaluate --data
    Case("panx one column", lambda w: w.evaluate(w.ner, w.file("a.tsv", "Anna\tB-PER\nvisited\n")), ("a.tsv:2", "1 tab-separated field")),
    Case("panx three fields", lambda w: w.evaluate(w.ner, w.file("a.tsv", "Anna\tB-PER\tx\n")), ("a.tsv:1", "3 tab-separated fields")),
    Case("panx unknown tag", lambda w: w.evaluate(w.ner, w.file("a.tsv", PANX + "Bob\tB-MISC\n")), ("a.tsv:4", "unknown tag 'B-MISC'")),
    Case("panx not IOB2", lambda w: w.evaluate(w.ner, w.file("a.tsv", "Anna\tPER\n")), ("a.tsv:1", "not an IOB2 tag")),
    Case("panx empty token", lambda w: w.evaluate(w.ner, w.file("a.tsv", PANX + "\tO\n")), ("a.tsv:4", "empty token")),
    Case("panx empty file", lambda w: w.evaluate(w.ner, w.file("a.tsv", "")), ("a.tsv", "empty file")),
    Case("panx not UTF-8", lambda w: w.evaluate(w.ner, w.file("a.tsv", b"Anna\tB-PER\nZ\xfcrich\tB-LOC\n")), ("a.tsv:2", "not UTF-8")),
    Case("panx UTF-16", lambda w: w.evaluate(w.ner, w.file("a.tsv", PANX.encode("utf-16"))), ("a.tsv", "UTF-16")),
    Case("panx NUL bytes", lambda w: w.evaluate(w.ner, w.file("a.tsv", "Anna\tB-PER\nx\x00y\tO\n")), ("a.tsv:2", "NUL")),
    Case("panx missing file", lambda w: w.evaluate(w.ner, str(w.root / "absent.tsv")), ("absent.tsv", "not found")),
    # ---- NER files (CoNLL columns)
    Case("conll one column", lambda w: w.evaluate(w.ner, w.file("a.conll", "Anna NNP B-PER\nvisited\n"), "--format", "conll"), ("a.conll:2", "1 column")),
    Case("conll bad tag", lambda w: w.evaluate(w.ner, w.file("a.conll", "Anna NNP PERSON\n"), "--format", "conll"), ("a.conll:1", "not an IOB2 tag")),
    Case("conll only docstart", lambda w: w.evaluate(w.ner, w.file("a.conll", "-DOCSTART- -X- O\n\n"), "--format", "conll"), ("a.conll", "empty file")),
    # ---- task files
    Case("task invalid TOML", lambda w: _task(w, 'name = "t\n'), ("task.toml", "not a valid UTF-8 TOML")),
    Case("task unknown key", lambda w: _task(w, TASK + "colour = 1\n"), ("task.toml", "unknown key 'colour'")),
    Case("task wrong type", lambda w: _task(w, TASK.replace('["O", "B-PER", "I-PER"]', '"O"')), ("task.toml", "key 'labels' must be list")),
    Case("task missing key", lambda w: _task(w, TASK.replace('metric = "seqeval"\n', "")), ("task.toml", "missing key 'metric'")),
    Case("task unknown type", lambda w: _task(w, TASK.replace("token-classification", "parsing")), ("task.toml", "key 'type' must be one of")),
    Case("task bad format", lambda w: _task(w, TASK + '[local]\nformat = "csv"\n'), ("task.toml", "'local.format' must be one of auto, panx, conll")),
    Case("task bad metric", lambda w: _task(w, TASK.replace('"seqeval"', '"bleu"')), ("task.toml", "key 'metric' must be one of seqeval, f1")),
    Case("task defaults table", lambda w: _task(w, TASK + "[defaults]\nmax_length = 64\n"), ("task.toml", "'defaults' is not supported", "--max-length")),
    Case("task unlabeled type", lambda w: _task(w, TASK + '[local]\nunlabeled = "x.txt"\n'), ("task.toml", "'local.unlabeled' must be bool")),
    Case("task word splitter", lambda w: _task(w, TASK + 'word_splitter = "regex"\n'), ("task.toml", "key 'word_splitter'", "unknown word splitter 'regex'")),
    Case("task label_values outside labels", lambda w: ["classify", "--task", w.file("c.toml", CLS_TASK.replace('"1" = "pos"', '"1" = "positive"')), "--preset", "smoke", "--data-dir", str(w.data)], ("c.toml", "'local.label_values.1' maps to 'positive'")),
    Case("task missing file", lambda w: w.ner_run("--task", str(w.root / "nope.toml")), ("nope.toml", "no file")),
    Case("task of the other command", lambda w: ["ner", "--task", "imdb", "--preset", "smoke", "--data-dir", str(w.data), "--output-dir", str(w.root / "o")], ("--task imdb", "use `classify`")),
    # ---- CSV / JSON-lines files: evaluate a classifier
    Case("csv missing column", lambda w: w.evaluate(w.cls, w.file("e.csv", "review,label\ngood,1\n")), ("e.csv:1", "missing column(s) text")),
    Case("csv label outside set", lambda w: w.evaluate(w.cls, w.file("e.csv", "text,label\ngood,1\nbad,7\n")), ("e.csv:3", "label '7' is outside the declared set")),
    Case("csv empty text", lambda w: w.evaluate(w.cls, w.file("e.csv", "text,label\ngood,1\n,0\n")), ("e.csv:3", "empty text")),
    Case("csv not UTF-8", lambda w: w.evaluate(w.cls, w.file("e.csv", b"text,label\ngood,1\nsch\xf6n,1\n")), ("e.csv:3", "not UTF-8")),
    Case("jsonl malformed", lambda w: w.evaluate(w.cls, w.file("e.jsonl", '{"text": "good", "label": 1}\n{"text": \n')), ("e.jsonl:2", "not valid JSON")),
    Case("jsonl array line", lambda w: w.evaluate(w.cls, w.file("e.jsonl", '["good", 1]\n')), ("e.jsonl:1", "a JSON list")),
    Case("jsonl missing key", lambda w: w.evaluate(w.cls, w.file("e.jsonl", '{"body": "good", "label": 1}\n')), ("e.jsonl:1", "missing key(s) text")),
    Case("classifier with a NER format", lambda w: w.evaluate(w.cls, w.file("e.csv", "text,label\ngood,1\n"), "--format", "panx"), ("--format", "csv or jsonl")),
    # ---- predict: stdin and --text
    Case("stdin not UTF-8", lambda w: (["predict", "--model", str(w.ner)], b"Anna visited Paris\n\xff\xfe\n"), ("stdin:2", "not UTF-8")),
    Case("stdin empty line for a classifier", lambda w: (["predict", "--model", str(w.cls)], b"good\n\nbad\n"), ("stdin line 2", "empty text")),
    Case("text argument not UTF-8", lambda w: ["predict", "--model", str(w.ner), "--text", "ok", "--text", "bad\udcff"], ("--text number 2", "not UTF-8")),
    Case("predict batch lines", lambda w: (["predict", "--model", str(w.ner), "--batch-lines", "0"], b"Anna\n"), ("--batch-lines",)),
    Case("predict batch size", lambda w: (["predict", "--model", str(w.ner), "--batch-size", "0"], b"Anna\n"), ("--batch-size", "positive")),
    # ---- options
    Case("unknown preset", lambda w: w.ner_run("--preset", "huge"), ("--preset", "huge")),
    Case("negative learning rate", lambda w: w.ner_run("--lr", "-1"), ("--lr",)),
    Case("tiny max length", lambda w: w.ner_run("--max-length", "4"), ("--max-length",)),
    Case("unknown language", lambda w: w.ner_run("--langs", "sw,xx"), ("'xx'", "language code")),
    Case("unknown stage", lambda w: w.ner_run("--stages", "representation,bogus"), ("--stages", "'bogus'")),
    Case("unknown student kind", lambda w: w.ner_run("--student", "cnn"), ("--student", "'cnn'", "bilstm")),
    Case("unknown scratch architecture", lambda w: w.ner_run("--teacher-architecture", "gpt"), ("--teacher-architecture", "'gpt'")),
    Case("unknown loss", lambda w: w.ner_run("--logits-loss", "l1"), ("--logits-loss", "'l1'")),
    Case("generated text without augment", lambda w: ["classify", "--preset", "smoke", "--augment", "none", "--transfer", "generated", "--data-dir", str(w.data), "--output-dir", str(w.root / "o")], ("--transfer", "--augment generate")),
    Case("negative threads", lambda w: w.ner_run("--threads", "-1"), ("--threads",)),
    Case("unknown option", lambda w: w.ner_run("--no-such-option", "3"), ("--no-such-option",)),
    Case("int8 with torch", lambda w: ["predict", "--model", str(w.ner), "--precision", "int8", "--text", "x"], ("--precision int8", "--runtime onnx")),
    Case("onnx without export", lambda w: ["predict", "--model", str(w.ner), "--runtime", "onnx", "--text", "x"], ("--runtime onnx", "xdistill export")),
    Case("evaluate max length", lambda w: w.evaluate(w.ner, w.file("a.tsv", PANX), "--max-length", "4"), ("--max-length",)),
    Case("export max examples", lambda w: ["export", "--model", str(w.ner), "--data-dir", str(w.data), "--max-examples", "0"], ("--max-examples",)),
    Case("benchmark batch sizes", lambda w: ["benchmark", "--students", str(w.ner), "--batch-sizes", "0,x"], ("--batch-sizes",)),
    Case("benchmark unknown reference", lambda w: ["benchmark", "--students", str(w.ner), "--reference", "gpt2=x"], ("--reference", "gpt2")),
    Case("data dir missing", lambda w: ["ner", "--preset", "smoke", "--data-dir", str(w.root / "nowhere"), "--output-dir", str(w.root / "o")], ("--data-dir", "nowhere")),
    Case("output dir is a file", lambda w: w.ner_run(out=w.file("taken", "")[len(str(w.root)) + 1:]), ("--output-dir", "cannot write")),
    # ---- model and data folders
    Case("model folder missing", lambda w: ["predict", "--model", str(w.root / "gone"), "--text", "x"], ("--model", "gone", "not a directory")),
    Case("model is a run folder", lambda w: ["predict", "--model", str(w.ner.parent), "--text", "x"], ("--model", "did you mean", "student")),
    Case("model folder without student", lambda w: ["predict", "--model", str(Path(w.file("junk/config.json", "{}")).parent), "--text", "x"], ("--model", "no student")),
    Case("student without weights", lambda w: (lambda d: (d / "model.safetensors").unlink() or ["predict", "--model", str(d), "--text", "x"])(tm.make_student_dir(w.root / "s2", w.tok)), ("model.safetensors is missing",)),
    Case("student of an unknown kind", lambda w: (lambda d: (d / "config.json").write_text(json.dumps({**json.loads((d / "config.json").read_text()), "kind": "cnn"})) and ["predict", "--model", str(d), "--text", "x"])(tm.make_student_dir(w.root / "s3", w.tok)), ("config.json", "unknown student kind 'cnn'")),
    Case("teacher path missing", lambda w: w.ner_run("--teacher", "./no/such/teacher"), ("--teacher ./no/such/teacher", "no such folder")),
    Case("teacher folder without a checkpoint", lambda w: w.ner_run("--teacher", str(Path(w.file("t/vocab.txt", "x")).parent)), ("--teacher", "no config.json")),
    Case("tokenizer folder without tokenizer files", lambda w: w.ner_run("--tokenizer", str(Path(w.file("tk/readme", "x")).parent)), ("--tokenizer", "no tokenizer files")),
    Case("tokenizer larger than the embeddings", lambda w: w.ner_run("--teacher", _tiny_teacher(w, 20)), ("--teacher", f"{len(tm.VOCAB):,} tokens", "20 rows")),
    Case("missing dev file", lambda w: (w.data / "wikiann" / "dev-sw.tsv").unlink() or w.ner_run(), ("--langs", "dev-sw.tsv is missing")),
    Case("MLM budget zero", lambda w: w.ner_run("--teacher-mlm", "0"), ("--teacher-mlm", "above zero")),
    Case("MLM budget negative minutes", lambda w: w.ner_run("--teacher-mlm=-5min"), ("--teacher-mlm", "above zero")),
    Case("MLM budget not a number", lambda w: w.ner_run("--teacher-mlm", "lots"), ("--teacher-mlm", "'lots'")),
    Case("MLM text file missing", lambda w: w.ner_run("--teacher-mlm", "5", "--mlm-text", "transfer,no-such.txt"), ("--mlm-text", "no-such.txt", "no such file")),
    Case("MLM text not UTF-8", lambda w: w.ner_run("--teacher-mlm", "5", "--mlm-text", w.file("m.txt", b"Anna visited\nZ\xfcrich\n")), ("m.txt:2", "not UTF-8")),
    Case("MLM text empty", lambda w: w.ner_run("--teacher-mlm", "5", "--mlm-text", w.file("m.txt", "\n  \n")), ("m.txt", "no text")),
    Case("MLM teacher already fine-tuned", lambda w: w.ner_run("--teacher-mlm", "5", "--teacher", _tiny_teacher(w, len(tm.VOCAB))), ("--teacher-mlm", "already fine-tuned")),
    Case("MLM teacher without an MLM architecture", lambda w: w.ner_run("--teacher-mlm", "5", "--teacher", _tiny_gpt2(w)), ("--teacher-mlm", "AutoModelForMaskedLM")),
    Case("layer map syntax", lambda w: w.ner_run("--student", "transformer", "--layer-map", "1-2"), ("--layer-map", "student:teacher pairs", "'1-2'")),
    Case("layer map naming a missing layer", lambda w: w.ner_run("--student", "transformer", "--student-shape", "l2-h32-a2", "--layer-map", "0:0,2:5"), ("--layer-map", "2:5", "does not exist", "teacher layers 0..2")),
    Case("attention maps with other head counts", lambda w: w.ner_run("--student", "transformer", "--student-shape", "l2-h32-a4", "--attention-loss", "kl"), ("--attention-loss kl", "4 heads", "relation")),
    Case("heads not dividing the width", lambda w: w.ner_run("--student", "transformer", "--student-hidden", "30", "--student-heads", "4"), ("--student-heads 4", "--student-hidden 30")),
    Case("student shape not understood", lambda w: w.ner_run("--student", "transformer", "--student-shape", "big"), ("--student-shape", "l<layers>-h<hidden>", "'big'")),
    Case("teacher layers into another width", lambda w: w.ner_run("--student", "transformer", "--student-init", "teacher-layers"), ("--student-init teacher-layers", "--student-hidden 256 vs the teacher's 64")),
    Case("layer map beyond a local teacher's layers", lambda w: w.ner_run("--teacher", _tiny_teacher(w, len(tm.VOCAB)), "--student", "transformer", "--student-shape", "l2-h32-a2", "--layer-map", "0:0,2:9"), ("--layer-map", "2:9", "teacher layers 0..")),
    Case("resume with other settings", lambda w: _settings_recorded(w, lr=0.5) or w.ner_run("--resume"), ("--resume", "--lr: 0.5 -> 0.003")),
]


@pytest.fixture
def world(tmp_path, tok):
    return World(tmp_path, tok)


def test_the_table_has_fifty_cases_or_more():
    assert len(CASES) >= 50 and len({c.id for c in CASES}) == len(CASES)


def _run(argv: list[str], stdin: bytes | None, monkeypatch) -> int:
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))
    return main(argv)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_a_clear_error(case, world, capsys, monkeypatch):
    made = case.make(world)
    argv, stdin = made if isinstance(made, tuple) else (made, None)
    with tm.single_thread():
        rc = _run(argv, stdin, monkeypatch)
    out, err = capsys.readouterr()
    assert rc == 2, f"exit status {rc}; stderr: {err[-1500:]}"
    assert "Traceback" not in err
    message = err[err.rindex("error: "):] if "error: " in err else err
    assert message.startswith("error: "), err[-1500:]
    for expected in case.expect:
        assert expected in message, f"{expected!r} not in {message!r}"


def test_a_folder_in_use_names_the_other_run(world, capsys):
    with _locked(world):
        assert main(world.ner_run()) == 2
    err = capsys.readouterr().err
    assert "in use by process" in err and "the other run" in err and "Traceback" not in err
    assert not (world.root / "out" / "run.log").exists()  # nothing written into the other run's log


@pytest.mark.parametrize("case_id", ["layer map naming a missing layer", "attention maps with other head counts",
                                     "teacher layers into another width",
                                     "layer map beyond a local teacher's layers"])
def test_options_that_need_the_teacher_shape_fail_before_it_trains(case_id, world, capsys, monkeypatch):
    """Checked against the teacher's planned configuration, not after minutes of fine-tuning."""
    (case,) = [c for c in CASES if c.id == case_id]
    with tm.single_thread():
        assert _run(case.make(world), None, monkeypatch) == 2
    assert not (world.root / "out" / "teacher").exists()
    assert not any((world.root / "out" / "checkpoints").glob("teacher*/*"))
    assert "error: " in capsys.readouterr().err


def test_no_case_passes_silently_in_a_subprocess(world):
    """The module entry point, as a user runs it: exit status 2, one error line, no traceback."""
    import subprocess

    p = subprocess.run([sys.executable, "-m", "xdistill", "predict", "--model", str(world.ner)],
                       input=b"fine\n\xff\n", capture_output=True)
    assert p.returncode == 2 and b"Traceback" not in p.stderr
    assert p.stderr.decode().strip().splitlines()[-1].startswith("error: stdin:2: not UTF-8")
