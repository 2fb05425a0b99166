"""The distillation run: data, teacher, teacher outputs, student, baseline, evaluation, report.

``run(...)`` is what ``python -m xdistill ner`` calls. Each phase is a small
function; the task-specific parts live in the task adapter.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from datasets import concatenate_datasets

from .adapters import TaskAdapter, make_adapter
from .adapters.base import Encoded
from .cache import inputs_fingerprint, teacher_outputs
from .config import DataArguments, DistillArguments, RunArguments, StudentArguments, TeacherArguments
from .errors import ConfigError
from .data.ner import LanguageData, build_language_data, check_transfer_set, make_source, resolve_languages
from .distill import DistillData, Distiller, make_schedule, student_logits
from .languages import LanguageRegistry
from .report import MBERT_BASE_PARAMETERS, write_report
from .students.bilstm import BiLSTMStudent, prune_vocabulary, svd_embeddings
from .taskspec import TaskSpec
from .teacher import TeacherTrainer, load_tokenizer, predict_logits
from .utils import PhaseTimer, count_parameters, peak_rss_mib

logger = logging.getLogger(__name__)


def _concat(parts):
    return concatenate_datasets(parts) if len(parts) > 1 else parts[0]


def load_data(spec: TaskSpec, dargs: DataArguments, tokenizer, registry: LanguageRegistry):
    """Per-language splits for the requested languages; returns ``(data by lang, missing langs, source)``."""
    source = make_source(dargs, spec, registry)
    langs, missing = resolve_languages(dargs.langs, source, registry)
    logger.info("languages (%d): %s", len(langs), ", ".join(langs))
    data = {}
    for lang in langs:
        data[lang] = build_language_data(lang, source, dargs, tokenizer, registry, use_unlabeled=bool(spec.local.get("unlabeled", False)))
        c = data[lang].counts
        logger.info("%s: train %d, validation %d, labeled %d, teacher labeled %d, transfer %d, eval %d",
                    lang, c["train_sentences"], c["validation"], c["labeled"], c["teacher_labeled"], c["transfer"], c["n_eval"])
    check_transfer_set(data)
    return data, missing, source


def build_student(sargs: StudentArguments, adapter: TaskAdapter, tokenizer, teacher, encodings: list[Encoded],
                  init: str, seed: int) -> BiLSTMStudent:
    """A BiLSTM student over the teacher vocabulary pruned to ``encodings``' tokens.

    ``init="svd"``: embeddings from the SVD of the teacher's input embeddings; ``"random"``: no teacher knowledge.
    """
    kept, vocab_map = prune_vocabulary((ids for enc in encodings for ids in enc.input_ids), len(tokenizer),
                                       tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.all_special_ids)
    emb = None
    if init == "svd":
        emb = svd_embeddings(teacher.get_input_embeddings().weight, kept, sargs.embedding_dim, seed=seed)
    student = BiLSTMStudent.build(vocab_map=vocab_map, student_vocab_size=len(kept), embedding_dim=sargs.embedding_dim,
                               hidden_size=sargs.hidden_size, num_labels=adapter.num_labels,
                               teacher_hidden_size=teacher.config.hidden_size, dropout=sargs.dropout,
                               pooling=adapter.student_pooling, init_embeddings=emb, seed=seed)
    return student.to(compute_device())


def compute_device() -> torch.device:
    """The device ``accelerate`` picks for this process (a GPU when there is one, else the CPU)."""
    from accelerate import PartialState

    return PartialState().device


def evaluate_per_language(adapter: TaskAdapter, eval_enc: dict[str, Encoded], gold: dict[str, list], logits_fn) -> dict:
    """Metric per language: ``{lang: score dict}`` using ``logits_fn(encoded) -> per-row logits``."""
    out = {}
    for lang, enc in eval_enc.items():
        preds = adapter.decode(logits_fn(enc), enc)
        out[lang] = adapter.score(preds, gold[lang])
    return out


def inference_parameters(student) -> int:
    """Parameters used at inference (the stage-1 projection is training-only)."""
    return count_parameters(student) - sum(p.numel() for p in student.projection.parameters())


def run(spec: TaskSpec, dargs: DataArguments, targs: TeacherArguments, sargs: StudentArguments,
        dist: DistillArguments, rargs: RunArguments) -> dict:
    """Run the whole distillation and write ``OUTPUT/report.json``, ``report.md`` and ``student/``."""
    t_start = time.perf_counter()
    timer = PhaseTimer()
    out = Path(rargs.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache_root = Path(rargs.cache_dir) if rargs.cache_dir else out / "cache"
    torch.manual_seed(dargs.seed)
    adapter = make_adapter(spec)
    registry = LanguageRegistry.load()

    with timer.phase("data"):
        tokenizer = load_tokenizer(targs, dargs)
        data, missing, source = load_data(spec, dargs, tokenizer, registry)
        langs = list(data)
        splits = {name: _concat([getattr(d, name) for d in data.values()])
                  for name in ("labeled", "validation", "teacher_labeled", "transfer")}
        enc = {name: adapter.encode(ds, tokenizer, dargs.max_length) for name, ds in splits.items()}
        eval_enc = {lang: adapter.encode(d.evaluation, tokenizer, dargs.max_length) for lang, d in data.items()}
        eval_gold = {lang: adapter.gold(d.evaluation) for lang, d in data.items()}
        validation_gold = adapter.gold(splits["validation"])
    pad_id = tokenizer.pad_token_id

    teacher_desc = (f"{len(splits['teacher_labeled'])} labeled sentences "
                    f"({'all of train minus validation' if dargs.teacher_labeled_per_lang < 0 else f'up to {dargs.teacher_labeled_per_lang}'} per language)")
    with timer.phase("teacher"):
        # What the teacher's training depends on: its options and the exact rows it trains and selects on.
        setup = {"task": spec.name, "labels": list(adapter.labels), "seed": dargs.seed,
                 "teacher": {k: v for k, v in asdict(targs).items() if k not in ("teacher_layer", "label_tokens_per_batch")},
                 "teacher_data": inputs_fingerprint(enc["teacher_labeled"]), "validation": inputs_fingerprint(enc["validation"])}
        trainer = TeacherTrainer(adapter, targs, out, dargs.seed, setup)
        teacher, tinfo = trainer.prepare(tokenizer, enc["teacher_labeled"], enc["validation"], rargs.resume, teacher_desc)
    teacher.eval()

    with timer.phase("teacher_labeling"):
        layer = targs.teacher_layer
        n_layers = int(getattr(teacher.config, "num_hidden_layers", 0))
        if not -(n_layers + 1) <= layer <= n_layers:
            raise ConfigError(f"--teacher-layer {layer}: the teacher has {n_layers} layers; expected -{n_layers + 1}..{n_layers} "
                              "(0 is the embedding output, -1 the last layer)")
        common = dict(model=teacher, adapter=adapter, cache_root=cache_root, teacher_fingerprint=tinfo.fingerprint,
                      layer=layer, pad_id=pad_id, max_tokens=targs.label_tokens_per_batch)
        transfer_out, label_stats = teacher_outputs(encoded=enc["transfer"], name="transfer", **common)
        val_out, _ = teacher_outputs(encoded=enc["validation"], name="validation", **common)

    with timer.phase("distillation"):
        student = build_student(sargs, adapter, tokenizer, teacher,
                                [enc["labeled"], enc["transfer"], enc["teacher_labeled"]], "svd", dargs.seed)
        ddata = DistillData(transfer=enc["transfer"], transfer_teacher=transfer_out, labeled=enc["labeled"],
                            validation=enc["validation"], validation_teacher=val_out, validation_gold=validation_gold)
        steps = make_schedule(student, dist.stage_names, dist.gradual_unfreezing)
        distiller = Distiller(student, adapter, dist, ddata, out / "checkpoints" / "student", pad_id, dargs.seed)
        schedule = distiller.run(steps, dist.max_epochs, resume=rargs.resume)

    with timer.phase("baseline"):
        baseline = build_student(sargs, adapter, tokenizer, teacher,
                                 [enc["labeled"], enc["transfer"], enc["teacher_labeled"]], "random", dargs.seed)
        bdata = DistillData(transfer=None, transfer_teacher=None, labeled=enc["labeled"], validation=enc["validation"],
                            validation_teacher=None, validation_gold=validation_gold)
        bsteps = make_schedule(baseline, ["labeled"], gradual=False)
        bdist = Distiller(baseline, adapter, replace(dist, patience=dist.baseline_patience), bdata, out / "checkpoints" / "baseline", pad_id, dargs.seed, name="baseline")
        baseline_schedule = bdist.run(bsteps, dist.baseline_max_epochs, resume=rargs.resume)

    with timer.phase("evaluation"):
        scores = {
            "teacher": evaluate_per_language(adapter, eval_enc, eval_gold, lambda e: predict_logits(teacher, adapter, e, pad_id)),
            "student": evaluate_per_language(adapter, eval_enc, eval_gold, lambda e: student_logits(student, adapter, e, pad_id)),
            "baseline": evaluate_per_language(adapter, eval_enc, eval_gold, lambda e: student_logits(baseline, adapter, e, pad_id)),
        }

    student_dir = out / "student"
    with timer.phase("save"):
        extra = {"task": spec.name, "task_type": spec.type, "labels": list(adapter.labels), "max_length": dargs.max_length,
                 "languages": langs, "teacher": tinfo.source, "teacher_trained_from_scratch": tinfo.trained_from_scratch}
        student.eval()
        student.save(student_dir, tokenizer=tokenizer, extra=extra)  # save() moves tensors to the CPU

    timing = {
        "seconds": {k: round(v, 1) for k, v in timer.seconds.items()},
        "total_seconds": round(time.perf_counter() - t_start, 1),
        "teacher_tokens_per_second": label_stats.get("tokens_per_second"),
        "teacher_labeling_cached": label_stats.get("cached", False),
        "padding_fraction": label_stats.get("padding_fraction"),
        "transfer_tokens": label_stats.get("real_tokens"),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "threads": torch.get_num_threads(),
        "resumed": rargs.resume,
    }
    s_params = count_parameters(student)
    s_inf = inference_parameters(student)
    report = {
        "task": spec.name,
        "task_type": spec.type,
        "metric": f"{adapter.primary_metric} (seqeval entity-level micro F1, %)" if spec.metric == "seqeval" else adapter.primary_metric,
        "preset": rargs.preset,
        "command": " ".join(["python -m xdistill"] + sys.argv[1:]),
        "data": {
            "source": source.name,
            "languages_requested": dargs.langs,
            "languages": langs,
            "languages_missing": missing,
            "teacher_saw": teacher_desc if tinfo.fine_tuned_here else tinfo.labeled_data,
            "student_saw": (f"{len(splits['labeled'])} labeled sentences (up to {dargs.labeled_per_lang} per language) "
                            f"and {len(splits['transfer'])} transfer sentences without labels, labeled by the teacher"),
            "baseline_saw": f"the same {len(splits['labeled'])} labeled sentences only",
            "validation": f"{len(splits['validation'])} sentences held out of train (early stopping, model selection)",
            "per_language": {lang: d.counts for lang, d in data.items()},
            "windows": {name: e.stats for name, e in enc.items()},
        },
        "teacher": {**asdict(tinfo), "description": ("BERT trained from scratch with the mBERT vocabulary (not mBERT)"
                                                     if tinfo.trained_from_scratch else tinfo.source)},
        "student": {
            "architecture": "BiLSTM (XtremeDistil)", "kind": student.kind,
            "embedding_dim": sargs.embedding_dim, "hidden_size": sargs.hidden_size,
            "vocabulary": student.config["student_vocab_size"], "teacher_vocabulary": len(tokenizer),
            "parameters": s_inf, "parameters_with_projection": s_params,
            "compression_vs_teacher": tinfo.parameters / s_inf,
            "compression_vs_mbert_base": MBERT_BASE_PARAMETERS / s_inf,
            "embedding_init": "SVD of the teacher's input embeddings", "path": str(student_dir),
        },
        "baseline": {"description": "the same BiLSTM, random embeddings, trained on the labeled budget only (no teacher)",
                     "parameters": inference_parameters(baseline)},
        "languages": {lang: {"teacher_f1": scores["teacher"][lang]["f1"], "student_f1": scores["student"][lang]["f1"],
                             "baseline_f1": scores["baseline"][lang]["f1"], "n_eval": scores["student"][lang]["n"]}
                      for lang in langs},
        "per_type": {who: {lang: s[lang]["per_type"] for lang in langs} for who, s in scores.items()},
        "schedule": schedule,
        "baseline_schedule": baseline_schedule,
        "timing": timing,
        "settings": {"data": {k: v for k, v in asdict(dargs).items()}, "teacher": asdict(targs),
                     "student": asdict(sargs), "distill": asdict(dist), "run": asdict(rargs)},
    }
    m = {k: float(np.mean([v[k] for v in report["languages"].values()])) for k in ("teacher_f1", "student_f1", "baseline_f1")}
    m["student_to_teacher"] = m["student_f1"] / m["teacher_f1"] if m["teacher_f1"] else None
    m["distillation_gain"] = m["student_f1"] - m["baseline_f1"]
    report["mean"] = m
    write_report(report, out)
    logger.info("mean F1: teacher %.2f, student %.2f, baseline %.2f (student/teacher %.3f); total %.1f min, peak RSS %.0f MiB",
                m["teacher_f1"], m["student_f1"], m["baseline_f1"], m["student_to_teacher"] or 0,
                timing["total_seconds"] / 60, timing["peak_rss_mib"])
    return report
