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
    """The report as Markdown: summary, per-language F1, models, timing, schedule."""
    lines = [f"# xdistill report: {r['task']} ({r['preset']} preset)", "", f"Command: `{r['command']}`", ""]
    t = r["teacher"]
    lines += ["## Models", ""]
    models = pd.DataFrame([
        {"model": "teacher", "description": t["description"], "parameters": t["parameters"],
         "compression vs mBERT-base": MBERT_BASE_PARAMETERS / t["parameters"], "labeled data seen": r["data"]["teacher_saw"]},
        {"model": "student (distilled)", "description": f"BiLSTM E={r['student']['embedding_dim']} H={r['student']['hidden_size']}",
         "parameters": r["student"]["parameters"], "compression vs mBERT-base": r["student"]["compression_vs_mbert_base"],
         "labeled data seen": r["data"]["student_saw"]},
        {"model": "baseline (no distillation)", "description": r["baseline"]["description"],
         "parameters": r["baseline"]["parameters"], "compression vs mBERT-base": MBERT_BASE_PARAMETERS / r["baseline"]["parameters"],
         "labeled data seen": r["data"]["baseline_saw"]},
    ]).set_index("model")
    lines += [_table(models, ".1f"), ""]
    lines += [f"Student compression against the teacher: {r['student']['compression_vs_teacher']:.1f}x; "
              f"against mBERT-base (177.3M): {r['student']['compression_vs_mbert_base']:.1f}x.", ""]
    m = r["mean"]
    lines += ["## Mean over languages", "",
              f"Metric: {r['metric']}.", "",
              _table(pd.DataFrame([{"teacher": m["teacher_f1"], "student": m["student_f1"], "baseline": m["baseline_f1"],
                                    "student / teacher": m["student_to_teacher"], "distillation gain": m["distillation_gain"]}],
                                  index=["mean"])), ""]
    per_lang = pd.DataFrame(r["languages"]).T[["teacher_f1", "student_f1", "baseline_f1", "n_eval"]]
    per_lang["n_eval"] = per_lang["n_eval"].astype(int)
    lines += ["## Per language", "", _table(per_lang), ""]
    if r["data"].get("languages_missing"):
        lines += [f"Requested but without labeled data in {r['data']['source']}: {', '.join(r['data']['languages_missing'])}.", ""]
    tm = r["timing"]
    phases = pd.DataFrame({"seconds": tm["seconds"]}).assign(minutes=lambda d: d["seconds"] / 60)
    lines += ["## Timing", "", _table(phases), "",
              f"Total {tm['total_seconds'] / 60:.1f} min; peak RSS {tm['peak_rss_mib']:.0f} MiB; {tm['threads']} threads.",
              f"Teacher labeling: {tm['teacher_tokens_per_second'] or 0:.0f} real tokens/s, padding fraction "
              f"{100 * (tm['padding_fraction'] or 0):.1f}%{' (read from cache)' if tm.get('teacher_labeling_cached') else ''}.", ""]
    sched = pd.DataFrame([{k: s[k] for k in ("step", "epochs", "updates", "best_score", "metric", "seconds")}
                          for s in r["schedule"] + [dict(x, step="baseline " + x["step"]) for x in r["baseline_schedule"]]])
    if not sched.empty:
        lines += ["## Schedule (XtremeDistil Algorithm 1, gradual unfreezing)", "", _table(sched.set_index("step"), ".3f"), ""]
    return "\n".join(lines)


def write_report(report: dict, out_dir: str | Path) -> None:
    """Write ``report.json`` and ``report.md`` atomically into ``out_dir``."""
    out = Path(out_dir)
    atomic_write_json(out / "report.json", report)
    atomic_write_text(out / "report.md", render_markdown(report))
