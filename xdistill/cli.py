"""Command line: ``python -m xdistill {ner,evaluate,predict} ...``.

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


def cmd_evaluate(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m xdistill evaluate", description=COMMANDS["evaluate"])
    p.add_argument("--model", required=True, help="saved student folder (OUTPUT/student) or teacher folder")
    p.add_argument("--data", required=True, help="labeled file: NER: PAN-X .tsv (token<TAB>tag) or CoNLL columns; "
                                                 "classification: CSV or JSON lines with the task's text and label columns")
    p.add_argument("--format", default="auto", choices=["auto", "panx", "conll", "csv", "jsonl"])
    p.add_argument("--max-length", type=int, default=None)
    a = p.parse_args(argv)
    _check_max_length(a.max_length)
    _setup_logging()
    from .inference import load_model

    result = load_model(a.model, a.max_length).evaluate_file(a.data, a.format)
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


def cmd_predict(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m xdistill predict", description=COMMANDS["predict"])
    p.add_argument("--model", required=True, help="saved student folder (OUTPUT/student) or teacher folder")
    p.add_argument("--text", action="append", help="a text to tag or classify (repeatable); default: lines of stdin")
    p.add_argument("--max-length", type=int, default=None)
    p.add_argument("--batch-lines", type=int, default=256, help="lines tagged per batch when reading stdin")
    a = p.parse_args(argv)
    _check_max_length(a.max_length)
    _setup_logging()
    from .inference import load_model

    model = load_model(a.model, a.max_length)

    def emit(lines):
        for r in model.predict(lines):
            print(json.dumps(r, ensure_ascii=False))

    if a.text:
        emit(a.text)
        return 0
    buf = []
    for line in sys.stdin:
        buf.append(line.rstrip("\n"))
        if len(buf) >= a.batch_lines:
            emit(buf)
            buf = []
    if buf:
        emit(buf)
    return 0


HANDLERS = {"ner": cmd_ner, "classify": cmd_classify, "evaluate": cmd_evaluate, "predict": cmd_predict}


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
