"""Command line: ``python -m xdistill {ner,classify,evaluate,predict,export,benchmark} ...``.

``ner`` and ``classify`` are built from the config dataclasses with
``transformers.HfArgumentParser`` (the task adapter of the command adds its own
argument classes); ``--preset`` sets the parser defaults, so any preset value
can be overridden. Errors in input or options
(:class:`~xdistill.errors.XDistillError`) are printed as one line, without a
traceback, with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from pathlib import Path

import torch
from transformers import HfArgumentParser

from .adapters import COMMANDS as DISTILL_COMMANDS
from .adapters import adapter_for_saved, load_task, make_adapter
from .config import COMMON_ARGUMENTS, PRESETS, RunSettings
from .config.zero_shot import LABELED_DATA_OPTIONS
from .errors import ConfigError, XDistillError, exit_status
from . import parallel
from .pipeline import RunFolder, check_launch, check_settings, run, run_zero_shot
from .reporting import write_model_card
from .serving import benchmark
from .serving.export import evaluation_files, export_student
from .serving.inference import DEFAULT_BATCH_SIZE, load_model
from .serving.stream import chunked_lines, predict_stream
from .utils import peak_rss_mib
from .students import is_student_dir, run_folder_hint, saved_settings

#: stdin lines per chunk of ``predict`` (see README "Serving throughput")
DEFAULT_CHUNK_LINES = 4096

COMMANDS = {
    "ner": "distil a NER student on WikiANN (XtremeDistil multi-stage)",
    "classify": "distil a text-classification student (IMDB by default; XtremeDistil + generation-distillation)",
    "evaluate": "score a saved student or teacher on a labeled file (JSON)",
    "predict": "tag (NER) or classify raw text, one text per line (JSON lines)",
    "export": "export a saved student to ONNX (and int8), with a parity check on real data",
    "benchmark": "batch-inference latency of students, their teacher and mBERT-base (torch, ONNX fp32/int8)",
}


def _setup_logging(log_file: Path | None = None, stderr_level: int = logging.INFO, prefix: str = "") -> None:
    fmt = logging.Formatter(f"%(asctime)s {prefix}%(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for h in list(root.handlers):
        root.removeHandler(h)
    sh = logging.StreamHandler(sys.stderr)
    sh.setFormatter(fmt)
    sh.setLevel(stderr_level)
    root.addHandler(sh)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(log_file, encoding="utf-8")
        fh.setFormatter(fmt)
        root.addHandler(fh)
    for noisy in ("datasets", "transformers", "urllib3", "filelock", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _command(name: str, argv: list[str]) -> str:
    return " ".join(["python -m xdistill", name, *map(shlex.quote, argv)])


def parse_distill_args(argv: list[str], command: str) -> RunSettings:
    """Parse ``ner``/``classify`` options into :class:`~xdistill.config.RunSettings` (preset defaults first).

    Raises:
        ConfigError: an unknown preset or option, or a value its dataclass rejects.
    """
    adapter_cls = DISTILL_COMMANDS[command]
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", default="cpu")
    known, _ = pre.parse_known_args(argv)
    if known.preset not in PRESETS:
        raise ConfigError(f"--preset: expected one of {', '.join(PRESETS)}, got {known.preset!r}")
    parser = HfArgumentParser((*adapter_cls.arguments, *COMMON_ARGUMENTS), prog=f"python -m xdistill {command}",
                              description=COMMANDS[command])
    parser.set_defaults(**PRESETS[known.preset][command], preset=known.preset)
    try:
        settings = RunSettings.from_parsed(parser.parse_args_into_dataclasses(args=argv))
    except ValueError as e:  # raised by HfArgumentParser for leftovers, or by __post_init__
        if isinstance(e, XDistillError):
            raise
        raise ConfigError(str(e)) from e
    given = [o for o in LABELED_DATA_OPTIONS if any(a == o or a.startswith(o + "=") for a in argv)]
    if settings.zero_shot.enabled and given:
        raise ConfigError(f"--zero-shot: {', '.join(given)} gives the student task data; zero-shot distillation uses "
                          "none (leave it out)")
    return settings


def _distill(command: str, argv: list[str]) -> int:
    """``ner`` / ``classify``: parse options, check the task type, run the pipeline, print a summary."""
    settings = parse_distill_args(argv, command)
    check_launch(settings, check_settings(settings))
    out = Path(settings.run.output_dir)

    def check_folder():
        RunFolder.check_writable(out)
        RunFolder.check_free(out)  # before run.log is opened: a busy folder's log is not ours

    parallel.main_does(check_folder, f"checked --output-dir {out}")
    if parallel.is_main():
        _setup_logging(out / "run.log")
    else:  # the other processes log to their own file; only their warnings and errors reach stderr
        _setup_logging(out / "logs" / f"rank-{parallel.rank()}.log", logging.WARNING, f"[rank {parallel.rank()}] ")
    if settings.run.threads:
        torch.set_num_threads(settings.run.threads)
    spec = load_task(settings.run.task)
    expected = DISTILL_COMMANDS[command]
    if spec.type != expected.type:
        other = next((c for c, cls in DISTILL_COMMANDS.items() if cls.type == spec.type), None)
        raise ConfigError(f"--task {settings.run.task}: a {spec.type} task; `{command}` needs a {expected.type} task"
                          + (f" (use `{other}`)" if other else ""))
    runner = run_zero_shot if settings.zero_shot.enabled else run
    report = runner(make_adapter(spec), settings, command=_command(command, argv))
    if not parallel.is_main():
        return 0
    print(json.dumps({"output_dir": settings.run.output_dir, "mean": report["mean"],
                      "minutes": report["timing"]["total_seconds"] / 60,
                      "peak_rss_mib": report["timing"]["peak_rss_mib"]}, indent=2))
    return 0


def cmd_ner(argv: list[str]) -> int:
    """``python -m xdistill ner``: distil a NER student (exit status 0)."""
    return _distill("ner", argv)


def cmd_classify(argv: list[str]) -> int:
    """``python -m xdistill classify``: distil a text-classification student (exit status 0)."""
    return _distill("classify", argv)


def _check_max_length(value: int | None) -> None:
    if value is not None and value < 8:
        raise ConfigError(f"--max-length: expected at least 8 tokens, got {value}")


def _add_runtime_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runtime", default="torch", choices=["torch", "onnx"],
                   help="PyTorch, or ONNX Runtime on DIR/onnx/ (after `xdistill export`; students only)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "int8"], help="ONNX model: model.onnx or model.int8.onnx")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads of torch and ONNX Runtime")


def _load_for_inference(a):
    if a.threads is not None:
        if a.threads < 1:
            raise ConfigError(f"--threads: expected a positive integer, got {a.threads}")
        torch.set_num_threads(a.threads)
    return load_model(a.model, a.max_length, runtime=a.runtime, precision=a.precision, threads=a.threads,
                      batch_size=getattr(a, "batch_size", DEFAULT_BATCH_SIZE))


def cmd_evaluate(argv: list[str]) -> int:
    """``python -m xdistill evaluate``: score a student or teacher on a labeled file; prints JSON (metrics in %)."""
    p = argparse.ArgumentParser(prog="python -m xdistill evaluate", description=COMMANDS["evaluate"])
    p.add_argument("--model", required=True, help="saved student folder (OUTPUT/student) or teacher folder")
    p.add_argument("--data", required=True, help="labeled file: NER: PAN-X .tsv (token<TAB>tag) or CoNLL columns; "
                                                 "classification: CSV or JSON lines with the task's text and label columns")
    p.add_argument("--format", default="auto", choices=["auto", "panx", "conll", "csv", "jsonl"])
    p.add_argument("--max-length", type=int, default=None)
    _add_runtime_options(p)
    a = p.parse_args(argv)
    _check_max_length(a.max_length)
    _setup_logging()
    result = _load_for_inference(a).evaluate_file(a.data, a.format)
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


def cmd_predict(argv: list[str]) -> int:
    """``python -m xdistill predict``: one JSON line per input text (``--text`` or stdin lines),
    streamed a chunk of lines at a time (:mod:`xdistill.serving.stream`); words/s and the peak RSS (MiB) to stderr at the end."""
    p = argparse.ArgumentParser(prog="python -m xdistill predict", description=COMMANDS["predict"])
    p.add_argument("--model", required=True, help="saved student folder (OUTPUT/student) or teacher folder")
    p.add_argument("--text", action="append", help="a text to tag or classify (repeatable); default: lines of stdin")
    p.add_argument("--max-length", type=int, default=None)
    p.add_argument("--batch-lines", type=int, default=DEFAULT_CHUNK_LINES,
                   help="stdin lines read, batched by length and written together (memory is bounded by one chunk)")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="rows per forward pass")
    _add_runtime_options(p)
    a = p.parse_args(argv)
    _check_max_length(a.max_length)
    if a.batch_lines < 1:
        raise ConfigError(f"--batch-lines: expected a positive integer, got {a.batch_lines}")
    _setup_logging()
    model = _load_for_inference(a)
    if a.text:
        chunks, source = [(1, [_text_argument(t, i) for i, t in enumerate(a.text, 1)])], "--text"
    else:  # bytes; a text stream when stdin was replaced
        chunks, source = chunked_lines(getattr(sys.stdin, "buffer", sys.stdin), a.batch_lines), "stdin"
    stats = predict_stream(model, chunks, sys.stdout, source)
    logging.getLogger("xdistill.predict").info(
        "%d lines, %d words in %.2f s: %.0f words/s (%s-%s, batch size %d, %d threads); peak RSS %.1f MiB",
        stats.lines, stats.words, stats.seconds, stats.words_per_second, model.runtime, model.precision,
        model.batch_size, a.threads or torch.get_num_threads(), peak_rss_mib())
    return 0


def _text_argument(text: str, i: int) -> str:
    """A ``--text`` value. Python keeps bytes of the command line that are not UTF-8 as lone surrogates.

    Raises:
        ConfigError: such a value (names the ``--text`` occurrence).
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"--text number {i}: not UTF-8 text; expected UTF-8") from None
    return text


