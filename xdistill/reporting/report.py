"""``report.json`` and ``report.md`` (tables rendered with pandas), built from a :class:`RunResult`."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from ..utils import atomic_write_json, atomic_write_text, plural
from .results import ModelScores, RunResult


def _per_group(r: RunResult) -> dict[str, dict]:
    """Per group: the teacher's, the first student's and the baseline's metric, the other students', ``n_eval``."""
    k, variants = r.task.metric, r.variants
    out = {}
    for g in r.data.groups:
        row = {f"teacher_{k}": r.model("teacher").scores[g][k], f"student_{k}": r.model(variants[0]).scores[g][k],
               f"baseline_{k}": r.model("baseline").scores[g][k], "n_eval": r.model("teacher").scores[g]["n"]}
        for v in variants[1:]:
            row[f"student_{v}_{k}"] = r.model(v).scores[g][k]
        out[g] = row
    return out


def _mean(r: RunResult, per_group: dict[str, dict]) -> dict:
    """Means over groups, student/teacher, the distillation gain and, with generated text, each set against unlabeled."""
    k, variants = r.task.metric, r.variants
    mean = {key: float(np.mean([row[key] for row in per_group.values()]))
            for key in next(iter(per_group.values())) if key != "n_eval"}
    mean["student_to_teacher"] = mean[f"student_{k}"] / mean[f"teacher_{k}"] if mean[f"teacher_{k}"] else None
    mean["distillation_gain"] = mean[f"student_{k}"] - mean[f"baseline_{k}"]
    if "generated" in variants or "both" in variants:
        base = mean[f"student_{k}"] if variants[0] == "unlabeled" else None
        mean["generated_vs_unlabeled"] = {v: (mean[f"student_{v}_{k}"] if v != variants[0] else mean[f"student_{k}"]) - base
                                          for v in variants if v != "unlabeled"} if base is not None else None
    return mean


def _model_row(r: RunResult, m: ModelScores) -> dict:
    groups = list(r.data.groups)
    first = m.scores[groups[0]]
    row = {"model": m.name, "description": m.description, "transfer": m.transfer, "parameters": m.parameters,
           "compression_vs_teacher": r.teacher.parameters / m.parameters,
           "compression_vs_reference": r.reference.parameters / m.parameters}
    row.update({x: float(np.mean([m.scores[g][x] for g in groups])) for x in first if isinstance(first[x], float)})
    return row


def build_report(r: RunResult) -> dict:
    """The ``report.json`` dictionary (see the README for its fields)."""
    unit, sizes, variants = r.task.unit, r.sizes, r.variants
    per_group = _per_group(r)
    s_inf = r.student["parameters"]
    td = r.data
    report = {
        "task": r.task.name,
        "task_type": r.task.type,
        "metric": r.task.metric,
        "metric_description": r.task.metric_description,
        "preset": r.preset,
        "command": r.command,
        "data": {
            "source": td.source,
            "requested": td.requested,
            "groups": list(td.groups),
            "missing": td.missing,
            "teacher_saw": (f"{sizes['teacher_labeled']} labeled {unit} ({td.teacher_budget})" if r.teacher.fine_tuned_here
                            else r.teacher.labeled_data),
            "student_saw": (f"{sizes['labeled']} labeled {unit} ({td.student_budget}) and transfer text without "
                            f"labels, labeled by the teacher: {plural(len(r.transfer_sizes), 'set')} ("
                            + ", ".join(f"{v}: {n} rows" for v, n in r.transfer_sizes.items()) + ")"),
            "baseline_saw": f"the same {sizes['labeled']} labeled {unit} only",
            "validation": f"{sizes['validation']} {unit} held out of train (early stopping, model selection)",
            "per_group": {g: d.counts for g, d in td.groups.items()},
            "encoding": r.encoding,
        },
        "teacher": asdict(r.teacher),
        "reference": {"key": r.reference.key, "name": r.reference.name, "hub_id": r.reference.hub_id,
                      "parameters": r.reference.parameters},
        "student": {**r.student, "compression_vs_teacher": r.teacher.parameters / s_inf,
                    "compression_vs_reference": r.reference.parameters / s_inf},
        "baseline": {"description": f"the same {r.student['name']}, random embeddings, trained on the labeled budget "
                                    "only (no teacher)", "parameters": r.model("baseline").parameters},
        "models": [_model_row(r, m) for m in r.models],
        "groups": per_group,
        "details": {m.key: {g: m.scores[g] for g in td.groups} for m in r.models},
        "schedule": r.schedules[variants[0]],
        "schedules": r.schedules,
        "baseline_schedule": r.baseline_schedule,
        "generation": None,  # a run without generated text has none; a source's section replaces it below
        "timing": r.timing,
        "settings": r.settings,
        "mean": _mean(r, per_group),
    }
    report.update(r.sections)
    if r.task.group_name:  # e.g. NER: report["languages"] = {lang: {...}}
        report[r.task.group_name] = per_group
    return report


#: columns that hold counts: printed without decimals (a DataFrame row is upcast to float)
COUNT_COLUMNS = ("n_eval", "examples", "examples_truncated", "tokens_cut", "updates", "parameters")


def _table(df: pd.DataFrame, floatfmt: str = ".2f", index: bool = True) -> str:
    formats = [".0f" if c in COUNT_COLUMNS else floatfmt for c in df.columns]
    return df.to_markdown(floatfmt=(["g"] if index else []) + formats, index=index)



def render_markdown(r: dict) -> str:
    """The report as Markdown: models, mean and per-group scores, generation, timing, schedule."""
    k = r["metric"]
    lines = [f"# xdistill report: {r['task']} ({r['preset']} preset)", "", f"Command: `{r['command']}`", "",
             f"Metric: {r['metric_description']}. Teacher: {r['teacher']['description']}.", ""]
    models = pd.DataFrame(r["models"]).set_index("model")
    keep = [c for c in ["description", "transfer", "parameters", "compression_vs_teacher", "compression_vs_reference",
                        k, "macro_f1", "precision", "recall"] if c in models.columns]
    ref = r["reference"]
    lines += ["## Models", "", f"Compression is against the teacher and against {ref['name']} ({ref['hub_id']}, "
              f"{ref['parameters'] / 1e6:.1f}M parameters).", "", _table(models[keep], ".2f"), ""]
    d = r["data"]
    lines += ["## Data each model saw", "", f"- Teacher: {d['teacher_saw']}", f"- Student: {d['student_saw']}",
              f"- Baseline: {d['baseline_saw']}", f"- Validation: {d['validation']}", f"- Source: {d['source']}", ""]
    if d.get("missing"):
        lines += [f"Requested but without labeled data in {d['source']}: {', '.join(d['missing'])}.", ""]
    m = r["mean"]
    mean_row = {key: v for key, v in m.items() if isinstance(v, float)}
    lines += ["## Mean over groups" if len(r["groups"]) > 1 else "## Summary", "",
              _table(pd.DataFrame([mean_row], index=["mean"])), ""]
    per = pd.DataFrame(r["groups"]).T
    lines += ["## Per " + ("language" if "languages" in r else "group"), "", _table(per), ""]
    g = r.get("generation")
    if g:
        lines += ["## Generated transfer text (generation-distillation)", "",
                  f"Generator: {g['generator']}; trained on {g['train_texts']} texts. Sampled {g['sampled']}, kept "
                  f"{g['kept']} (removed: {g['removed_length']} by length, {g['removed_duplicate']} exact duplicates, "
                  f"{g['removed_near_duplicate']} near duplicates, {g['removed_eval_overlap']} near the evaluation split); "
                  f"mean length {g['mean_words']:.1f} words.", ""]
        gv = m.get("generated_vs_unlabeled")
        if gv:
            lines += ["Generated text against unlabeled text (difference in mean " + k + "): "
                      + ", ".join(f"{v}: {x:+.2f}" for v, x in gv.items()) + ".", ""]
        lines += ["Samples:", ""] + [f"> {s[:300]}" for s in g["samples"][:3]] + [""]
    enc = d.get("encoding", {})
    trunc = {n: e for n, e in enc.items() if e.get("examples_truncated")}
    if trunc:
        lines += ["## Truncation", "", _table(pd.DataFrame(trunc).T[["examples", "examples_truncated", "tokens_cut"]], ".0f"), ""]
    tm = r["timing"]
    phases = pd.DataFrame({"seconds": tm["seconds"]}).assign(minutes=lambda x: x["seconds"] / 60)
    lines += ["## Timing", "", _table(phases), "",
              f"Total {tm['total_seconds'] / 60:.1f} min; peak RSS {tm['peak_rss_mib']:.0f} MiB; {plural(tm['threads'], 'thread')}.",
              f"Teacher labeling: {tm['teacher_tokens_per_second'] or 0:.0f} real tokens/s, padding fraction "
              f"{100 * (tm['padding_fraction'] or 0):.1f}%{' (read from cache)' if tm.get('teacher_labeling_cached') else ''}.", ""]
    rows = []
    for variant, sched in r.get("schedules", {"": r["schedule"]}).items():
        rows += [{**{c: s[c] for c in ("step", "epochs", "updates", "best_score", "metric", "seconds")},
                  "student": variant} for s in sched]
    rows += [{**{c: s[c] for c in ("step", "epochs", "updates", "best_score", "metric", "seconds")}, "student": "baseline"}
             for s in r["baseline_schedule"]]
    if rows:
        lines += ["## Schedule (XtremeDistil Algorithm 1, gradual unfreezing)", "",
                  _table(pd.DataFrame(rows)[["student", "step", "epochs", "updates", "best_score", "metric", "seconds"]],
                         ".3f", index=False), ""]
    return "\n".join(lines)


def write_report(report: dict, out_dir: str | Path) -> None:
    """Write ``report.json`` and ``report.md`` atomically into ``out_dir``."""
    out = Path(out_dir)
    atomic_write_json(out / "report.json", report)
    atomic_write_text(out / "report.md", render_markdown(report))
