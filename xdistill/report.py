"""``report.json`` and ``report.md`` (tables rendered with pandas)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .utils import atomic_write_json, atomic_write_text

#: Parameters of mBERT-base (bert-base-multilingual-cased): 12 layers, hidden 768, vocabulary 119,547.
MBERT_BASE_PARAMETERS = 177_300_000


def _table(df: pd.DataFrame, floatfmt: str = ".2f") -> str:
    return df.to_markdown(floatfmt=floatfmt)


def render_markdown(r: dict) -> str:
    """The report as Markdown: models, mean and per-group scores, generation, timing, schedule."""
    k = r["metric"]
    lines = [f"# xdistill report: {r['task']} ({r['preset']} preset)", "", f"Command: `{r['command']}`", "",
             f"Metric: {r['metric_description']}. Teacher: {r['teacher']['description']}.", ""]
    models = pd.DataFrame(r["models"]).set_index("model")
    keep = [c for c in ["description", "transfer", "parameters", "compression_vs_teacher", "compression_vs_mbert_base",
                        k, "macro_f1", "precision", "recall"] if c in models.columns]
    lines += ["## Models", "", _table(models[keep], ".2f"), ""]
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
    per["n_eval"] = per["n_eval"].astype(int)
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
              f"Total {tm['total_seconds'] / 60:.1f} min; peak RSS {tm['peak_rss_mib']:.0f} MiB; {tm['threads']} threads.",
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
                  _table(pd.DataFrame(rows).set_index(["student", "step"]), ".3f"), ""]
    return "\n".join(lines)


def write_report(report: dict, out_dir: str | Path) -> None:
    """Write ``report.json`` and ``report.md`` atomically into ``out_dir``."""
    out = Path(out_dir)
    atomic_write_json(out / "report.json", report)
    atomic_write_text(out / "report.md", render_markdown(report))
