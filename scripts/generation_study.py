#!/usr/bin/env python
"""What moves the score of generated transfer text? (issue 13, part 4: why the IMDB generation hurts)

For each variant of the generation options it runs the distillation pipeline's phases up to the
students (data, the given teacher, generated text, the teacher's labels, one student per transfer
set, their evaluation) and skips the no-distillation baselines, which generation does not change:
about half the time of a full run. Every variant shares the run options; the generator and its
samples are cached across variants (``ROOT/generated``), so a variant that only changes sampling or
filters does not train the generator again.

Per variant it records: the generator's perplexity on its samples and on held-out real text,
distinct-1/2, what the filters removed, the teacher's class balance (NER: entity rates) on each
transfer set, the minutes of generation and the students' scores. ``ROOT/study.md`` and ``.json``.

Usage: python scripts/generation_study.py classify --teacher DIR --root ROOT \
           --variant base= --variant "epochs3=--generator-epochs 3 --transfer generated,both" [-- options of every variant]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from xdistill.adapters import load_task, make_adapter  # noqa: E402
from xdistill.cli import parse_distill_args  # noqa: E402
from xdistill.pipeline.run import (Run, build_transfer, check_settings, distill_students, evaluate,  # noqa: E402
                                   label_transfer, prepare_data, prepare_teacher)
from xdistill.utils import atomic_write_json, atomic_write_text, peak_rss_mib, split_passthrough  # noqa: E402


def run_variant(command: str, argv: list[str], out: Path, shared_generated: Path) -> dict:
    """The pipeline without baselines for one variant's options; returns what the study records."""
    settings = parse_distill_args([*argv, "--output-dir", str(out)], command)
    adapter = make_adapter(load_task(settings.run.task))
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "generated").exists():  # one generator cache for all variants
        shared_generated.mkdir(parents=True, exist_ok=True)
        (out / "generated").symlink_to(shared_generated.resolve(), target_is_directory=True)
    r = Run(adapter, settings, out)
    r.sources = check_settings(settings)
    t0 = time.perf_counter()
    prepare_data(r)
    prepare_teacher(r)
    build_transfer(r)
    label_transfer(r)
    trainees, _ = distill_students(r)
    scores = evaluate(r, {v: t.student for v, t in trainees.items()}, {})
    k = adapter.primary_metric
    mean = {m: sum(g[k] for g in per.values()) / len(per) for m, per in scores.items()}
    g = r.sections.get("generation") or {}
    return {"scores": mean, "generation": {x: g.get(x) for x in ("sampled", "kept", "removed", "perplexity", "distinct",
                                                                  "mean_words", "seconds_training", "seconds_sampling")},
            "profile": r.sections.get("transfer_profile"), "samples": (g.get("samples") or [])[:4],
            "minutes": (time.perf_counter() - t0) / 60, "peak_rss_mib": peak_rss_mib()}


def table(results: dict) -> pd.DataFrame:
    """One row per variant: scores, perplexity, distinct-2, kept, class balance of the generated set."""
    rows = {}
    for name, res in results.items():
        g = res["generation"]
        row = {f"{m}": v for m, v in res["scores"].items()}
        row.update({"ppl samples": g["perplexity"]["samples"], "ppl held-out": g["perplexity"]["held_out"],
                    "distinct-2": g["distinct"]["generated"]["distinct_2"], "kept": g["kept"], "words": g["mean_words"],
                    "gen min": (g["seconds_training"] + g["seconds_sampling"]) / 60})
        for s, p in (res["profile"] or {}).items():
            for lab, v in p["labels"].items():
                row[f"{s} {lab} %"] = v
        rows[name] = row
    return pd.DataFrame(rows).T


def main(argv: list[str] | None = None) -> int:
    argv, extra = split_passthrough(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=("ner", "classify"))
    p.add_argument("--teacher", required=True, help="a fine-tuned teacher folder (the teacher/ of a finished run)")
    p.add_argument("--root", default="runs/generation-study")
    p.add_argument("--data-dir", default=os.environ.get("XDISTILL_DATA_DIR", str(REPO_ROOT.parent / "shared" / "data")))
    p.add_argument("--variant", action="append", required=True,
                   help="NAME=OPTIONS: the variant's options as on a command line; NAME= for none")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    root = Path(a.root)
    base = ["--preset", "cpu", "--data-dir", a.data_dir, "--teacher", a.teacher, "--augment", "generate", *extra]
    study = root / "study.json"  # a later call adds its variants to the earlier ones
    results = json.loads(study.read_text(encoding="utf-8")) if study.is_file() else {}
    for spec in a.variant:
        name, _, opts = spec.partition("=")
        out = root / name
        shutil.rmtree(out / "checkpoints", ignore_errors=True)  # a variant starts its students afresh
        results[name] = {"options": opts, **run_variant(a.command, [*base, *shlex.split(opts)], out, root / "generated")}
        atomic_write_json(study, results)
        df = table(results)
        atomic_write_text(root / "study.md", "\n".join([f"# Generation study: {a.command}", "",
                                                       f"Options of every variant: `{' '.join(base)}`", "",
                                                       "Variants: " + "; ".join(f"{n}: `{r['options'] or '-'}`"
                                                                                for n, r in results.items()), "",
                                                       df.to_markdown(floatfmt=".2f"), ""]))
        print(df.to_markdown(floatfmt=".2f"), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
