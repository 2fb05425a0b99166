#!/usr/bin/env python
"""Serving throughput end to end: words per second from raw text lines to JSON lines, beside the
model alone, per runtime, precision and batch size; single-sentence latency; memory while streaming.

Texts are real raw sentences (``unlabeled/leipzig/{lang}.txt``) in several scripts (default: German
and English in Latin, Russian in Cyrillic, Arabic, Hindi in Devanagari, Chinese and Japanese).
For each runtime (``torch-fp32``, ``onnx-fp32``, ``onnx-int8``) and batch size:

* **end to end**: :func:`xdistill.serving.stream.predict_stream` over all texts in chunks of
  ``--chunk-lines`` (as ``python -m xdistill predict`` runs): word splitting, subword encoding,
  length-bucketed batches, the forward pass, first-subword decoding, entity spans and JSON;
* **model only**: the forward passes alone over the same rows in the same batches (inputs padded
  beforehand);
* **single sentences**: ``predict([text])`` plus JSON for each sentence of at most 40 words, p50/p99 ms,
  beside the forward pass alone on the same sentence's row (the floor of that latency).

Every figure is the median of ``--repeats`` timed passes after a warm-up pass. ``--profile`` times
the stages of ``predict`` (word splitting, encoding, forward with batching, decoding with spans,
JSON) at one runtime and batch size; it uses only ``load_model`` and the adapter's ``encode``/
``decode``, so it runs on earlier versions of xdistill too (``PYTHONPATH=OLD_TREE``).
``--stream-lines 10000,1000000`` runs ``python -m xdistill predict`` on that many lines (the texts
cycled) and reports each run's peak RSS (MiB, the child's own ``VmHWM`` as its log states it) and words/s.

Writes ``OUTPUT/serving.json`` and ``serving.md``. Run it on a quiet machine.

Usage: python scripts/benchmark_serving.py --student runs/ner-cpu/student --data-dir ../shared/data
       [--langs de,en,ru,ar,hi,zh,ja] [--runtimes torch-fp32,onnx-fp32,onnx-int8] [--batch-sizes 1,32,64,128,256]
       [--threads 2] [--repeats 3] [--profile onnx-int8:64] [--profile-only] [--stream-lines 10000,1000000]
       [--output-dir runs/serving]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import xdistill.serving.inference as inference  # noqa: E402
from xdistill import load_model  # noqa: E402
from xdistill.data.batching import bucket_batches  # noqa: E402
from xdistill.data.languages import LanguageRegistry  # noqa: E402
from xdistill.errors import ConfigError, XDistillError  # noqa: E402
from xdistill.serving.benchmark.results import machine_info  # noqa: E402
from xdistill.serving.benchmark.timing import latency_stats, time_calls  # noqa: E402
from xdistill.utils import atomic_write_json, atomic_write_text  # noqa: E402

logger = logging.getLogger("benchmark_serving")
RUNTIMES = {"torch-fp32": ("torch", "fp32"), "onnx-fp32": ("onnx", "fp32"), "onnx-int8": ("onnx", "int8")}
GOALS = {"end_to_end_share_of_model_only": 0.60, "words_per_second": 200_000, "p99_ms_up_to_40_words": 2.0,
         "stream_rss_ratio": 1.2}


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/benchmark_serving.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--student", required=True, help="saved student folder (exported to ONNX for the onnx runtimes)")
    p.add_argument("--data-dir", default=os.environ.get("XDISTILL_DATA_DIR"), help="the shared data folder")
    p.add_argument("--langs", default="de,en,ru,ar,hi,zh,ja", help="leipzig files to read, comma-separated")
    p.add_argument("--runtimes", default=",".join(RUNTIMES))
    p.add_argument("--batch-sizes", default="1,32,64,128,256")
    p.add_argument("--chunk-lines", type=int, default=4096)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--latency-sentences", type=int, default=1000, help="sentences of at most 40 words timed alone")
    p.add_argument("--profile", default="onnx-int8:64", help="RUNTIME:BATCH whose stages are timed ('' for none)")
    p.add_argument("--profile-only", action="store_true", help="only the stage profile (runs on older xdistill too)")
    p.add_argument("--stream-lines", default="", help="line counts for the streaming memory runs, e.g. 10000,1000000")
    p.add_argument("--output-dir", default="runs/serving")
    a = p.parse_args(argv)
    if not a.data_dir:
        raise ConfigError("--data-dir: give the shared data folder (or set XDISTILL_DATA_DIR)")
    for r in a.runtimes.split(","):
        if r not in RUNTIMES:
            raise ConfigError(f"--runtimes: unknown runtime {r!r}; expected some of {', '.join(RUNTIMES)}")
    try:
        a.batch_sizes = [int(b) for b in a.batch_sizes.split(",")]
        a.stream_lines = [int(n) for n in a.stream_lines.split(",") if n]
    except ValueError:
        raise ConfigError("--batch-sizes, --stream-lines: expected comma-separated integers") from None
    if min(a.batch_sizes) < 1 or a.repeats < 1 or a.threads < 1 or a.chunk_lines < 1:
        raise ConfigError("--batch-sizes, --repeats, --threads, --chunk-lines: expected positive integers")
    return a


def read_texts(data_dir: str, langs: list[str]) -> tuple[list[str], dict]:
    """Raw sentences of each language's leipzig file, and per language its script and line count.

    Raises:
        ConfigError: a missing file.
    """
    registry = LanguageRegistry.load()
    texts, info = [], {}
    for lang in langs:
        path = Path(data_dir) / "unlabeled" / "leipzig" / f"{lang}.txt"
        if not path.is_file():
            raise ConfigError(f"--langs {lang}: {path} does not exist")
        lines = [x.rstrip("\n") for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
        texts += lines
        info[lang] = {"script": registry.get(lang).script if lang in registry else None, "lines": len(lines)}
    return texts, info


def open_model(a, runtime: str, batch_size: int | None = None):
    engine, precision = RUNTIMES[runtime]
    kw = {} if batch_size is None else {"batch_size": batch_size}
    return load_model(a.student, runtime=engine, precision=precision, threads=a.threads, **kw)


def forward_fn(model):
    """``(ids, mask) -> logits`` of the bare model: ONNX Runtime's session, or the student's forward."""
    if model.runtime == "onnx":
        session = model.model.session
        return lambda ids, mask: session.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]

    def run(ids, mask):
        with torch.inference_mode():
            return model.model.inference_logits(torch.from_numpy(ids), torch.from_numpy(mask))
    return run


def median_seconds(call, repeats: int) -> float:
    return float(np.median(time_calls(call, 1, repeats))) / 1000.0


def throughput(a, runtime: str, b: int, texts: list[str]) -> dict:
    """End-to-end and model-only words/s at batch size ``b`` (medians of ``--repeats`` passes)."""
    from xdistill.serving.stream import predict_stream  # the streaming path (not in --profile-only's older trees)

    model = open_model(a, runtime, b)
    chunks = [(i + 1, texts[i:i + a.chunk_lines]) for i in range(0, len(texts), a.chunk_lines)]
    words = predict_stream(model, chunks, io.StringIO()).words
    e2e = median_seconds(lambda: predict_stream(model, chunks, io.StringIO()), a.repeats)
    batches = []
    for _, lines in chunks:
        spans = model.adapter.splitter.spans(lines)
        enc = model.adapter.encode({"tokens": [[w for w, _, _ in s] for s in spans], "tags": [[] for _ in spans]},
                                   model.tokenizer, model.max_length)
        for rows in bucket_batches(enc.lengths, batch_size=b):
            ids, mask = enc.input_ids.padded(rows, model.tokenizer.pad_token_id)
            batches.append((ids, mask.astype(np.int64)))
    fwd = forward_fn(model)
    only = median_seconds(lambda: [fwd(i, m) for i, m in batches], a.repeats)
    row = {"runtime": runtime, "batch_size": b, "words": words, "end_to_end_s": e2e, "model_only_s": only,
           "end_to_end_words_per_s": words / e2e, "model_only_words_per_s": words / only,
           "end_to_end_share_of_model_only": only / e2e}
    logger.info("%-10s batch %3d: end to end %9.0f words/s, model only %9.0f words/s (%.0f%%)", runtime, b,
                row["end_to_end_words_per_s"], row["model_only_words_per_s"], 100 * row["end_to_end_share_of_model_only"])
    return row


def per_call_ms(calls: list, warmup: int = 50) -> list[float]:
    """Milliseconds of each call in ``calls`` (argument-free callables), after the first ``warmup`` run untimed."""
    for call in calls[:warmup]:
        call()
    times = []
    for call in calls:
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1000.0)
    return times


def single_sentence_latency(a, runtime: str, texts: list[str]) -> dict:
    """p50/p99/max ms of ``predict([text])`` plus JSON for sentences of at most 40 words, and p50/p99 ms
    of the forward pass alone on each sentence's row(s)."""
    model = open_model(a, runtime, 1)
    words = model.adapter.splitter.spans(texts)
    picked = [(t, w) for t, w in zip(texts, words) if 0 < len(w) <= 40][:a.latency_sentences]
    short = [t for t, _ in picked]
    times = per_call_ms([lambda t=t: json.dumps(model.predict([t])[0], ensure_ascii=False) for t in short])
    # the forward pass alone on each sentence's row(s): the floor the end-to-end latency stands on
    enc = model.adapter.encode({"tokens": [[x for x, _, _ in w] for _, w in picked], "tags": [[] for _ in picked]},
                               model.tokenizer, model.max_length)
    example = np.asarray(enc.example)
    fwd, pad = forward_fn(model), model.tokenizer.pad_token_id
    inputs = [enc.input_ids.padded(np.flatnonzero(example == i), pad) for i in range(len(picked))]
    forward_ms = per_call_ms([lambda ids=ids, mask=mask.astype(np.int64): fwd(ids, mask) for ids, mask in inputs])
    st = latency_stats(times, 1)
    out = {"runtime": runtime, "sentences": len(short), "mean_words": float(np.mean([len(w) for w in words if 0 < len(w) <= 40])),
           "p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99)), "max_ms": st["max_ms"],
           "model_only_p50_ms": float(np.percentile(forward_ms, 50)),
           "model_only_p99_ms": float(np.percentile(forward_ms, 99))}
    logger.info("%-10s single sentences (<= 40 words): p50 %.3f ms, p99 %.3f ms (model only %.3f / %.3f ms)", runtime,
                out["p50_ms"], out["p99_ms"], out["model_only_p50_ms"], out["model_only_p99_ms"])
    return out


