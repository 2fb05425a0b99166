"""The report of a zero-shot run (``report.json``, ``report.md``): the teacher, the zero-shot students
(OOD text only; with adversarial examples), and for reference the usual distilled student and the
no-distillation baselines of the run that trained the teacher, when its report is next to it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..teachers import ReferenceModel, TeacherInfo
from ..utils import atomic_write_json, atomic_write_text
from .results import TaskInfo

#: what each zero-shot student learned from
VARIANT_NAMES = {"ood": "student (zero-shot, OOD text)", "adversarial": "student (zero-shot, OOD text + adversarial)"}
#: the rows of the teacher's own run that the report shows for reference
REFERENCE_PREFIXES = ("student (distilled", "student (no distillation")


@dataclass
class ZeroShotResult:
    """What a zero-shot run produced (the input of :func:`build_zero_shot_report`).

    Attributes:
        task: the task; groups: its groups (languages); preset, command: how it was run.
        teacher, reference: the teacher and the pretrained model compression is measured against.
        students: variant (``ood``, ``adversarial``) -> the student; scores: model key -> group -> the
            adapter's scores (``teacher`` and each variant); schedules: variant -> step results.
        stages: the stages that ran; ood: what the OOD text was (sources, removals, sizes);
            ood_rows: encoded rows for training and validation.
        generator: the adversarial generator (source, parameters, its MLM training) or ``None``;
            adversarial: the plugin's stats or ``None``.
        teacher_saw: what the teacher was trained on; references: rows of the teacher's own run.
        agreement: variant -> the task metric of the student against the teacher's predictions on the
            held-out OOD rows (%).
        timing: seconds per phase, total, peak RSS (MiB), threads; settings: every option.
    """

    task: TaskInfo
    preset: str
    command: str
    groups: list[str]
    teacher: TeacherInfo
    reference: ReferenceModel
    students: dict
    scores: dict[str, dict]
    schedules: dict[str, list]
    stages: list[str]
    ood: dict
    ood_rows: dict[str, int]
    generator: dict | None
    adversarial: dict | None
    teacher_saw: str
    references: list[dict] = field(default_factory=list)
    agreement: dict[str, float] = field(default_factory=dict)
    timing: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)


def reference_rows(teacher: str | None, task: str) -> list[dict]:
    """The usual distilled student and the baselines of the run whose ``teacher/`` folder is ``teacher``
    (``TEACHER/../report.json`` of the same task), as that run reported them, with their training
    minutes; ``[]`` when there is no such report."""
    if not teacher or not (Path(teacher).parent / "report.json").is_file():
        return []
    path = Path(teacher).parent / "report.json"
    rep = json.loads(path.read_text(encoding="utf-8"))
    if rep.get("task") != task:
        return []
    k, sec = rep["metric"], rep.get("timing", {}).get("seconds", {})
    minutes = {"student (distilled": sec.get("distillation", 0.0) + sec.get("teacher_labeling", 0.0),
               "student (no distillation)": sec.get("baseline", 0.0),
               "student (no distillation, SVD embeddings)": sec.get("baseline_svd", 0.0)}
    rows = []
    for m in rep["models"]:
        if m["model"].startswith(REFERENCE_PREFIXES):
            key = next((p for p in minutes if m["model"].startswith(p)), None)
            rows.append({"model": f"{m['model']} [reference]", "description": f"{m['description']}; from {path}",
                         k: m[k], "parameters": m["parameters"], "minutes": round(minutes.get(key, 0.0) / 60, 2)})
    return rows


def summarise_sources(sources: dict[str, int]) -> dict[str, str]:
    """Texts per source for a sentence: files of a keyword (``leipzig:de``, ``leipzig:fr``) summed under
    the keyword with their count of languages; other sources as they are."""
    out: dict[str, list[int]] = {}
    for name, n in sources.items():
        key = name.split(":")[0] if ":" in name and not name.startswith("hub:") else name
        out.setdefault(key, []).append(n)
    return {k: f"{sum(v)}" + (f" texts in {len(v)} languages" if len(v) > 1 else "") for k, v in out.items()}


def _mean(r: ZeroShotResult, key: str) -> float:
    k = r.task.metric
    return float(np.mean([r.scores[key][g][k] for g in r.groups]))


def _models(r: ZeroShotResult) -> list[dict]:
    k, sec = r.task.metric, r.timing.get("seconds", {})
    teacher = _mean(r, "teacher")
    rows = [{"model": "teacher", "description": r.teacher.description or r.teacher.source, k: teacher,
             "parameters": r.teacher.parameters, "minutes": round(sec.get("teacher", 0.0) / 60, 2)}]
    labeling = sec.get("ood_text", 0.0) + sec.get("teacher_labeling", 0.0)
    for v, st in r.students.items():
        extra = sec.get("generator", 0.0) if v == "adversarial" else 0.0
        described = st.describe()
        rows.append({"model": VARIANT_NAMES[v], "description": f"{described['architecture']} {described['summary']}", k: _mean(r, v), "parameters": st.inference_parameters(),
                     "minutes": round((sec.get(f"student_{v}", 0.0) + labeling + extra) / 60, 2)})
    rows += r.references
    for row in rows:
        row["percent_of_teacher"] = 100 * row[k] / teacher if teacher else None
        row["compression_vs_teacher"] = r.teacher.parameters / row["parameters"]
    return rows


def build_zero_shot_report(r: ZeroShotResult) -> dict:
    """The ``report.json`` dictionary of a zero-shot run."""
    k, unit = r.task.metric, r.task.unit
    groups = {g: {f"teacher_{k}": r.scores["teacher"][g][k], **{f"{v}_{k}": r.scores[v][g][k] for v in r.students},
                  "n_eval": r.scores["teacher"][g]["n"]} for g in r.groups}
    mean = {f"teacher_{k}": _mean(r, "teacher"), **{f"{v}_{k}": _mean(r, v) for v in r.students}}
    for v in r.students:
        mean[f"{v}_to_teacher"] = mean[f"{v}_{k}"] / mean[f"teacher_{k}"] if mean[f"teacher_{k}"] else None
    mean.update({f"{v}_agreement_on_ood": x for v, x in r.agreement.items()})
    if "adversarial" in r.students:
        mean["adversarial_gain"] = mean[f"adversarial_{k}"] - mean[f"ood_{k}"]
    sources = ", ".join(f"{n}: {c}" for n, c in summarise_sources(r.ood["sources"]).items())
    saw = (f"{r.ood_rows['train']} rows of out-of-domain text ({r.ood['train_texts']} texts; sources: {sources}) with the "
           "teacher's outputs" + (", and those rows perturbed by the adversarial generator (the teacher run live on "
                                   "them)" if "adversarial" in r.students else "")
           + f"; no text and no labels of the task (the task's evaluation {unit} score it after training)")
    return {
        "task": r.task.name, "task_type": r.task.type, "metric": k, "metric_description": r.task.metric_description,
        "method": "zero-shot distillation (Rashid et al. 2021)" + (" with adversarial examples (MATE-KD)"
                                                                    if "adversarial" in r.students else ""),
        "preset": r.preset, "command": r.command,
        "data": {"groups": r.groups, "teacher_saw": r.teacher_saw, "student_saw": saw,
                 "validation": f"{r.ood_rows['validation']} rows of OOD text held out ({r.ood['validation_texts']} texts): "
                               "model selection and early stopping by agreement with the teacher"},
        "teacher": asdict(r.teacher),
        "reference": {"key": r.reference.key, "name": r.reference.name, "parameters": r.reference.parameters},
        "stages": r.stages, "labeled_stage": False,
        "models": _models(r), "groups": groups, "mean": mean,
        "ood": r.ood, "generator": r.generator, "adversarial": r.adversarial,
        "schedules": r.schedules, "timing": r.timing, "settings": r.settings,
        **({r.task.group_name: groups} if r.task.group_name else {}),
    }


def render_zero_shot_markdown(rep: dict) -> str:
    """The zero-shot report as Markdown: models, what each saw, mean and per-group scores, OOD text,
    the generator, timing."""
    k = rep["metric"]
    models = pd.DataFrame(rep["models"]).set_index("model")
    cols = ["description", k, "percent_of_teacher", "parameters", "compression_vs_teacher", "minutes"]
    d, o, tm = rep["data"], rep["ood"], rep["timing"]
    lines = [f"# xdistill report: {rep['task']}, {rep['method']} ({rep['preset']} preset)", "",
             f"Command: `{rep['command']}`", "", f"Metric: {rep['metric_description']}.", "", "## Models", "",
             models[cols].to_markdown(floatfmt=".2f"), "", "## Data each model saw", "",
             f"- Teacher: {d['teacher_saw']}", f"- Zero-shot students: {d['student_saw']}",
             f"- Validation: {d['validation']}", f"- Stages: {', '.join(rep['stages'])} (no labeled stage)", "",
             "## Mean over groups", "", pd.DataFrame([rep["mean"]], index=["mean"]).to_markdown(floatfmt=".4g"), ""]
    if len(rep["groups"]) > 1:
        lines += ["## Per group", "", pd.DataFrame(rep["groups"]).T.to_markdown(floatfmt=".2f"), ""]
    lines += ["## Out-of-domain text", "", "Sources: " + ", ".join(f"{k} ({v})" for k, v in
                                                     summarise_sources(o["sources"]).items()) + ".",
              f"Removed: {json.dumps(o['removed'])}; missing: {', '.join(o['missing']) or 'none'}.",
              f"{o['train_texts']} texts for training, {o['validation_texts']} held out; mean {o['mean_words']:.1f} words.",
              "The teacher's labels on the held-out texts: " + ", ".join(
                  f"{k} {100 * v:.1f}%" for k, v in (o.get("teacher_labels_on_held_out") or {}).items()) + ".", ""]
    g, a = rep.get("generator"), rep.get("adversarial")
    if g and a:
        rounds = a.get("rounds") or []
        lines += ["## Adversarial examples (MATE-KD)", "", f"Generator: {g['source']} ({g['parameters'] / 1e6:.1f}M "
                  f"parameters). {a['generator_updates']} generator updates in {len(rounds)} rounds, "
                  f"{a['perturbed_batches']} perturbed student batches; KL(teacher || student) on perturbed rows, "
                  f"first round {rounds[0][0] if rounds else '-'} -> last round "
                  f"{rounds[-1][1] if rounds else '-'}; {a['generator_seconds'] / 60:.1f} min in generator rounds, "
                  f"{a['perturbed_seconds'] / 60:.1f} min on perturbed rows.", ""]
    phases = pd.DataFrame({"seconds": tm["seconds"]}).assign(minutes=lambda x: x["seconds"] / 60)
    lines += ["## Timing", "", phases.to_markdown(floatfmt=".1f"), "",
              f"Total {tm['total_seconds'] / 60:.1f} min; peak RSS {tm['peak_rss_mib']:.0f} MiB; {tm['threads']} threads.", ""]
    return "\n".join(lines)


def write_zero_shot_report(report: dict, out_dir: str | Path) -> None:
    """Write ``report.json`` and ``report.md`` atomically into ``out_dir``."""
    out = Path(out_dir)
    atomic_write_json(out / "report.json", report)
    atomic_write_text(out / "report.md", render_zero_shot_markdown(report))