def cmd_export(argv: list[str]) -> int:
    """``python -m xdistill export``: ONNX (and int8) with the parity check; prints its summary as JSON."""
    p = argparse.ArgumentParser(prog="python -m xdistill export", description=COMMANDS["export"])
    p.add_argument("--model", required=True, help="saved student folder (OUTPUT/student)")
    p.add_argument("--format", default="onnx", choices=["onnx"], help="export format")
    p.add_argument("--quantize", default=None, choices=["int8"], help="also write onnx/model.int8.onnx (dynamic int8)")
    p.add_argument("--data-dir", default=os.environ.get("XDISTILL_DATA_DIR"),
                   help="data folder holding the task's evaluation files (default: $XDISTILL_DATA_DIR)")
    p.add_argument("--data", action="append", default=None,
                   help="labeled evaluation file for the parity check (repeatable; instead of --data-dir)")
    p.add_argument("--max-examples", type=int, default=2000,
                   help="a seeded sample of N examples of each evaluation file is used for parity (-1: all)")
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args(argv)
    _setup_logging()
    if a.max_examples == 0 or a.max_examples < -1:
        raise ConfigError(f"--max-examples: expected a positive number or -1 (all), got {a.max_examples}")
    if not is_student_dir(a.model):
        raise ConfigError(f"--model {a.model}: no xdistill student here (expected config.json with \"xdistill_student\": true)"
                          + run_folder_hint(a.model))
    files = a.data
    if not files:
        if not a.data_dir:
            raise ConfigError("export checks parity on real data: give --data-dir (or $XDISTILL_DATA_DIR) or --data FILE")
        cfg = saved_settings(a.model)
        spec = adapter_for_saved(cfg).spec
        files = evaluation_files(spec, cfg.get("groups") or [spec.name], a.data_dir)
    parity = export_student(a.model, files, quantize=a.quantize, max_examples=None if a.max_examples == -1 else a.max_examples,
                            threads=a.threads)
    write_model_card(a.model)
    k = parity["metric"]
    print(json.dumps({"onnx": parity["fp32"]["file"], "int8": (parity["int8"] or {}).get("file"),
                      "max_abs_logit_diff_fp32": parity["fp32"]["max_abs_logit_diff"],
                      k: {r: v[k] for r, v in parity["scores"].items()},
                      "int8_metric_diff": (parity["int8"] or {}).get("metric_diff"),
                      "examples": parity["data"]["examples"], "seconds": parity["seconds"]}, indent=2))
    return 0


def cmd_benchmark(argv: list[str]) -> int:
    """``python -m xdistill benchmark``: batch latency (ms) of students, teachers and reference models."""
    _setup_logging()
    return benchmark.main(argv)


HANDLERS = {"ner": cmd_ner, "classify": cmd_classify, "evaluate": cmd_evaluate, "predict": cmd_predict,
            "export": cmd_export, "benchmark": cmd_benchmark}


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in HANDLERS:
        print("usage: python -m xdistill {" + ",".join(HANDLERS) + "} [options]\n")
        for k, v in COMMANDS.items():
            print(f"  {k:10s} {v}")
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nerror: unknown command {argv[0]!r}", file=sys.stderr)
            return 2
        return 0
    try:
        return exit_status(HANDLERS[argv[0]], argv[1:])
    finally:
        parallel.shutdown()