def profile(a, spec: str, texts: list[str]) -> dict:
    """Seconds per stage of ``predict`` over all texts in chunks of ``--chunk-lines`` (median of
    ``--repeats``): word splitting, encoding, forward (with batching and per-row logits),
    first-subword decoding, each timed alone; ``predict`` itself; spans and result dicts (``predict``
    less the others); JSON."""
    runtime, b = spec.split(":")
    model = open_model(a, runtime)
    model.batch_size = int(b)  # a plain attribute on versions without batch_size; ignored there
    ad, tok, ml = model.adapter, model.tokenizer, model.max_length
    chunks = [texts[i:i + a.chunk_lines] for i in range(0, len(texts), a.chunk_lines)]

    # the subword table predict keeps between calls (versions before it tokenized each call afresh)
    pieces = {"pieces": ad.serving_pieces(tok)} if hasattr(ad, "serving_pieces") else {}

    # the garbage-collection setting predict runs under, for the stages timed alone too (none before it)
    gc_setting = getattr(inference, "fewer_collections", contextlib.nullcontext)

    def stages():
        t = dict.fromkeys(("split", "encode", "forward", "decode", "predict", "json"), 0.0)
        for lines in chunks:
            with gc_setting():
                t0 = time.perf_counter()
                spans = ad.splitter.spans(lines)
                t1 = time.perf_counter()
                enc = ad.encode({"tokens": [[w for w, _, _ in s] for s in spans], "tags": [[] for _ in spans]}, tok, ml,
                                **pieces)
                t2 = time.perf_counter()
                logits = model.logits(enc)
                t3 = time.perf_counter()
                ad.decode(logits, enc)
                t4 = time.perf_counter()
                results = model.predict(lines)
                t5 = time.perf_counter()
                "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results)
                t6 = time.perf_counter()
                for k, x in zip(t, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5)):
                    t[k] += x
        return t
    stages()
    runs = [stages() for _ in range(a.repeats)]
    med = {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
    # spans and result dicts: what predict spends beyond the stages timed alone
    med["spans_and_results"] = max(0.0, med["predict"] - med["split"] - med["encode"] - med["forward"] - med["decode"])
    words = sum(len(r["words"]) if "words" in r else len(r["text"].split()) for c in chunks for r in model.predict(c))
    out = {"runtime": runtime, "batch_size": int(b), "words": words, "seconds": med,
           "predict_and_json_words_per_s": words / (med["predict"] + med["json"])}
    logger.info("profile %s: %s; %.0f words/s", spec, ", ".join(f"{k} {v:.3f} s" for k, v in med.items()),
                out["predict_and_json_words_per_s"])
    return out


def stream_memory(a, texts: list[str], n_lines: int, out_dir: Path) -> dict:
    """Peak RSS (MiB) and words/s of ``python -m xdistill predict`` (ONNX Runtime int8) on ``n_lines``
    lines (the texts cycled), as its last log line reports them. (Not this process's ``wait4``
    usage of the child: Linux's ``ru_maxrss`` keeps the peak of the image before ``exec``, here
    this benchmark with three models loaded.)

    Raises:
        XDistillError: the run failed or its log names no peak RSS (an xdistill before it did).
    """
    src = out_dir / f"stream-{n_lines}.txt"
    with open(src, "w", encoding="utf-8") as f:
        for i in range(n_lines):
            f.write(texts[i % len(texts)] + "\n")
    cmd = [sys.executable, "-m", "xdistill", "predict", "--model", a.student, "--runtime", "onnx", "--precision",
           "int8", "--threads", str(a.threads), "--batch-lines", str(a.chunk_lines)]
    with open(src, "rb") as fin, open(os.devnull, "wb") as fout:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=fin, stdout=fout, stderr=subprocess.PIPE, cwd=REPO_ROOT)
        err = proc.stderr.read().decode("utf-8", "replace")
        status = proc.wait()
        seconds = time.perf_counter() - t0
    src.unlink()
    if status != 0:
        raise XDistillError(f"predict on {n_lines} lines failed: {err[-500:]}")
    rate = [ln for ln in err.splitlines() if "words/s" in ln]
    peak = re.search(r"peak RSS ([0-9.]+) MiB", rate[-1] if rate else "")
    if peak is None:
        raise XDistillError(f"predict on {n_lines} lines logged no peak RSS: {err[-500:]}")
    out = {"lines": n_lines, "peak_rss_mib": float(peak.group(1)), "wall_s": seconds, "log": rate[-1]}
    logger.info("stream %d lines: peak RSS %.1f MiB, %.1f s; %s", n_lines, out["peak_rss_mib"], seconds, out["log"])
    return out


