"""``report.json`` and ``report.md`` (tables rendered with pandas), built from a :class:`RunResult`."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from ..utils import atomic_write_json, atomic_write_text, plural
from .generation import generation_markdown, profile_markdown
from .results import BASELINES, ModelScores, RunResult


def _per_group(r: RunResult) -> dict[str, dict]:
    """Per group: the teacher's, the first student's and the baselines' metric, the other students', ``n_eval``."""
    k, variants = r.task.metric, r.variants
    baselines = [b for b in BASELINES if any(m.key == b for m in r.models)]
    out = {}
    for g in r.data.groups:
        row = {f"teacher_{k}": r.model("teacher").scores[g][k], f"student_{k}": r.model(variants[0]).scores[g][k],
               **{f"{b}_{k}": r.model(b).scores[g][k] for b in baselines}, "n_eval": r.model("teacher").scores[g]["n"]}
        for v in variants[1:]:
            row[f"student_{v}_{k}"] = r.model(v).scores[g][k]
        out[g] = row
    return out


def _mean(r: RunResult, per_group: dict[str, dict]) -> dict:
    """Means over groups, student/teacher, the distillation gain (over the random-embedding baseline and
    over the stronger baseline) and, with generated text, each set against unlabeled."""
    k, variants = r.task.metric, r.variants
    mean = {key: float(np.mean([row[key] for row in per_group.values()]))
            for key in next(iter(per_group.values())) if key != "n_eval"}
    mean["student_to_teacher"] = mean[f"student_{k}"] / mean[f"teacher_{k}"] if mean[f"teacher_{k}"] else None
    mean["distillation_gain"] = mean[f"student_{k}"] - mean[f"baseline_{k}"]
    stronger = max((b for b in BASELINES if f"{b}_{k}" in mean), key=lambda b: mean[f"{b}_{k}"])
    mean["stronger_baseline"] = stronger
    mean["gain_over_stronger_baseline"] = mean[f"student_{k}"] - mean[f"{stronger}_{k}"]
    if "generated" in variants or "both" in variants:
        base = mean[f"student_{k}"] if variants[0] == "unlabeled" else None
        mean["generated_vs_unlabeled"] = {v: (mean[f"student_{v}_{k}"] if v != variants[0] else mean[f"student_{k}"]) - base
                                          for v in variants if v != "unlabeled"} if base is not None else None
    return mean


def _model_row(r: RunResult, m: ModelScores) -> dict:
    """A model's report row: what it is, its size, each metric's mean over groups and the primary
    metric's mean over groups on the evaluation rows whose text is not in train (``METRIC_unseen``;
    groups without such rows left out of that mean, the column absent when no group has one)."""
    groups = list(r.data.groups)
    first = m.scores[groups[0]]
    row = {"model": m.name, "description": m.description, "transfer": m.transfer, "parameters": m.parameters,
           "compression_vs_teacher": r.teacher.parameters / m.parameters,
           "compression_vs_reference": r.reference.parameters / m.parameters}
    row.update({x: float(np.mean([m.scores[g][x] for g in groups])) for x in first if isinstance(first[x], float)})
    unseen = [m.scores[g]["unseen"][r.task.metric] for g in groups if m.scores[g]["unseen"]["n"]]
    if unseen:
        row[f"{r.task.metric}_unseen"] = float(np.mean(unseen))
    return row


def _phases(r: RunResult, mean: dict) -> dict:
    """What each phase gave: the teacher's PPMI-SVD word embeddings (what they were counted on, seconds),
    its masked-language-model pretraining (its held-out loss, in nats per masked token, first and last),
    fine-tuning (the teacher's score), distillation (the student's score and its gain over the stronger
    no-distillation baseline); minutes of each. A teacher reused from ``OUTPUT/teacher`` (an earlier run with
    the same settings) is given the minutes of the run that trained it, and ``reused``."""
    k, sec = r.task.metric, r.timing.get("seconds", {})
    reused = r.teacher.reused and r.teacher.minutes is not None
    teacher_minutes = r.teacher.minutes if reused else sec.get("teacher", 0.0) / 60
    mlm = r.teacher.mlm
    held = (mlm or {}).get("held_out_loss") or []
    mlm_minutes = (mlm or {}).get("minutes", 0.0) if r.teacher.fine_tuned_here else 0.0
    emb = r.teacher.embeddings
    rounds = (r.teacher.self_training or []) if r.teacher.fine_tuned_here else []
    self_minutes = sum(x.get("minutes", 0.0) for x in rounds)
    return {
        "word_embeddings": None if not emb else {key: emb.get(key) for key in ("method", "tokens", "pieces", "seconds")},
        "mlm_pretraining": None if not mlm else {
            "minutes": mlm.get("minutes"), "steps": mlm.get("steps"), "epochs": mlm.get("epochs"),
            "rows": mlm.get("rows"), "tokens": mlm.get("tokens"),
            "held_out_loss_first": held[0][1] if held else None, "held_out_loss_last": held[-1][1] if held else None},
        "fine_tuning": {f"teacher_{k}": mean[f"teacher_{k}"], "best_validation": r.teacher.best_validation_score,
                        "fine_tuned_here": r.teacher.fine_tuned_here, "reused": reused,
                        "minutes": round(max(teacher_minutes - (mlm_minutes or 0.0) - self_minutes, 0.0), 2)},
        "self_training": [{key: x.get(key) for key in ("round", "pseudo_labeled_rows", "best_validation_score", "minutes")}
                          for x in rounds] or None,
        "distillation": {f"student_{k}": mean[f"student_{k}"], "student_to_teacher": mean["student_to_teacher"],
                         "stronger_baseline": mean["stronger_baseline"],
                         f"stronger_baseline_{k}": mean[f"{mean['stronger_baseline']}_{k}"],
                         "gain_over_stronger_baseline": mean["gain_over_stronger_baseline"],
                         "minutes": round((sec.get("teacher_labeling", 0.0) + sec.get("distillation", 0.0)) / 60, 2)},
    }


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
                            + ", ".join(f"{v}: {n} rows" for v, n in r.transfer_sizes.items()) + ")"
                            + _repeat_note(td) + _sampling_note(td, r.sections.get("transfer_sampling"))),
            "baseline_saw": f"the same {sizes['labeled']} labeled {unit} only",
            "validation": (f"{sizes['validation']} {unit} held out of train (early stopping, model selection)"
                           + _heldout_note(td, unit)),
            "evaluation": _evaluation_note(td, unit, r.task.metric),
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
        "baselines": {m.key: {"description": m.description, "parameters": m.parameters} for m in r.models
                      if m.key in BASELINES},
        "models": [_model_row(r, m) for m in r.models],
        "groups": per_group,
        "details": {m.key: {g: m.scores[g] for g in td.groups} for m in r.models},
        "schedule": r.schedules[variants[0]],
        "schedules": r.schedules,
        "baseline_schedule": r.baseline_schedule,
        "baseline_svd_schedule": r.baseline_svd_schedule,
        "generation": None,  # a run without generated text has none; a source's section replaces it below
        "timing": r.timing,
        "settings": r.settings,
        "mean": _mean(r, per_group),
    }
    report["phases"] = _phases(r, report["mean"])
    report.update(r.sections)
    if r.task.group_name:  # e.g. NER: report["languages"] = {lang: {...}}
        report[r.task.group_name] = per_group
    return report


def _heldout_note(td, unit: str) -> str:
    """``; N train and M unlabeled UNIT with a validation text left out of every other split`` (see
    :mod:`xdistill.data.heldout`), or empty when no text repeats one."""
    dups = [d.counts.get("validation_text_elsewhere") or {} for d in td.groups.values()]
    train, unlabeled = sum(x.get("train", 0) for x in dups), sum(x.get("unlabeled", 0) for x in dups)
    return (f"; {train} train and {unlabeled} unlabeled {unit} with a validation text left out of every other split"
            if train or unlabeled else "")


def _evaluation_note(td, unit: str, metric: str) -> str:
    """``N UNIT; K of them (P%) with a text that also stands in train ...``: the evaluation rows a
    score partly measures memory on (see :func:`xdistill.data.heldout.positions_in`), and where the
    scores without them stand."""
    n = sum(d.counts.get("n_eval", 0) for d in td.groups.values())
    k = sum(d.counts.get("eval_text_in_train", 0) for d in td.groups.values())
    return (f"{n} {unit}; {k} of them ({100 * k / max(n, 1):.1f}%) with a text that also stands in a train file "
            f"(the data set repeats texts across its splits); {metric}_unseen scores the models without them")


def _repeat_note(td) -> str:
    """``; the transfer text repeated K times ...`` when ``--transfer-repeat`` made copies, else empty."""
    k = max((d.counts.get("transfer_repeat", 1) for d in td.groups.values()), default=1)
    return (f"; the transfer text repeated {k} times in shuffled copies (--transfer-repeat, a scaling benchmark: "
            "repeats teach nothing new)") if k > 1 else ""


def _sampling_note(td, sampling: dict | None) -> str:
    """What ``--transfer-with-labeled`` and ``--transfer-lang-temperature`` did to the transfer sets, or empty."""
    note = ""
    if any(d.counts.get("transfer_from_labeled") for d in td.groups.values()):
        note += "; the labeled sentences' text is in the transfer set too (--transfer-with-labeled)"
    for variant, rec in (sampling or {}).items():
        note += (f"; {variant}: each epoch visits {rec['rows_per_epoch']} rows of {rec['rows']}, the languages "
                 f"sampled with temperature {rec['temperature']:g} (--transfer-lang-temperature: rows repeated "
                 + ", ".join(f"{g} x{k}" for g, k in rec["repeats"].items()) + ")")
    return note


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
                        k, f"{k}_unseen", "macro_f1", "precision", "recall"] if c in models.columns]
    ref = r["reference"]
    lines += ["## Models", "", f"Compression is against the teacher and against {ref['name']} ({ref['hub_id']}, "
              f"{ref['parameters'] / 1e6:.1f}M parameters).", "", _table(models[keep], ".2f"), ""]
    d = r["data"]
    lines += ["## Data each model saw", "", f"- Teacher: {d['teacher_saw']}", f"- Student: {d['student_saw']}",
              f"- Baselines: {d['baseline_saw']}", f"- Validation: {d['validation']}",
              f"- Evaluation: {d['evaluation']}", f"- Source: {d['source']}", ""]
    if d.get("missing"):
        lines += [f"Requested but without labeled data in {d['source']}: {', '.join(d['missing'])}.", ""]
    m = r["mean"]
    mean_row = {key: v for key, v in m.items() if isinstance(v, float)}
    lines += ["## Mean over groups" if len(r["groups"]) > 1 else "## Summary", "",
              _table(pd.DataFrame([mean_row], index=["mean"])), ""]
    ph = r.get("phases")
    if ph:
        lines += ["## What each phase gave", ""]
        mp, we = ph["mlm_pretraining"], ph.get("word_embeddings")
        if we:
            lines.append(f"- Teacher word embeddings: {we['method']} of {we['tokens']} tokens of the task text "
                         f"({we['pieces']} subwords, {we['seconds']} s)")
        lines.append("- Teacher MLM pretraining: " + ("none" if not mp else
                     f"{mp['steps']} steps ({mp['epochs']:.2f} epochs over {mp['rows']} rows, {mp['tokens']} tokens) in "
                     f"{mp['minutes']:.1f} min; held-out MLM loss {mp['held_out_loss_first']} -> {mp['held_out_loss_last']} "
                     "nats per masked token"))
        ft = ph["fine_tuning"]
        lines.append(f"- Teacher fine-tuning: {k} {ft[f'teacher_{k}']:.2f} on evaluation (best validation "
                     f"{ft['best_validation'] if ft['best_validation'] is not None else '-'}); {ft['minutes']:.1f} min"
                     + (" (in the earlier run that trained it; reused here)" if ft.get("reused") else ""))
        for x in ph.get("self_training") or []:
            lines.append(f"- Teacher self-training round {x['round']}: fine-tuned again on the labeled and "
                         f"{x['pseudo_labeled_rows']} pseudo-labeled rows (best validation {x['best_validation_score']}); "
                         f"{x['minutes']:.1f} min")
        di = ph["distillation"]
        lines += [f"- Distillation: student {k} {di[f'student_{k}']:.2f} ({100 * (di['student_to_teacher'] or 0):.1f}% of "
                  f"the teacher), {di['gain_over_stronger_baseline']:+.2f} over the stronger no-distillation baseline "
                  f"({di['stronger_baseline']}, {di[f'stronger_baseline_{k}']:.2f}); {di['minutes']:.1f} min", ""]
        if mp and r["teacher"].get("mlm"):
            curve = r["teacher"]["mlm"].get("held_out_loss") or []
            lines += ["Held-out MLM loss by step: " + ", ".join(f"{st}: {v:.3f}" for st, v in curve), ""]
    per = pd.DataFrame(r["groups"]).T
    lines += ["## Per " + ("language" if "languages" in r else "group"), "", _table(per), ""]
    lines += generation_markdown(r, k) + profile_markdown(r)
    enc = d.get("encoding", {})
    trunc = {n: e for n, e in enc.items() if e.get("examples_truncated")}
    if trunc:
        lines += ["## Truncation", "", _table(pd.DataFrame(trunc).T[["examples", "examples_truncated", "tokens_cut"]], ".0f"), ""]
    tm = r["timing"]
    phases = pd.DataFrame({"seconds": tm["seconds"]}).assign(minutes=lambda x: x["seconds"] / 60)
    lines += ["## Timing", "", _table(phases), "",
              f"Total {tm['total_seconds'] / 60:.1f} min; peak RSS {tm['peak_rss_mib']:.0f} MiB; {plural(tm['threads'], 'thread')}"
              + (f" per process, {tm['world_size']} processes (peak RSS "
                 f"{', '.join(f'{x:.0f}' for x in tm['peak_rss_mib_per_process'])} MiB)" if tm.get("world_size", 1) > 1 else "")
              + ".",
              f"Teacher labeling: {_labeling(tm)}; cache {tm.get('cache_mib') or 0:.1f} MiB.", *_live_teacher(tm), ""]
    rows = []
    for variant, sched in r.get("schedules", {"": r["schedule"]}).items():
        rows += [{**{c: s[c] for c in ("step", "epochs", "updates", "best_score", "metric", "seconds")},
                  "student": variant} for s in sched]
    for b in BASELINES:
        rows += [{**{c: s[c] for c in ("step", "epochs", "updates", "best_score", "metric", "seconds")}, "student": b}
                 for s in r.get(f"{b}_schedule") or []]
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


def _labeling(tm: dict) -> str:
    """How the teacher's outputs on the transfer set were had: labeled (tokens/s, padding), read from the
    cache, or partly or wholly copied from earlier caches."""
    rate = (f"{tm['teacher_tokens_per_second'] or 0:.0f} real tokens/s, padding fraction "
            f"{100 * (tm['padding_fraction'] or 0):.1f}%")
    if tm.get("teacher_labeling_cached"):
        return rate + " (read from cache)"
    copied, rows = tm.get("teacher_rows_copied") or 0, tm.get("teacher_rows")
    if copied and copied == rows:
        return f"all {rows:,} rows copied from earlier caches"
    return rate + (f", {copied:,} of {rows:,} rows copied from earlier caches" if copied else "")


def _live_teacher(tm: dict) -> list[str]:
    """The cost of the live teacher (features the cache cannot hold: attention maps, queries, keys, values)."""
    if not tm.get("live_teacher_batches"):
        return []
    return [f"Live teacher (attention maps, queries, keys and values are not cached): {tm['live_teacher_batches']:,} "
            f"batches, {tm['live_teacher_seconds'] / 60:.1f} min of the distillation."]

