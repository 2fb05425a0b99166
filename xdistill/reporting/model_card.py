"""The model card (``README.md``) of a saved student folder.

The card is rendered from three files that live in the folder, each written by the step that
knows its facts:

* ``training_summary.json``: written by the distillation run (:func:`summary_from_report`):
  task, languages, teacher, the data each model saw, metrics, parameters and compression;
* ``onnx/parity.json``: written by ``xdistill export`` (ONNX parity, int8 metric);
* ``latency.json``: written by ``xdistill benchmark`` (batch latency of this student and of
  its reference model, mBERT-base or XLM-R-base, on the same machine).

:func:`write_model_card` re-renders the card whenever one of them changes. A student saved
before summaries existed is described from ``../report.json`` of its run when that is there.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..adapters import adapter_for_saved
from ..students import saved_settings
from ..utils import atomic_write_json, atomic_write_text, plural

#: ``onnx/parity.json`` of an exported student (written by :mod:`xdistill.serving.export`)
PARITY_PATH = Path("onnx") / "parity.json"

SUMMARY_FILE = "training_summary.json"
LATENCY_FILE = "latency.json"
CARD_FILE = "README.md"


def summary_from_report(report: dict, variant: str) -> dict:
    """The part of a run's ``report.json`` that concerns the student distilled on ``variant``'s transfer set.

    Raises:
        KeyError: the report has no student for ``variant``.
    """
    k = report["metric"]
    rows = {r["model"]: r for r in report["models"]}
    student = next(r for r in report["models"] if r["model"].startswith("student (distilled") and r["transfer"] == variant)
    teacher, baseline = rows["teacher"], rows["student (no distillation)"]
    first = report["student"]["transfer"]
    key = f"student_{k}" if variant == first else f"student_{variant}_{k}"

    def metrics(row):
        return {m: v for m, v in row.items() if isinstance(v, float) and not m.startswith("compression")}

    per_group = {g: {"teacher": v[f"teacher_{k}"], "student": v[key], "baseline": v[f"baseline_{k}"], "n_eval": v["n_eval"]}
                 for g, v in report["groups"].items()}
    d = report["data"]
    return {
        "task": report["task"], "task_type": report["task_type"], "metric": k,
        "metric_description": report["metric_description"], "transfer": variant,
        "groups": list(report["groups"]), "group_name": "languages" if "languages" in report else "groups",
        "teacher": {"description": report["teacher"]["description"], "source": report["teacher"]["source"],
                    "trained_from_scratch": report["teacher"]["trained_from_scratch"],
                    "architecture": report["teacher"]["architecture"], "parameters": teacher["parameters"],
                    "layers": report["teacher"]["num_layers"], "hidden_size": report["teacher"]["hidden_size"],
                    "vocabulary": report["teacher"].get("vocabulary", "WordPiece"),
                    "path": report["teacher"]["path"], "saw": d["teacher_saw"]},
        "reference": report["reference"],
        "student": {**{x: report["student"][x] for x in ("name", "architecture", "kind", "summary", "vocabulary",
                                                         "teacher_vocabulary") if x in report["student"]},
                    "parameters": student["parameters"], "compression_vs_teacher": student["compression_vs_teacher"],
                    "compression_vs_reference": student["compression_vs_reference"], "saw": d["student_saw"]},
        "baseline": {"description": report["baseline"]["description"], "saw": d["baseline_saw"]},
        "validation": d["validation"], "source": d["source"],
        "evaluation": "per " + ("language" if "languages" in report else "group") + f", mean over {len(per_group)}",
        "scores": {"teacher": metrics(teacher), "student": metrics(student), "baseline": metrics(baseline)},
        "per_group": per_group,
        "command": report.get("command"), "preset": report.get("preset"),
    }


def write_training_summary(directory: str | Path, report: dict, variant: str) -> None:
    """Write ``training_summary.json`` into a student folder (atomically)."""
    atomic_write_json(Path(directory) / SUMMARY_FILE, summary_from_report(report, variant))


def load_training_summary(directory: str | Path) -> dict | None:
    """The folder's ``training_summary.json``; else the student's part of ``../report.json`` (older
    runs); ``None`` if neither is there."""
    d = Path(directory)
    if (d / SUMMARY_FILE).is_file():
        return json.loads((d / SUMMARY_FILE).read_text(encoding="utf-8"))
    report_path = d.parent / "report.json"
    cfg_path = d / "config.json"
    if report_path.is_file() and cfg_path.is_file():
        report = json.loads(report_path.read_text(encoding="utf-8"))
        variant = saved_settings(d).get("transfer", "unlabeled")
        try:
            return summary_from_report(report, variant)
        except (KeyError, StopIteration):
            return None
    return None


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _fmt_params(n: int) -> str:
    return f"{n / 1e6:.2f}M"


def _header(d: Path, cfg: dict, summary: dict | None) -> list[str]:
    """Title, what the student is, and how to load it."""
    task = cfg.get("task", "task")
    adapter = adapter_for_saved(cfg) if cfg.get("labels") else None
    level = adapter.description if adapter is not None else cfg.get("task_type", "")
    name = ((summary or {}).get("student") or {}).get("name") or cfg.get("kind", "?")
    return [f"# xdistill student: {task} ({level})", "",
            f"A {name} student distilled with xdistill (XtremeDistil, Mukherjee & Hassan "
            f"Awadallah 2020). Labels: {', '.join(cfg.get('labels', []))}. Maximum length {cfg.get('max_length')} subword "
            "tokens (longer NER sentences are split into windows; longer texts are truncated, as in training).", "",
            "## How to load", "", "```python", "from xdistill import load_model", "",
            f'model = load_model("{d.name}")                    # PyTorch',
            f'model = load_model("{d.name}", runtime="onnx")    # ONNX Runtime fp32 (after export)',
            f'model = load_model("{d.name}", runtime="onnx", precision="int8")',
            'model.predict(["Angela Merkel visited Paris."])', "```", "",
            "```bash", f"python -m xdistill predict --model {d.name} --runtime onnx --text \"...\"",
            f"python -m xdistill export --model {d.name} --format onnx --quantize int8 --data-dir DATA",
            f"python -m xdistill benchmark --students {d.name}", "```", ""] + _transformers_usage(d, cfg)


def _transformers_usage(d: Path, cfg: dict) -> list[str]:
    """How to load a student saved as a standard ``transformers`` model (its ``config.json`` names
    ``architectures``), without xdistill."""
    archs = cfg.get("architectures") or []
    if not archs or not cfg.get("labels"):
        return []
    level = adapter_for_saved(cfg).level
    options = f", {level.pipeline_options}" if level.pipeline_options else ""
    return [f"It is a standard `transformers` model ({archs[0]}) with its own tokenizer over the pruned vocabulary:", "",
            "```python", f"from transformers import AutoModelFor{level.head}, pipeline", "",
            f'model = AutoModelFor{level.head}.from_pretrained("{d.name}")',
            f'tagger = pipeline("{level.pipeline_task}", model="{d.name}"{options})', "```", ""]


def _training(s: dict | None) -> list[str]:
    """Task, teacher, data, metrics and size, from the training summary."""
    if s is None:
        return ["## Training", "", "No training summary was found for this student (no `training_summary.json`, no "
                "`../report.json`).", ""]
    k, t, st, groups = s["metric"], s["teacher"], s["student"], s["groups"]
    ref = s.get("reference") or {"name": "mBERT-base", "parameters": 177_300_000}
    short = ref["name"].removesuffix("-base")
    lines = ["## Task and languages", "", f"Task `{s['task']}`; {len(groups)} {s['group_name']}: {', '.join(groups)}.", "",
             "## Teacher", "", f"{t['description']}: {t['architecture']}, {t['layers']} layers, hidden "
             f"{t['hidden_size']}, {_fmt_params(t['parameters'])} parameters."]
    if t["trained_from_scratch"]:
        lines += ["", "**The teacher was trained from scratch on the labeled data of this run; it is not a "
                  f"pretrained {short}**, so absolute scores are far below the XtremeDistil paper's."]
    lines += ["", "## Data each model saw", "", f"- Teacher: {t['saw']}", f"- Student: {st['saw']}",
              f"- Baseline (no distillation): {s['baseline']['saw']}", f"- Validation: {s['validation']}",
              f"- Source: {s['source']}", ""]
    sc = s["scores"]
    metric_cols = [m for m in dict.fromkeys((k, f"{k}_unseen", "accuracy", "macro_f1", "f1", "precision", "recall"))
                   if m in sc["student"]]
    tab = pd.DataFrame({name: {m: sc[name].get(m) for m in metric_cols} for name in ("teacher", "student", "baseline")}).T
    unseen = (f" `{k}_unseen`: the same without the evaluation examples whose text also stands in the train file."
              if f"{k}_unseen" in metric_cols else "")
    lines += ["## Metrics", "", f"{s['metric_description']}, {s['evaluation']} (the run's evaluation split).{unseen}", "",
              tab.to_markdown(floatfmt=".2f"), ""]
    if len(s["per_group"]) > 1:
        per = pd.DataFrame(s["per_group"]).T
        per = per.astype({c: float for c in ("teacher", "student", "baseline")}).round(2).astype({"n_eval": int})
        lines += ["<details><summary>Per " + ("language" if s["group_name"] == "languages" else "group") + "</summary>", "",
                  per.to_markdown(), "", "</details>", ""]
    vocab_kind = t.get("vocabulary", "WordPiece")
    lines += ["## Size", "", f"- Student: {_fmt_params(st['parameters'])} inference parameters ({st['architecture']}, "
              f"{st.get('summary', '')}, vocabulary pruned from {st['teacher_vocabulary']:,} to {st['vocabulary']:,} "
              f"{vocab_kind} tokens; training-only distillation heads are not counted).",
              f"- Compression: {st['compression_vs_reference']:.1f}x fewer parameters than {ref['name']} "
              f"({ref['parameters'] / 1e6:.1f}M), {st['compression_vs_teacher']:.1f}x fewer than this run's teacher.", ""]
    if s.get("command"):
        lines += [f"Trained with `{s['command']}`.", ""]
    return lines


def _onnx(parity: dict | None) -> list[str]:
    """The export's parity check and the int8 metric."""
    if not parity:
        return []
    k = parity["metric"]
    sc = parity["scores"]
    lines = ["## ONNX export", "", f"`onnx/model.onnx` (fp32) max |logit difference| against PyTorch: "
             f"{parity['fp32']['max_abs_logit_diff']:.1e} on {parity['data']['rows']:,} rows "
             f"({parity['data']['examples']:,} examples) of the evaluation files."]
    rows = {"PyTorch fp32": sc["torch_fp32"].get(k), "ONNX Runtime fp32": sc["onnx_fp32"].get(k)}
    if parity.get("int8"):
        rows["ONNX Runtime int8"] = sc["onnx_int8"].get(k)
        lines += [f"`onnx/model.int8.onnx`: dynamic int8 quantization "
                  f"(`quantize_dynamic`, weight type {parity['int8']['quantization']['weight_type']}); "
                  f"{k} {parity['int8']['metric_diff']:+.2f} points against fp32."]
    per_file = parity["data"].get("max_examples_per_file")
    lines += ["", f"{k} over all {parity['data']['examples']:,} examples pooled ("
              f"{'a seeded sample of %s' % per_file if per_file else 'all'} of each of "
              f"{len(parity['data']['files'])} evaluation files), "
              "so it differs from the per-group mean above.", "",
              pd.DataFrame({k: rows}).to_markdown(floatfmt=".2f"), ""]
    return lines