def render(result: dict) -> str:
    m = result["machine"]
    lines = [f"# Serving throughput: {result['student']}", "",
             f"Machine: {m['cpu']}, {m['logical_cores']} logical cores, {m['threads']} threads; "
             f"torch {m['torch']}, onnxruntime {m['onnxruntime']}. Texts: {result['texts']} sentences, "
             + ", ".join(f"{k} ({v['script']})" for k, v in result["languages"].items()) + ".", ""]
    if result["throughput"]:
        df = pd.DataFrame(result["throughput"])[["runtime", "batch_size", "end_to_end_words_per_s",
                                                "model_only_words_per_s", "end_to_end_share_of_model_only"]]
        lines += ["## Words per second (median of repeats)", "", df.to_markdown(index=False, floatfmt=",.2f"), ""]
    if result["latency"]:
        lines += ["## Single sentences (at most 40 words), ms", "",
                  pd.DataFrame(result["latency"]).to_markdown(index=False, floatfmt=".3f"), ""]
    if result["profile"]:
        p = result["profile"]
        lines += [f"## Stages of predict ({p['runtime']}, batch {p['batch_size']}), seconds over {p['words']:,} words", "",
                  pd.Series(p["seconds"]).to_frame("seconds").to_markdown(floatfmt=".3f"), ""]
    if result["stream"]:
        lines += ["## Streaming (python -m xdistill predict, ONNX Runtime int8)", "",
                  pd.DataFrame(result["stream"]).to_markdown(index=False, floatfmt=",.1f"), ""]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    texts, langs = read_texts(a.data_dir, a.langs.split(","))
    out_dir = Path(a.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {"student": a.student, "texts": len(texts), "languages": langs, "machine": machine_info(a.threads),
              "repeats": a.repeats, "chunk_lines": a.chunk_lines, "goals": GOALS, "throughput": [], "latency": [],
              "profile": profile(a, a.profile, texts) if a.profile else None, "stream": []}
    if not a.profile_only:
        for runtime in a.runtimes.split(","):
            result["throughput"] += [throughput(a, runtime, b, texts) for b in a.batch_sizes]
            result["latency"].append(single_sentence_latency(a, runtime, texts))
        result["stream"] = [stream_memory(a, texts, n, out_dir) for n in a.stream_lines]
    atomic_write_json(out_dir / "serving.json", result)
    atomic_write_text(out_dir / "serving.md", render(result))
    logger.info("wrote %s", out_dir / "serving.md")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        sys.exit(main(sys.argv[1:]))
    except XDistillError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
