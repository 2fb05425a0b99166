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
from .config import DistillArguments, GenerationArguments, RunArguments, StudentArguments, TeacherArguments
from .data.tasks import load_task_data
from .errors import ConfigError
from .generation import generate_transfer_text
from .distill import DistillData, Distiller, make_schedule, student_logits
from .languages import LanguageRegistry
from .model_card import write_model_card, write_training_summary
from .report import MBERT_BASE_PARAMETERS, write_report
from .students.bilstm import BiLSTMStudent, prune_vocabulary, svd_embeddings
from .taskspec import TaskSpec
from .teacher import TeacherTrainer, load_tokenizer, predict_logits
from .utils import PhaseTimer, count_parameters, peak_rss_mib

logger = logging.getLogger(__name__)


def _concat(parts):
    return concatenate_datasets(parts) if len(parts) > 1 else parts[0]


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
                               pooling=adapter.student_pooling(sargs.pooling), init_embeddings=emb, seed=seed)
    return student.to(compute_device())


def student_dir(out: Path, variant: str, variants: list[str]) -> Path:
    """``OUTPUT/student`` for the first transfer set, ``OUTPUT/student-<set>`` for the others."""
    return out / ("student" if variant == variants[0] else f"student-{variant}")


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


def run(spec: TaskSpec, dargs, targs: TeacherArguments, sargs: StudentArguments,
        dist: DistillArguments, rargs: RunArguments, gargs: GenerationArguments | None = None,
        command: str | None = None) -> dict:
    """Run the whole distillation and write ``OUTPUT/report.json``, ``report.md`` and ``student/``.

    ``dargs`` is a :class:`DataArguments` (NER) or :class:`TextDataArguments` (classification);
    ``gargs`` adds generated transfer text and selects the transfer sets (one student each).
    ``command`` is the command line recorded in the report (default: this process's arguments).
    """
    t_start = time.perf_counter()
    timer = PhaseTimer()
    out = Path(rargs.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache_root = Path(rargs.cache_dir) if rargs.cache_dir else out / "cache"
    torch.manual_seed(dargs.seed)
    adapter = make_adapter(spec)
    registry = LanguageRegistry.load()
    variants = gargs.transfer_sets if gargs else ["unlabeled"]

    with timer.phase("data"):
        tokenizer = load_tokenizer(targs, dargs)
        td = load_task_data(spec, dargs, registry, tokenizer)
        data = td.groups
        groups = list(data)
        splits = {name: _concat([getattr(d, name) for d in data.values()])
                  for name in ("labeled", "validation", "teacher_labeled", "transfer")}
        enc = {name: adapter.encode(ds, tokenizer, dargs.max_length) for name, ds in splits.items()}
        eval_enc = {g: adapter.encode(d.evaluation, tokenizer, dargs.max_length) for g, d in data.items()}
        eval_gold = {g: adapter.gold(d.evaluation) for g, d in data.items()}
        validation_gold = adapter.gold(splits["validation"])
    pad_id = tokenizer.pad_token_id
    unit = td.unit

    teacher_desc = f"{len(splits['teacher_labeled'])} labeled {unit} ({td.teacher_budget})"
    with timer.phase("teacher"):
        # What the teacher's training depends on: its options and the exact rows it trains and selects on.
        setup = {"task": spec.name, "labels": list(adapter.labels), "seed": dargs.seed,
                 "teacher": {k: v for k, v in asdict(targs).items() if k not in ("teacher_layer", "label_tokens_per_batch")},
                 "teacher_data": inputs_fingerprint(enc["teacher_labeled"]), "validation": inputs_fingerprint(enc["validation"])}
        trainer = TeacherTrainer(adapter, targs, out, dargs.seed, setup)
        teacher, tinfo = trainer.prepare(tokenizer, enc["teacher_labeled"], enc["validation"], rargs.resume, teacher_desc)
    teacher.eval()

    generation = None
    union = enc["transfer"]
    if gargs is not None and gargs.augment == "generate":
        with timer.phase("generation"):
            train_texts = adapter.texts(splits["labeled"]) + adapter.texts(splits["transfer"])
            eval_texts = [t for d in data.values() for t in adapter.texts(d.evaluation)]
            gen_texts, gen_rep = generate_transfer_text(gargs, tokenizer, train_texts, eval_texts, out, dargs.seed)
            generation = asdict(gen_rep)
            if not gen_texts:
                raise ConfigError("--augment generate: every generated text was filtered out; lower --min-words, "
                                  "raise --near-duplicate or --generate")
            enc["generated"] = adapter.encode(adapter.unlabeled_dataset(gen_texts), tokenizer, dargs.max_length)
            union = Encoded.concat([enc["transfer"], enc["generated"]])

    with timer.phase("teacher_labeling"):
        layer = targs.teacher_layer
        n_layers = int(getattr(teacher.config, "num_hidden_layers", 0))
        if not -(n_layers + 1) <= layer <= n_layers:
            raise ConfigError(f"--teacher-layer {layer}: the teacher has {n_layers} layers; expected -{n_layers + 1}..{n_layers} "
                              "(0 is the embedding output, -1 the last layer)")
        common = dict(model=teacher, adapter=adapter, cache_root=cache_root, teacher_fingerprint=tinfo.fingerprint,
                      layer=layer, pad_id=pad_id, max_tokens=targs.label_tokens_per_batch)
        union_out, label_stats = teacher_outputs(encoded=union, name="transfer", **common)
        val_out, _ = teacher_outputs(encoded=enc["validation"], name="validation", **common)
        n_u = len(enc["transfer"])
        transfer_sets = {"unlabeled": (enc["transfer"], union_out.rows(range(n_u)))}
        if "generated" in enc:
            transfer_sets["generated"] = (enc["generated"], union_out.rows(range(n_u, len(union))))
            transfer_sets["both"] = (union, union_out)

    vocab_sources = [enc["labeled"], union, enc["teacher_labeled"]]
    students, schedules = {}, {}
    with timer.phase("distillation"):
        for variant in variants:
            t_enc, t_out = transfer_sets[variant]
            student = build_student(sargs, adapter, tokenizer, teacher, vocab_sources, "svd", dargs.seed)
            ddata = DistillData(transfer=t_enc, transfer_teacher=t_out, labeled=enc["labeled"], validation=enc["validation"],
                                validation_teacher=val_out, validation_gold=validation_gold)
            steps = make_schedule(student, dist.stage_names, dist.gradual_unfreezing)
            ckpt = out / "checkpoints" / ("student" if variant == variants[0] else f"student-{variant}")
            distiller = Distiller(student, adapter, dist, ddata, ckpt, pad_id, dargs.seed, name=f"student[{variant}]")
            schedules[variant] = distiller.run(steps, dist.max_epochs, resume=rargs.resume)
            students[variant] = student

    with timer.phase("baseline"):
        baseline = build_student(sargs, adapter, tokenizer, teacher, vocab_sources, "random", dargs.seed)
        bdata = DistillData(transfer=None, transfer_teacher=None, labeled=enc["labeled"], validation=enc["validation"],
                            validation_teacher=None, validation_gold=validation_gold)
        bsteps = make_schedule(baseline, ["labeled"], gradual=False)
        bdist = Distiller(baseline, adapter, replace(dist, patience=dist.baseline_patience), bdata,
                          out / "checkpoints" / "baseline", pad_id, dargs.seed, name="baseline")
        baseline_schedule = bdist.run(bsteps, dist.baseline_max_epochs, resume=rargs.resume)

    with timer.phase("evaluation"):
        scores = {"teacher": evaluate_per_language(adapter, eval_enc, eval_gold, lambda e: predict_logits(teacher, adapter, e, pad_id))}
        for variant, st in students.items():
            scores[variant] = evaluate_per_language(adapter, eval_enc, eval_gold,
                                                    lambda e, st=st: student_logits(st, adapter, e, pad_id))
        scores["baseline"] = evaluate_per_language(adapter, eval_enc, eval_gold, lambda e: student_logits(baseline, adapter, e, pad_id))

    with timer.phase("save"):
        extra = {"task": spec.name, "task_file": spec.path, "task_type": spec.type, "labels": list(adapter.labels), "max_length": dargs.max_length,
                 "groups": groups, "teacher": tinfo.source, "teacher_trained_from_scratch": tinfo.trained_from_scratch,
                 "teacher_path": tinfo.path}
        for variant, st in students.items():
            st.eval()
            # save() moves tensors to the CPU
            st.save(student_dir(out, variant, variants), tokenizer=tokenizer, extra={**extra, "transfer": variant})

    report = build_report(spec, adapter, td, rargs, dargs, targs, sargs, dist, gargs, tinfo, splits, enc, students,
                          baseline, scores, schedules, baseline_schedule, generation, timer, label_stats, t_start,
                          tokenizer, out, command)
    write_report(report, out)
    for variant in variants:  # the model card of each saved student (task, data, metrics, size)
        write_training_summary(student_dir(out, variant, variants), report, variant)
        write_model_card(student_dir(out, variant, variants))
    m, k = report["mean"], adapter.primary_metric
    logger.info("mean %s: teacher %.2f, student %.2f, baseline %.2f (student/teacher %.3f); total %.1f min, peak RSS %.0f MiB",
                k, m[f"teacher_{k}"], m[f"student_{k}"], m[f"baseline_{k}"], m["student_to_teacher"] or 0,
                report["timing"]["total_seconds"] / 60, report["timing"]["peak_rss_mib"])
    return report


def build_report(spec, adapter, td, rargs, dargs, targs, sargs, dist, gargs, tinfo, splits, enc, students, baseline,
                 scores, schedules, baseline_schedule, generation, timer, label_stats, t_start, tokenizer, out,
                 command: str | None = None) -> dict:
    """The ``report.json`` dictionary (see the README for its fields)."""
    k = adapter.primary_metric
    variants = list(students)
    first = students[variants[0]]
    groups = list(td.groups)
    unit = td.unit
    timing = {
        "seconds": {name: round(v, 1) for name, v in timer.seconds.items()},
        "total_seconds": round(time.perf_counter() - t_start, 1),
        "teacher_tokens_per_second": label_stats.get("tokens_per_second"),
        "teacher_labeling_cached": label_stats.get("cached", False),
        "padding_fraction": label_stats.get("padding_fraction"),
        "transfer_tokens": label_stats.get("real_tokens"),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "threads": torch.get_num_threads(),
        "resumed": rargs.resume,
    }
    s_inf = first.inference_parameters()
    n_u, n_g = len(enc["transfer"]), len(enc.get("generated", ()))
    transfer_sizes = {v: {"unlabeled": n_u, "generated": n_g, "both": n_u + n_g}[v] for v in variants}
    per_group = {}
    for g in groups:
        row = {f"teacher_{k}": scores["teacher"][g][k], f"student_{k}": scores[variants[0]][g][k],
               f"baseline_{k}": scores["baseline"][g][k], "n_eval": scores["teacher"][g]["n"]}
        for v in variants[1:]:
            row[f"student_{v}_{k}"] = scores[v][g][k]
        per_group[g] = row
    mean = {key: float(np.mean([r[key] for r in per_group.values()])) for key in next(iter(per_group.values())) if key != "n_eval"}
    mean["student_to_teacher"] = mean[f"student_{k}"] / mean[f"teacher_{k}"] if mean[f"teacher_{k}"] else None
    mean["distillation_gain"] = mean[f"student_{k}"] - mean[f"baseline_{k}"]
    if "generated" in variants or "both" in variants:
        base = mean[f"student_{k}"] if variants[0] == "unlabeled" else None
        mean["generated_vs_unlabeled"] = {v: (mean[f"student_{v}_{k}"] if v != variants[0] else mean[f"student_{k}"]) - base
                                          for v in variants if v != "unlabeled"} if base is not None else None

    def model_row(name, description, params, transfer, key):
        row = {"model": name, "description": description, "transfer": transfer, "parameters": params,
               "compression_vs_teacher": tinfo.parameters / params, "compression_vs_mbert_base": MBERT_BASE_PARAMETERS / params}
        row.update({m: float(np.mean([scores[key][g][m] for g in groups])) for m in scores[key][groups[0]]
                    if isinstance(scores[key][groups[0]][m], float)})
        return row

    teacher_description = ("BERT trained from scratch with the mBERT vocabulary (not mBERT)"
                           if tinfo.trained_from_scratch else tinfo.source)
    models = [model_row("teacher", teacher_description, tinfo.parameters, "-", "teacher"),
              model_row("student (no distillation)", "BiLSTM, random embeddings, labeled budget only",
                        baseline.inference_parameters(), "-", "baseline")]
    for v in variants:
        models.append(model_row(f"student (distilled, {v})", f"BiLSTM E={sargs.embedding_dim} H={sargs.hidden_size}",
                                students[v].inference_parameters(), v, v))
    report = {
        "task": spec.name,
        "task_type": spec.type,
        "metric": k,
        "metric_description": ("seqeval entity-level micro F1, %" if spec.metric == "seqeval" else f"{k}, %"),
        "preset": rargs.preset,
        "command": command or " ".join(["python -m xdistill"] + sys.argv[1:]),
        "data": {
            "source": td.source,
            "requested": td.requested,
            "groups": groups,
            "missing": td.missing,
            "teacher_saw": (f"{len(splits['teacher_labeled'])} labeled {unit} ({td.teacher_budget})" if tinfo.fine_tuned_here
                            else tinfo.labeled_data),
            "student_saw": (f"{len(splits['labeled'])} labeled {unit} ({td.student_budget}) and transfer text without "
                            f"labels, labeled by the teacher: {len(transfer_sizes)} sets ("
                            + ", ".join(f"{v}: {n} rows" for v, n in transfer_sizes.items()) + ")"),
            "baseline_saw": f"the same {len(splits['labeled'])} labeled {unit} only",
            "validation": f"{len(splits['validation'])} {unit} held out of train (early stopping, model selection)",
            "per_group": {g: d.counts for g, d in td.groups.items()},
            "encoding": {name: e.stats for name, e in enc.items()},
        },
        "teacher": {**asdict(tinfo), "description": teacher_description},
        "student": {
            "architecture": "BiLSTM (XtremeDistil)", "kind": first.kind,
            "embedding_dim": sargs.embedding_dim, "hidden_size": sargs.hidden_size,
            "pooling": first.config.get("pooling", "none"),
            "vocabulary": first.config["student_vocab_size"], "teacher_vocabulary": len(tokenizer),
            "parameters": s_inf, "parameters_with_projection": count_parameters(first),
            "compression_vs_teacher": tinfo.parameters / s_inf,
            "compression_vs_mbert_base": MBERT_BASE_PARAMETERS / s_inf,
            "embedding_init": "SVD of the teacher's input embeddings", "path": str(out / "student"),
            "transfer": variants[0],
        },
        "baseline": {"description": "the same BiLSTM, random embeddings, trained on the labeled budget only (no teacher)",
                     "parameters": baseline.inference_parameters()},
        "models": models,
        "groups": per_group,
        "details": {who: {g: s[g] for g in groups} for who, s in scores.items()},
        "schedule": schedules[variants[0]],
        "schedules": schedules,
        "baseline_schedule": baseline_schedule,
        "generation": generation,
        "timing": timing,
        "settings": {"data": asdict(dargs), "teacher": asdict(targs), "student": asdict(sargs), "distill": asdict(dist),
                     "generation": asdict(gargs) if gargs else None, "run": asdict(rargs)},
        "mean": mean,
    }
    if td.group_name:  # e.g. NER: report["languages"] = {lang: {...}}
        report[td.group_name] = per_group
    return report
