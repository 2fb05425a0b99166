"""Zero-shot distillation (Rashid, Lioutas, Ghaddar & Rezagholizadeh, EMNLP 2021, arXiv 2012.15495):
``python -m xdistill ner|classify --zero-shot --ood-text ... [--adversarial]``.

The teacher is given (``--teacher DIR``) or, for a benchmark, fine-tuned here on the task as usual.
The student never sees the task's text or labels: it learns from the teacher's outputs on
out-of-domain text (:mod:`xdistill.transfer.ood`), cached once, and with ``--adversarial`` also on
that text perturbed by a masked-language-model generator that seeks where teacher and student
disagree (MATE-KD, :mod:`xdistill.distill.adversarial`; the teacher runs live on perturbed rows).
Stages that train on labeled data are off; model selection and early stopping use the student's
agreement with the teacher on a held-out part of the OOD text (entity F1 or accuracy against the
teacher's own predictions, or the stage's loss). The task's evaluation split scores the models at
the end, as in any run.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from ..adapters import TaskAdapter
from ..config import RunSettings
from ..data.types import Encoded
from ..distill import DataSource, DistillData, Distiller, Stage, build_stages, distill_schedule
from ..distill.adversarial import AdversarialExamples, AdversarialOptions
from ..errors import ConfigError
from ..reporting import TaskInfo
from ..reporting.zero_shot import ZeroShotResult, build_zero_shot_report, reference_rows, write_zero_shot_report
from ..teachers.build import planned_teacher
from ..teachers.generator import prepare_generator
from ..transfer.ood import OODText, read_ood_text
from ..utils import peak_rss_mib
from .folder import RunFolder
from .launch import check_launch
from .run import (Run, check_against_teacher, check_settings, evaluate, label_stage_features,
                  make_trainee, prepare_data, prepare_teacher, save_students, stage_context, stage_names, targets)

logger = logging.getLogger(__name__)


@dataclass
class ZeroShotRun(Run):
    """A :class:`~xdistill.pipeline.run.Run` with the OOD text, its encodings and the teacher's
    predictions on its held-out part (the validation "gold": agreement with the teacher)."""

    ood: OODText | None = None
    ood_enc: Encoded | None = None
    ood_val_enc: Encoded | None = None
    val_gold: list = field(default_factory=list)
    generator: torch.nn.Module | None = None
    generator_info: dict | None = None

    @property
    def variants(self) -> list[str]:
        return self.settings.zero_shot.variants


def transfer_stages(stages: list[Stage], explicit: bool) -> list[Stage]:
    """The stages that train on transfer text (zero-shot has no labeled data), each selected by its loss
    on the held-out OOD rows: agreement with the teacher's outputs there (a task metric against the
    teacher's predictions can sit at 0 for a whole step, e.g. entity F1 where the teacher finds few
    entities, and would then keep the step's starting state).

    Raises:
        ConfigError: ``--stages`` named (``explicit``) a stage on labeled data.
    """
    labeled = [st.name for st in stages if st.data != "transfer"]
    if labeled and explicit:
        raise ConfigError(f"--stages: {', '.join(labeled)} trains on the task's labeled data, which zero-shot "
                          "distillation does not use; expected stages on transfer text only (e.g. representation,logits)")
    return [replace(st, select_by="loss") for st in stages if st.data == "transfer"]


def zero_shot_stages(r: Run, teacher) -> list[Stage]:
    """The run's stages for ``teacher`` (the real one, or the planned one of an early check), without
    those on labeled data."""
    s = r.settings
    stages = build_stages(stage_names(s), s.distill, stage_context(teacher, s))
    return transfer_stages(stages, explicit=s.distill.stages.strip() != "auto")


#: the task's splits an OOD text must not repeat: every labeled text (the teacher's, the student's budget,
#: validation); the evaluation split is checked too. Not the transfer split: a regular run's unlabeled
#: text, which for NER is the Leipzig and Tatoeba text that serves as OOD text here (the task data is
#: loaded as in a regular run, so that the evaluation sample is the same).
TASK_SPLITS = ("labeled", "validation", "teacher_labeled")


def prepare_ood(r: ZeroShotRun) -> None:
    """Read, filter (against the task's labeled and evaluation text) and encode the OOD text."""
    s, a = r.settings, r.adapter
    eval_texts = [t for g in r.data.groups.values() for t in a.texts(g.evaluation)]
    task_texts = [t for split in TASK_SPLITS for t in a.texts(r.splits[split])] + eval_texts
    r.ood = read_ood_text(s.zero_shot, list(r.data.groups), s.data.data_dir, task_texts, eval_texts, s.data.seed,
                          words=a.words)
    r.ood_enc = a.encode(a.from_texts(r.ood.train), r.tokenizer, s.data.max_length, "OOD text")
    r.ood_val_enc = a.encode(a.from_texts(r.ood.validation), r.tokenizer, s.data.max_length, "OOD validation")


def teacher_predictions(r: ZeroShotRun) -> None:
    """The teacher's predictions on the held-out OOD rows: the "gold" that model selection measures
    the student's agreement with (entity F1 or accuracy against the teacher)."""
    a = r.adapter
    r.val_gold = a.decode(r.teacher.logits(a.level, r.ood_val_enc, r.pad_id), r.ood_val_enc)
    labels = Counter(x for pred in r.val_gold for x in (pred if isinstance(pred, list) else [pred]))
    total = sum(labels.values()) or 1
    r.ood.teacher_labels = {str(k): round(v / total, 4) for k, v in sorted(labels.items(), key=lambda kv: str(kv[0]))}


def adversarial_plugin(r: ZeroShotRun) -> AdversarialExamples:
    """MATE-KD's plugin over the prepared generator; replacements come from the OOD text's tokens."""
    z, tok = r.settings.zero_shot, r.tokenizer
    seen = sorted({int(i) for ids in (*r.ood_enc.input_ids, *r.ood_val_enc.input_ids) for i in ids}
                  - set(tok.all_special_ids))
    opts = AdversarialOptions(mask_fraction=z.mask_fraction, generator_steps=z.generator_steps,
                              student_steps=z.student_steps, lr=z.adversarial_lr, batch_size=z.adversarial_batch_size,
                              weight=z.adversarial_weight, gumbel_temperature=z.gumbel_temperature,
                              temperature=r.settings.distill.temperature)
    return AdversarialExamples(r.teacher, r.generator, torch.tensor(seen), tok.mask_token_id, tok.all_special_ids,
                               r.adapter.level, opts)


def distill_zero_shot(r: ZeroShotRun) -> tuple[dict, dict, dict]:
    """One student per variant (``ood``, ``adversarial``): trainees, schedules, and the adversarial stats."""
    s = r.settings
    if s.distill.transfer_lang_temperature != 1.0:
        logger.info("--transfer-lang-temperature %g: not applied here: the OOD text records no language per text, "
                    "so an epoch visits each OOD row once", s.distill.transfer_lang_temperature)
    rows = [r.ood_enc, r.ood_val_enc]
    trainees, schedules, adversarial = {}, {}, {}
    for variant in r.variants:
        with r.timer.phase(f"student_{variant}"):
            trainee = make_trainee(r, r.teacher.input_embeddings(), rows=rows)
            plugins = [adversarial_plugin(r)] if variant == "adversarial" else []
            data = DistillData({"transfer": DataSource(r.ood_enc, targets(r, r.union_cache))},
                               DataSource(r.ood_val_enc, targets(r, r.validation_cache)), r.val_gold, r.pad_id)
            distiller = Distiller(trainee, r.adapter, s.distill, data, r.out / "checkpoints" / f"student-{variant}",
                                  s.distill.seed(s.data.seed), name=f"student[{variant}]", plugins=plugins)
            schedules[variant] = distiller.run(distill_schedule(trainee, r.stages, s.distill),
                                               s.distill.max_epochs, resume=s.run.resume)
            trainees[variant] = trainee
            if plugins:
                adversarial = plugins[0].stats
    return trainees, schedules, adversarial


def _zero_shot_result(r: ZeroShotRun, trainees: dict, schedules: dict, adversarial: dict, scores: dict,
                      t_start: float, command: str) -> ZeroShotResult:
    s = r.settings
    timing = {"seconds": {k: round(v, 1) for k, v in r.timer.seconds.items()},
              "total_seconds": round(time.perf_counter() - t_start, 1), "peak_rss_mib": round(peak_rss_mib(), 1),
              "threads": torch.get_num_threads(), "teacher_labeling_cached": r.label_stats.get("cached", False),
              "live_teacher_seconds": round(r.live.seconds, 1) if r.live is not None else None}
    students = {v: t.student for v, t in trainees.items()}
    a = r.adapter
    return ZeroShotResult(
        task=TaskInfo(a.spec.name, a.spec.type, a.primary_metric, a.metric_description, a.unit, a.group_name), preset=s.run.preset, command=command, groups=list(r.data.groups), teacher=r.teacher.info,
        reference=r.teacher.reference, students=students, scores=scores, schedules=schedules,
        stages=[st.name for st in r.stages], ood=r.ood.report(), ood_rows={"train": len(r.ood_enc),
                                                                            "validation": len(r.ood_val_enc)},
        generator=r.generator_info, adversarial=adversarial or None, timing=timing, settings=s.as_dict(),
        references=reference_rows(s.teacher.teacher, r.adapter.spec.name), teacher_saw=_teacher_saw(r))


def _teacher_saw(r: ZeroShotRun) -> str:
    info = r.teacher.info
    if info.fine_tuned_here:
        return (f"{len(r.splits['teacher_labeled'])} labeled {r.adapter.unit} of the task ({r.data.teacher_budget}), "
                "fine-tuned here for this benchmark")
    return info.labeled_data or f"given: {info.source}"


def _run(adapter: TaskAdapter, settings: RunSettings, command: str, t_start: float) -> dict:
    r = ZeroShotRun(adapter, settings, Path(settings.run.output_dir))
    torch.manual_seed(settings.data.seed)
    with r.timer.phase("data"):
        prepare_data(r)
        check_against_teacher(r)
        shadow = planned_teacher(settings.teacher, r.tokenizer, list(adapter.labels))
        if shadow is not None:  # a stage on labeled data fails here, before the teacher trains
            zero_shot_stages(r, shadow)
    with r.timer.phase("ood_text"):
        prepare_ood(r)
    with r.timer.phase("teacher"):
        prepare_teacher(r)
    r.stages = zero_shot_stages(r, r.teacher)
    with r.timer.phase("teacher_labeling"):
        teacher_predictions(r)
        label_stage_features(r, r.ood_enc, "ood", r.ood_val_enc, "ood-validation")
    if settings.zero_shot.adversarial:
        with r.timer.phase("generator"):
            r.generator, r.generator_info = prepare_generator(
                settings.zero_shot, settings.teacher, r.tokenizer, r.ood.train, settings.data.max_length, r.out,
                settings.data.seed, settings.run.resume, r.teacher.info)
    trainees, schedules, adversarial = distill_zero_shot(r)
    students = {v: t.student for v, t in trainees.items()}
    with r.timer.phase("evaluation"):
        scores = evaluate(r, students, {})
        a = r.adapter
        agreement = {v: a.score(a.decode(st.logits(a.level, r.ood_val_enc, r.pad_id), r.ood_val_enc), r.val_gold)
                     [a.primary_metric] for v, st in students.items()}
    with r.timer.phase("save"):
        save_students(r, students)
    result = _zero_shot_result(r, trainees, schedules, adversarial, scores, t_start, command)
    result.agreement = agreement
    report = build_zero_shot_report(result)
    write_zero_shot_report(report, r.out)
    return report


def run_zero_shot(adapter: TaskAdapter, settings: RunSettings, command: str | None = None) -> dict:
    """Run zero-shot distillation and write ``OUTPUT/report.json``, ``report.md`` and the students
    (``OUTPUT/student``: on OOD text only; ``OUTPUT/student-adversarial``: with adversarial examples,
    with ``--adversarial``).

    Raises:
        ConfigError: bad options (checked before anything slow runs: stages on labeled data, OOD
            sources that do not exist), a folder in use, or OOD text that is empty after filtering.
        DataFormatError: a malformed OOD or task file.
    """
    t_start = time.perf_counter()
    command = command or " ".join(["python -m xdistill"] + sys.argv[1:])
    check_launch(settings, check_settings(settings))
    with RunFolder(settings.run.output_dir, settings, adapter.spec.path, command):
        report = _run(adapter, settings, command, t_start)
    logger.info("zero-shot: %s", json.dumps(report["mean"]))
    return report
