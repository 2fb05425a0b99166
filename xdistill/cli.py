"""Command line: ``python -m xdistill {ner,classify,evaluate,predict,export,benchmark} ...``.

``ner`` is built from the config dataclasses with ``transformers.HfArgumentParser``;
``--preset`` sets the parser defaults, so any preset value can be overridden.
Errors in input or options (:class:`~xdistill.errors.XDistillError`) are
printed as one line, without a traceback, with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .errors import XDistillError

COMMANDS = {
    "ner": "distil a NER student on WikiANN (XtremeDistil multi-stage)",
    "classify": "distil a text-classification student (IMDB by default; XtremeDistil + generation-distillation)",
    "evaluate": "score a saved student or teacher on a labeled file (JSON)",
    "predict": "tag (NER) or classify raw text, one text per line (JSON lines)",
    "export": "export a saved student to ONNX (and int8), with a parity check on real data",
    "benchmark": "batch-inference latency of students, their teacher and mBERT-base (torch, ONNX fp32/int8)",
}


def _setup_logging(log_file: Path | None = None) -> None:
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for h in list(root.handlers):
        root.removeHandler(h)
    sh = logging.StreamHandler(sys.stderr)
    sh.setFormatter(fmt)
    root.addHandler(sh)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(log_file, encoding="utf-8")
        fh.setFormatter(fmt)
        root.addHandler(fh)
    for noisy in ("datasets", "transformers", "urllib3", "filelock", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _command(name: str, argv: list[str]) -> str:
    import shlex

    return " ".join(["python -m xdistill", name, *map(shlex.quote, argv)])


def parse_distill_args(argv: list[str], task: str):
    """Parse ``ner``/``classify`` options into the config dataclasses (preset defaults first)."""
    from transformers import HfArgumentParser

    from .config import ALL_ARGUMENT_CLASSES, CLASSIFY_ARGUMENT_CLASSES, CLASSIFY_PRESETS, PRESETS
    from .errors import ConfigError

    classes, presets = {"ner": (ALL_ARGUMENT_CLASSES, PRESETS),
                        "classify": (CLASSIFY_ARGUMENT_CLASSES, CLASSIFY_PRESETS)}[task]
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", default="cpu")
    known, _ = pre.parse_known_args(argv)
    if known.preset not in presets:
        raise ConfigError(f"--preset: expected one of {', '.join(presets)}, got {known.preset!r}")
    parser = HfArgumentParser(classes, prog=f"python -m xdistill {task}", description=COMMANDS[task])
    parser.set_defaults(**presets[known.preset], preset=known.preset)
    try:
        return parser.parse_args_into_dataclasses(args=argv)
    except ValueError as e:  # raised by HfArgumentParser for leftovers, or by __post_init__
        if isinstance(e, XDistillError):
            raise
        raise ConfigError(str(e)) from e


#: the task type each distillation command runs
DISTILL_COMMANDS = {"ner": "token-classification", "classify": "sequence-classification"}


def _distill(command: str, argv: list[str]) -> int:
    """``ner`` / ``classify``: parse options, check the task type, run the pipeline, print a summary."""
    from .errors import ConfigError
    from .taskspec import load_task

    parsed = parse_distill_args(argv, command)
    by_type = {type(x).__name__: x for x in parsed}
    rargs = by_type["RunArguments"]
    _setup_logging(Path(rargs.output_dir) / "run.log")
    import torch

    if rargs.threads:
        torch.set_num_threads(rargs.threads)
    from .pipeline import run

    spec = load_task(rargs.task)
    if spec.type != DISTILL_COMMANDS[command]:
        other = next(k for k, v in DISTILL_COMMANDS.items() if v == spec.type) if spec.type in DISTILL_COMMANDS.values() else None
        raise ConfigError(f"--task {rargs.task}: a {spec.type} task; `{command}` needs a {DISTILL_COMMANDS[command]} task"
                          + (f" (use `{other}`)" if other else ""))
    dargs = by_type.get("DataArguments") or by_type["TextDataArguments"]
    report = run(spec, dargs, by_type["TeacherArguments"], by_type["StudentArguments"], by_type["DistillArguments"],
                 rargs, by_type.get("GenerationArguments"), command=_command(command, argv))
    print(json.dumps({"output_dir": rargs.output_dir, "mean": report["mean"], "minutes": report["timing"]["total_seconds"] / 60,
                      "peak_rss_mib": report["timing"]["peak_rss_mib"]}, indent=2))
    return 0


def cmd_ner(argv: list[str]) -> int:
    return _distill("ner", argv)


def cmd_classify(argv: list[str]) -> int:
    return _distill("classify", argv)


def _check_max_length(value: int | None) -> None:
    from .errors import ConfigError

    if value is not None and value < 8:
        raise ConfigError(f"--max-length: expected at least 8 tokens, got {value}")


def _add_runtime_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runtime", default="torch", choices=["torch", "onnx"],
                   help="PyTorch, or ONNX Runtime on DIR/onnx/ (after `xdistill export`; students only)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "int8"], help="ONNX model: model.onnx or model.int8.onnx")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads of torch and ONNX Runtime")


def _load_for_inference(a):
    import torch

    from .inference import load_model

    if a.threads is not None:
        if a.threads < 1:
            from .errors import ConfigError
            raise ConfigError(f"--threads: expected a positive integer, got {a.threads}")
        torch.set_num_threads(a.threads)
    return load_model(a.model, a.max_length, runtime=a.runtime, precision=a.precision, threads=a.threads)


def cmd_evaluate(argv: list[str]) -> int:
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
    p = argparse.ArgumentParser(prog="python -m xdistill predict", description=COMMANDS["predict"])
    p.add_argument("--model", required=True, help="saved student folder (OUTPUT/student) or teacher folder")
    p.add_argument("--text", action="append", help="a text to tag or classify (repeatable); default: lines of stdin")
    p.add_argument("--max-length", type=int, default=None)
    p.add_argument("--batch-lines", type=int, default=256, help="lines tagged per batch when reading stdin")
    _add_runtime_options(p)
    a = p.parse_args(argv)
    _check_max_length(a.max_length)
    _setup_logging()
    model = _load_for_inference(a)

    def emit(lines, first_line: int, source: str):
        from .errors import ConfigError, EmptyTextError

        try:
            results = model.predict(lines)
        except EmptyTextError as e:  # name the input line (stdin) or the --text occurrence
            where = ", ".join(str(first_line + i) for i in e.indices[:10])
            raise ConfigError(f"{source} {'line' if source == 'stdin' else 'number'} {where}: empty text; "
                              "a classifier needs text to classify") from e
        for r in results:
            print(json.dumps(r, ensure_ascii=False))

    if a.text:
        emit(a.text, 1, "--text")
        return 0
    buf, start = [], 1
    for n, line in enumerate(sys.stdin, 1):
        buf.append(line.rstrip("\n"))
        if len(buf) >= a.batch_lines:
            emit(buf, start, "stdin")
            buf, start = [], n + 1
    if buf:
        emit(buf, start, "stdin")
    return 0


def cmd_export(argv: list[str]) -> int:
    import os

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
    from .errors import ConfigError
    from .model_card import write_model_card
    from .onnx_export import evaluation_files, export_student
    from .students.base import is_student_dir

    if a.max_examples == 0 or a.max_examples < -1:
        raise ConfigError(f"--max-examples: expected a positive number or -1 (all), got {a.max_examples}")
    if not is_student_dir(a.model):
        from .students.base import run_folder_hint
        raise ConfigError(f"--model {a.model}: no xdistill student here (expected config.json with \"xdistill_student\": true)"
                          + run_folder_hint(a.model))
    files = a.data
    if not files:
        if not a.data_dir:
            raise ConfigError("export checks parity on real data: give --data-dir (or $XDISTILL_DATA_DIR) or --data FILE")
        from .inference import _spec_for

        cfg = json.loads((Path(a.model) / "config.json").read_text(encoding="utf-8"))
        spec = _spec_for(cfg, tuple(cfg["labels"]), cfg.get("task_type", "token-classification"))
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
    _setup_logging()
    from .benchmark import main as benchmark_main

    return benchmark_main(argv)


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
        return HANDLERS[argv[0]](argv[1:])
    except XDistillError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # missing file, a folder given as a file, no permission
        print(f"error: {e}", file=sys.stderr)
        return 2