def _latency(latency: dict | None) -> list[str]:
    """The benchmark's rows for this student and its reference model."""
    if not latency:
        return []
    rows = pd.DataFrame(latency["rows"])
    keep = [c for c in ("model", "runtime", "batch_size", "median_ms", "p90_ms", "sequences_per_second",
                        "speedup_vs_reference") if c in rows.columns]
    m = latency.get("machine", {})
    return ["## Latency", "", f"Batch latency at sequence length {latency['settings']['sequence_length']} on "
            f"{m.get('cpu', '?')} ({plural(latency['settings']['threads'], 'thread')}); median of "
            f"{latency['settings']['repeats']} timed runs after {latency['settings']['warmup']} warm-up runs. "
            "Speedup is against the reference model (mBERT-base or XLM-R-base) in the same runtime and batch size.", "",
            rows[keep].to_markdown(index=False, floatfmt=".2f"), ""]


def render_model_card(directory: str | Path) -> str:
    """The card's Markdown for a student folder (see the module docstring for its sources)."""
    d = Path(directory)
    cfg = saved_settings(d)
    summary = load_training_summary(d)
    return "\n".join(_header(d, cfg, summary) + _training(summary) + _onnx(_read(d / PARITY_PATH))
                     + _latency(_read(d / LATENCY_FILE)))


def write_model_card(directory: str | Path) -> Path:
    """Render and write ``README.md`` into a student folder (atomically); return its path."""
    path = Path(directory) / CARD_FILE
    atomic_write_text(path, render_model_card(directory))
    return path
