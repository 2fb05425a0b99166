"""The model card (``README.md``) of a saved student folder.

The card is rendered from three files that live in the folder, each written by the step that
knows its facts:

* ``training_summary.json``: written by the distillation run (:func:`summary_from_report`):
  task, languages, teacher, the data each model saw, metrics, parameters and compression;
* ``onnx/parity.json``: written by ``xdistill export`` (ONNX parity, int8 metric);
* ``latency.json``: written by ``xdistill benchmark`` (batch latency of this student and of
  mBERT-base on the same machine).

:func:`write_model_card` re-renders the card whenever one of them changes. A student saved
before summaries existed is described from ``../report.json`` of its run when that is there.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .utils import atomic_write_json, atomic_write_text

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
                    "path": report["teacher"]["path"], "saw": d["teacher_saw"]},
        "student": {"architecture": report["student"]["architecture"], "kind": report["student"]["kind"],
                    "embedding_dim": report["student"]["embedding_dim"], "hidden_size": report["student"]["hidden_size"],
                    "pooling": report["student"]["pooling"], "vocabulary": report["student"]["vocabulary"],
                    "teacher_vocabulary": report["student"]["teacher_vocabulary"], "parameters": student["parameters"],
                    "compression_vs_teacher": student["compression_vs_teacher"],
                    "compression_vs_mbert_base": student["compression_vs_mbert_base"], "saw": d["student_saw"]},
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
        variant = json.loads(cfg_path.read_text(encoding="utf-8")).get("transfer", "unlabeled")
        try:
            return summary_from_report(report, variant)
        except (KeyError, StopIteration):
            return None
    return None


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _fmt_params(n: int) -> str:
    return f"{n / 1e6:.2f}M"


def render_model_card(directory: str | Path) -> str:
    """The card's Markdown for a student folder (see the module docstring for its sources)."""
    from .onnx_export import ONNX_DIR, PARITY_FILE

    d = Path(directory)
    cfg = json.loads((d / "config.json").read_text(encoding="utf-8"))
    s = load_training_summary(d)
    parity = _read(d / ONNX_DIR / PARITY_FILE)
    latency = _read(d / LATENCY_FILE)
    task = cfg.get("task", "task")
    labels = cfg.get("labels", [])
    level = "NER, IOB2 tags" if cfg.get("task_type") == "token-classification" else "text classification"
    kind = {"bilstm": "BiLSTM"}.get(cfg.get("kind", ""), cfg.get("kind", "?"))
    lines = [f"# xdistill student: {task} ({level})", "",
             f"A {kind} student distilled with xdistill (XtremeDistil, Mukherjee & Hassan "
             f"Awadallah 2020). Labels: {', '.join(labels)}. Maximum length {cfg.get('max_length')} subword tokens "
             "(longer NER sentences are split into windows; longer texts are truncated, as in training).", ""]
    lines += ["## How to load", "", "```python", "from xdistill import load_model", "",
              f'model = load_model("{d.name}")                    # PyTorch',
              f'model = load_model("{d.name}", runtime="onnx")    # ONNX Runtime fp32 (after export)',
              f'model = load_model("{d.name}", runtime="onnx", precision="int8")',
              'model.predict(["Angela Merkel visited Paris."])', "```", "",
              "```bash", f"python -m xdistill predict --model {d.name} --runtime onnx --text \"...\"",
              f"python -m xdistill export --model {d.name} --format onnx --quantize int8 --data-dir DATA",
              f"python -m xdistill benchmark --students {d.name}", "```", ""]
    if s is None:
        lines += ["## Training", "", "No training summary was found for this student (no `training_summary.json`, no "
                  "`../report.json`).", ""]
    else:
        k = s["metric"]
        t = s["teacher"]
        st = s["student"]
        groups = s["groups"]
        lines += ["## Task and languages", "", f"Task `{s['task']}`; {len(groups)} {s['group_name']}: {', '.join(groups)}.", ""]
        lines += ["## Teacher", "", f"{t['description']}: {t['architecture']}, {t['layers']} layers, hidden "
                  f"{t['hidden_size']}, {_fmt_params(t['parameters'])} parameters."]
        if t["trained_from_scratch"]:
            lines += ["", "**The teacher was trained from scratch on the labeled data of this run; it is not a "
                      "pretrained mBERT**, so absolute scores are far below the XtremeDistil paper's."]
        lines += ["", "## Data each model saw", "", f"- Teacher: {t['saw']}", f"- Student: {st['saw']}",
                  f"- Baseline (no distillation): {s['baseline']['saw']}", f"- Validation: {s['validation']}",
                  f"- Source: {s['source']}", ""]
        sc = s["scores"]
        metric_cols = [m for m in sc["student"] if m in (k, "precision", "recall", "accuracy", "macro_f1", "f1")]
        tab = pd.DataFrame({name: {m: sc[name].get(m) for m in metric_cols} for name in ("teacher", "student", "baseline")}).T
        lines += ["## Metrics", "", f"{s['metric_description']}, {s['evaluation']} (the run's evaluation split).", "",
                  tab.to_markdown(floatfmt=".2f"), ""]
        if len(s["per_group"]) > 1:
            per = pd.DataFrame(s["per_group"]).T
            per = per.astype({c: float for c in ("teacher", "student", "baseline")}).round(2).astype({"n_eval": int})
            lines += ["<details><summary>Per " + ("language" if s["group_name"] == "languages" else "group") + "</summary>", "",
                      per.to_markdown(), "", "</details>", ""]
        lines += ["## Size", "", f"- Student: {_fmt_params(st['parameters'])} inference parameters ({st['architecture']}, "
                  f"E={st['embedding_dim']}, H={st['hidden_size']}, vocabulary pruned from {st['teacher_vocabulary']:,} to "
                  f"{st['vocabulary']:,} WordPiece tokens; the training-only projection head is not counted).",
                  f"- Compression: {st['compression_vs_mbert_base']:.1f}x fewer parameters than mBERT-base (177.3M), "
                  f"{st['compression_vs_teacher']:.1f}x fewer than this run's teacher.", ""]
        if s.get("command"):
            lines += [f"Trained with `{s['command']}`.", ""]
    if parity:
        k = parity["metric"]
        sc = parity["scores"]
        lines += ["## ONNX export", "", f"`onnx/model.onnx` (fp32) max |logit difference| against PyTorch: "
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
    if latency:
        rows = pd.DataFrame(latency["rows"])
        keep = [c for c in ("model", "runtime", "batch_size", "median_ms", "p90_ms", "sequences_per_second",
                            "speedup_vs_mbert_base") if c in rows.columns]
        m = latency.get("machine", {})
        lines += ["## Latency", "", f"Batch latency at sequence length {latency['settings']['sequence_length']} on "
                  f"{m.get('cpu', '?')} ({latency['settings']['threads']} threads); median of "
                  f"{latency['settings']['repeats']} timed runs after {latency['settings']['warmup']} warm-up runs. "
                  "Speedup is against mBERT-base in the same runtime and batch size.", "",
                  rows[keep].to_markdown(index=False, floatfmt=".2f"), ""]
    return "\n".join(lines)


def write_model_card(directory: str | Path) -> Path:
    """Render and write ``README.md`` into a student folder (atomically); return its path."""
    path = Path(directory) / CARD_FILE
    atomic_write_text(path, render_model_card(directory))
    return path
