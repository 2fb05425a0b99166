"""The distillation run: data, teacher, transfer text, teacher outputs, students, baseline,
evaluation, report.

``run(adapter, settings)`` is what ``python -m xdistill ner`` and ``classify`` call. Each phase
is a small function over a :class:`Run` (the state the phases share); the task-specific parts
live in the task adapter, the teacher, the transfer sources, the student factory and the
stage registry, so nothing here branches on the task, the student kind or a stage name.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from .. import parallel
from ..adapters import TaskAdapter
from ..config import RunSettings
from ..data.stored import EncodedWriter, encoded_on_disk, is_on_disk
from ..data.types import Encoded, TaskData
from ..errors import ConfigError
from ..distill import (DataSource, DistillData, Distiller, Match, Stage, StageContext, Trainee, build_stages,
                       check_stage_names, distill_schedule, get_loss, make_schedule)
from ..reporting import (ModelScores, RunResult, TaskInfo, build_report, write_model_card, write_report,
                        write_training_summary)
from ..students import Student, StudentContext, build_student, student_class
from ..teachers import Teacher
from ..teachers.build import SCRATCH_ARCHITECTURES, check_teacher_source, load_tokenizer, planned_teacher
from ..teachers.finetune import TeacherTrainer
from ..teachers.sampling import teacher_training_rows
from ..transfer import (TRANSFER_SETS, TRANSFER_SOURCES, CachedTargets, FeatureCache, LiveTeacherTargets, SplitTargets,
                       TransferContext, inputs_fingerprint, label_rows, resolve_transfer_sets, row_groups,
                       sampled_transfer_rows, set_rows)
from ..transfer.profile import transfer_profiles
from ..utils import PhaseTimer, count_parameters, peak_rss_mib
from .folder import RunFolder, result_settings
from .launch import check_launch, compute_device
from .pretraining_text import check_sources, pretraining_text
from .splits import concat_groups, encode_splits, rows_folder, transfer_split_on_disk
from .teacher_vocab import teacher_vocabulary

logger = logging.getLogger(__name__)


@dataclass
class Run:
    """The state the phases of one run share."""

    adapter: TaskAdapter
    settings: RunSettings
    out: Path
    timer: PhaseTimer = field(default_factory=PhaseTimer)
    tokenizer: object = None
    data: TaskData | None = None
    splits: dict = field(default_factory=dict)
    enc: dict[str, Encoded] = field(default_factory=dict)
    eval_enc: dict[str, Encoded] = field(default_factory=dict)
    eval_gold: dict[str, list] = field(default_factory=dict)
    teacher: Teacher | None = None
    sources: list[str] = field(default_factory=list)
    source_enc: dict[str, Encoded] = field(default_factory=dict)
    source_groups: dict[str, list | None] = field(default_factory=dict)
    union: Encoded | None = None
    sections: dict[str, dict] = field(default_factory=dict)
    stages: list[Stage] = field(default_factory=list)
    union_cache: FeatureCache | None = None
    validation_cache: FeatureCache | None = None
    live: LiveTeacherTargets | None = None
    label_stats: dict = field(default_factory=dict)
    teacher_vocab: dict = field(default_factory=dict)

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id

    @property
    def variants(self) -> list[str]:
        return transfer_sets(self.settings)

    @property
    def source_sizes(self) -> dict[str, int]:
        return {name: len(e) for name, e in self.source_enc.items()}

    def set_encoded(self, variant: str) -> Encoded:
        """The rows of a transfer set: its sources' rows, concatenated in registry order."""
        names = list(TRANSFER_SETS[variant])
        if names == self.sources:  # the union's files (a concatenation would read them into memory)
            return self.union
        parts = [self.source_enc[name] for name in names]
        return parts[0] if len(parts) == 1 else Encoded.concat(parts)

    @property
    def matches(self) -> list[Match]:
        """Every match of the run's stages (the trainees' projections are built for all of them)."""
        return [m for s in self.stages for m in s.matches]


def stage_names(s: RunSettings) -> list[str]:
    """``--stages``, with ``auto`` resolved to the student kind's own stages."""
    return s.distill.stage_names(student_class(s.student.student).default_stages)


def stage_context(t: Teacher, s: RunSettings) -> StageContext:
    """What the stage builders need of the teacher ``t`` and of the student (from its options)."""
    shape = student_class(s.student.student).shape(s.student)
    return StageContext(teacher_layer=t.layer(s.teacher.teacher_layer), teacher_layers=t.num_layers,
                        teacher_heads=t.num_heads, teacher_hidden=t.hidden_size, student_layers=shape.layers,
                        student_heads=shape.heads, student_hidden=shape.hidden)


def transfer_sets(s: RunSettings) -> list[str]:
    """The transfer sets to distil on (``--transfer``; a command without generation options: ``unlabeled``)."""
    return s.generation.transfer_sets if s.generation is not None else ["unlabeled"]


def check_settings(s: RunSettings) -> list[str]:
    """Check what the registries decide, before anything slow runs; returns the transfer sources.

    Raises:
        ConfigError: an unknown student kind, stage, loss, transfer set or scratch architecture, or a
            teacher or tokenizer folder that is missing or holds no checkpoint (naming the option).
    """
    student_class(s.student.student)
    check_teacher_source(s.teacher)
    arch = s.teacher.teacher_architecture
    if s.teacher.from_scratch and arch != "auto" and arch not in SCRATCH_ARCHITECTURES:
        raise ConfigError(f"--teacher-architecture: expected auto or one of {', '.join(SCRATCH_ARCHITECTURES)}, "
                          f"got {arch!r}")
    for option in ("representation_loss", "logits_loss"):
        get_loss(getattr(s.distill, option), "--" + option.replace("_", "-"))
    check_stage_names(stage_names(s))
    check_sources(s.teacher)
    return resolve_transfer_sets(transfer_sets(s), s.generation)


def prepare_data(r: Run) -> None:
    """The tokenizer, every split of every group, and their encodings."""
    s, a = r.settings, r.adapter
    r.tokenizer = load_tokenizer(s.teacher, s.data)
    r.data = a.load_data(s.data)
    r.splits = concat_groups(r.data)
    transfer_split_on_disk(r.data, r.splits, r.out)
    r.enc = encode_splits(a, r.splits, r.tokenizer, s.data.max_length, r.out)
    texts = (x for ds in r.splits.values() for x in a.texts(ds))
    r.tokenizer, r.teacher_vocab = teacher_vocabulary(s.teacher, r.tokenizer, r.enc.values(), texts)
    if r.teacher_vocab:  # pruned: the rows again, over the pruned vocabulary
        r.sections["teacher_vocabulary"] = r.teacher_vocab
        r.enc = encode_splits(a, r.splits, r.tokenizer, s.data.max_length, r.out)
    r.eval_enc = {g: a.encode(d.evaluation, r.tokenizer, s.data.max_length, f"evaluation {g}")
                  for g, d in r.data.groups.items()}
    r.eval_gold = {g: a.gold(d.evaluation) for g, d in r.data.groups.items()}


def check_against_teacher(r: Run) -> None:
    """Before the teacher trains or loads (minutes): the stages' layer maps and the student's
    initialisation must fit the teacher's shape, known from its configuration
    (:func:`~xdistill.teachers.build.planned_teacher`; a hub teacher is checked once it loads).

    Raises:
        ConfigError: a layer map or ``--teacher-layer`` outside the teacher's layers, or a student
            option that cannot fit the teacher (names the option).
    """
    s = r.settings
    shadow = planned_teacher(s.teacher, r.tokenizer, list(r.adapter.labels))
    if shadow is not None:
        build_stages(stage_names(s), s.distill, stage_context(shadow, s))
        student_class(s.student.student).check_teacher(s.student, shadow.model.config)


def prepare_teacher(r: Run) -> None:
    """Reuse, load or fine-tune the teacher (``OUTPUT/teacher``)."""
    s = r.settings
    t = s.teacher
    # What the teacher's training depends on: its options and the exact rows it trains and selects on.
    setup = {"task": r.adapter.spec.name, "labels": list(r.adapter.labels), "seed": s.data.seed,
             "teacher": {k: v for k, v in vars(t).items() if k not in ("teacher_layer", "label_tokens_per_batch",
                         "cache_hidden") and (k, v) not in (("teacher_embeddings", "random"),  # older teachers' key
                                                            ("teacher_self_training", 0),
                                                            ("teacher_self_training_confidence", 0.0))},
             "teacher_data": inputs_fingerprint(r.enc["teacher_labeled"]),
             "validation": inputs_fingerprint(r.enc["validation"])}
    text = (pretraining_text(r.adapter, t, s.data, r.splits, list(r.data.groups), s.data.max_length, r.tokenizer)
            if t.reads_text else None)  # for MLM pretraining or PPMI-SVD embeddings
    if text is not None:
        setup["mlm_text"] = text.fingerprint()
    if t.teacher_self_training:
        setup["self_training_rows"] = inputs_fingerprint(r.enc["transfer"])
    desc = f"{len(r.splits['teacher_labeled'])} labeled {r.adapter.unit} ({r.data.teacher_budget})"
    sizes = {g: len(d.teacher_labeled) for g, d in r.data.groups.items()}
    train, how = teacher_training_rows(r.adapter, r.enc["teacher_labeled"], sizes, t)
    desc += how
    trainer = TeacherTrainer(r.adapter, t, r.out, s.data.seed, setup, pruned_from=r.teacher_vocab.get("full", 0))
    r.teacher = trainer.prepare(r.tokenizer, train, r.enc["validation"], s.run.resume, desc, text=text,
                                pool=r.enc["transfer"]).eval()
    parallel.check_agree({"weights": r.teacher.info.fingerprint}, "the teacher")


def build_transfer(r: Run) -> None:
    """The rows of every transfer source the requested sets need; their union is labeled once."""
    s = r.settings
    ctx = TransferContext(adapter=r.adapter, tokenizer=r.tokenizer, data=r.data, splits=r.splits, encodings=r.enc,
                          max_length=s.data.max_length, generation=s.generation, out_dir=r.out, seed=s.data.seed,
                          teacher=r.teacher)
    for name in r.sources:
        source = TRANSFER_SOURCES[name]()
        if source.phase:
            with r.timer.phase(source.phase):
                text = source.build(ctx)
        else:
            text = source.build(ctx)
        encoded = text.encoded if is_on_disk(text.encoded) else encoded_on_disk(text.encoded, rows_folder(r.out, name))
        r.source_enc[name] = r.enc[source.encoding] = encoded
        r.source_groups[name] = text.groups
        if source.section is not None:
            r.sections[source.section] = text.report
    if len(r.sources) == 1:
        r.union = r.source_enc[r.sources[0]]
    else:  # the sources' rows one after the other, copied file to file
        union = EncodedWriter(rows_folder(r.out, "union"))
        for name in r.sources:
            union.add(r.source_enc[name])
        r.union = union.finish()


def label_transfer(r: Run) -> None:
    """Build the stages (the teacher is known now) and cache the teacher features they read, on the
    transfer union and, for stages selected by their loss, on the validation split."""
    s = r.settings
    r.stages = build_stages(stage_names(s), s.distill, stage_context(r.teacher, s))
    label_stage_features(r, r.union, "transfer", r.enc["validation"], "validation")
    if r.union_cache is not None and "logits" in r.union_cache.keys:  # the teacher's labels on each set
        r.sections["transfer_profile"] = transfer_profiles(r.union_cache, r.adapter, r.union, r.variants,
                                                           set_rows(r.sources, r.source_sizes))


def label_stage_features(r: Run, train: Encoded, name: str, validation: Encoded, validation_name: str) -> None:
    """Cache the teacher features ``r.stages`` read on the ``train`` rows (``r.union_cache``, with its
    stats in ``r.label_stats``) and, for stages selected by their loss, on the ``validation`` rows
    (``r.validation_cache``); ``name``/``validation_name`` name the cache folders. Relational features
    (attention maps, queries, keys, values) are read from a live teacher (``r.live``) instead."""
    s = r.settings
    features = list({f.key: f for st in r.stages for f in st.teacher_features}.values())
    if any(f.relational for f in features):
        r.live = LiveTeacherTargets(r.teacher, r.adapter.level)
    features = [f for f in features if not f.relational]
    if not features:
        return
    cache_root = Path(s.run.cache_dir) if s.run.cache_dir else r.out / "cache"
    common = dict(teacher=r.teacher, level=r.adapter.level, features=features, cache_root=cache_root,
                  max_tokens=s.teacher.label_tokens_per_batch, hidden=s.teacher.cache_hidden)
    r.union_cache, r.label_stats = label_rows(encoded=train, name=name, **common)
    if any(st.select_by == "loss" for st in r.stages):
        r.validation_cache, _ = label_rows(encoded=validation, name=validation_name, **common)


def targets(r: Run, cache) -> SplitTargets | None:
    """The teacher targets of a data source: its cached features and the live teacher's (either may be absent)."""
    cached = CachedTargets(cache, r.adapter.level) if cache is not None else None
    return SplitTargets(cached, r.live) if cached is not None or r.live is not None else None


def make_trainee(r: Run, teacher_embeddings, distilled: bool = True, rows: list[Encoded] | None = None) -> Trainee:
    """A new student (SVD embeddings from the teacher's, or random when ``None``; a ``distilled``
    student may also copy the teacher's layers) and the projections of every match of the run. Its
    vocabulary keeps the tokens of ``rows`` (default: the labeled budget, the transfer union and the
    teacher's labeled rows)."""
    s = r.settings
    rows = rows if rows is not None else [r.enc["labeled"], r.union, r.enc["teacher_labeled"]]
    ctx = StudentContext.for_tokenizer(r.tokenizer, num_labels=r.adapter.num_labels, level=r.adapter.level,
                                       rows=rows,
                                       teacher_embeddings=teacher_embeddings, seed=s.distill.seed(s.data.seed),
                                       teacher_model=r.teacher.model if distilled else None)
    student = build_student(s.student, ctx)
    widths = {m.target: r.teacher.feature_width(m.target_feature) for m in r.matches
              if m.projection is not None}
    return Trainee(student, r.matches, widths).to(compute_device())


def _distiller(r: Run, trainee: Trainee, transfer: DataSource | None, name: str, checkpoint: str,
               patience: int | None = None) -> Distiller:
    s = r.settings
    dist = s.distill if patience is None else replace(s.distill, patience=patience)
    sources = {"labeled": DataSource(r.enc["labeled"])}
    if transfer is not None:
        sources["transfer"] = transfer
    data = DistillData(sources, DataSource(r.enc["validation"], targets(r, r.validation_cache)),
                       r.adapter.gold(r.splits["validation"]), r.pad_id)
    return Distiller(trainee, r.adapter, dist, data, r.out / "checkpoints" / checkpoint, s.distill.seed(s.data.seed),
                     name=name)


def student_dir(out: Path, variant: str, variants: list[str]) -> Path:
    """``OUTPUT/student`` for the first transfer set, ``OUTPUT/student-<set>`` for the others."""
    return out / ("student" if variant == variants[0] else f"student-{variant}")


def distill_students(r: Run) -> tuple[dict[str, Trainee], dict[str, list]]:
    """One student per transfer set, each through the whole schedule."""
    s = r.settings
    rows_of = set_rows(r.sources, r.source_sizes)
    trainees, schedules = {}, {}
    for variant in r.variants:
        view = r.union_cache.rows(rows_of(variant)) if r.union_cache is not None else None
        epoch_rows = None
        if s.distill.transfer_lang_temperature != 1.0:  # each row's language: only when languages are sampled
            groups = row_groups([(r.source_enc[n], r.source_groups.get(n)) for n in TRANSFER_SETS[variant]])
            epoch_rows, sampling = sampled_transfer_rows(variant, groups, s.distill.transfer_lang_temperature)
            if sampling is not None:
                r.sections.setdefault("transfer_sampling", {})[variant] = sampling
        transfer = DataSource(r.set_encoded(variant), targets(r, view), epoch_rows)
        trainee = make_trainee(r, r.teacher.input_embeddings())
        ckpt = student_dir(Path("."), variant, r.variants).name
        distiller = _distiller(r, trainee, transfer, f"student[{variant}]", ckpt)
        schedules[variant] = distiller.run(distill_schedule(trainee, r.stages, s.distill),
                                           s.distill.max_epochs, resume=s.run.resume)
        trainees[variant] = trainee
    return trainees, schedules


#: the no-distillation baselines (XtremeDistil, sec. 5.2): name -> whether the student starts from the
#: teacher's SVD embeddings (else random ones)
BASELINE_EMBEDDINGS = {"baseline": False, "baseline_svd": True}


def train_baseline(r: Run, name: str = "baseline") -> tuple[Trainee, list]:
    """A no-distillation baseline: the same trainee, with random embeddings (``baseline``) or the
    teacher's SVD embeddings as the distilled student starts with (``baseline_svd``, XtremeDistil's
    strongest baseline without distillation), trained on the labeled budget only."""
    s = r.settings
    trainee = make_trainee(r, r.teacher.input_embeddings() if BASELINE_EMBEDDINGS[name] else None, distilled=False)
    stage = build_stages(["labeled"], s.distill, stage_context(r.teacher, s))
    distiller = _distiller(r, trainee, None, name, name.replace("_", "-"), patience=s.distill.baseline_patience)
    schedule = distiller.run(make_schedule(trainee, stage, gradual=False), s.distill.baseline_max_epochs,
                             resume=s.run.resume)
    return trainee, schedule


def evaluate(r: Run, students: dict[str, Student], baselines: dict[str, Student]) -> dict[str, dict]:
    """Per model key (``teacher``, each transfer set, each baseline), per group, the adapter's scores,
    with ``unseen``: the same over the evaluation rows whose text is not in train (see
    ``TaskAdapter.score_unseen``)."""
    a, level = r.adapter, r.adapter.level
    groups = list(r.eval_enc)
    start, end = parallel.shard_range([len(r.eval_gold[g]) for g in groups])  # each process some groups

    def scores(logits_of):
        mine = {g: a.score_unseen(a.decode(logits_of(r.eval_enc[g]), r.eval_enc[g]), r.eval_gold[g],
                                  r.data.groups[g].evaluation_in_train)
                for g in groups[start:end]}
        return {g: s for part in parallel.all_gather(mine) for g, s in part.items()}

    out = {"teacher": scores(lambda e: r.teacher.logits(level, e, r.pad_id))}
    for variant, st in students.items():
        out[variant] = scores(lambda e, st=st: st.logits(level, e, r.pad_id))
    for name, st in baselines.items():
        out[name] = scores(lambda e, st=st: st.logits(level, e, r.pad_id))
    return out


def save_students(r: Run, students: dict[str, Student]) -> None:
    """Each distilled student (without its distillation heads) and the tokenizer, with what it needs to load."""
    spec, info = r.adapter.spec, r.teacher.info
    extra = {"task": spec.name, "task_file": spec.path, "task_type": spec.type, "labels": list(r.adapter.labels),
             "max_length": r.settings.data.max_length, "groups": list(r.data.groups), "teacher": info.source,
             "teacher_trained_from_scratch": info.trained_from_scratch, "teacher_path": info.path,
             "reference": info.reference}
    for variant, st in students.items():
        st.eval()
        st.save(student_dir(r.out, variant, r.variants), tokenizer=r.tokenizer, extra={**extra, "transfer": variant})


def cache_mib(cache: FeatureCache | None) -> float:
    """Size of a teacher-output cache's feature files in MiB (0 without one)."""
    if cache is None:
        return 0.0
    return sum(p.stat().st_size for p in Path(cache.path).glob("*.npy")) / 2 ** 20


def process_stats() -> dict:
    """The run's processes: ``world_size``, ``mixed_precision`` (of teacher training and labeling) and
    the peak RSS of each (MiB, rank order)."""
    return {"world_size": parallel.world_size(), "mixed_precision": parallel.mixed_precision(),
            "peak_rss_mib_per_process": parallel.all_gather(round(peak_rss_mib(), 1))}


def _result(r: Run, trainees: dict[str, Trainee], baselines: dict[str, tuple[Trainee, list]], scores: dict,
            schedules: dict, t_start: float, command: str) -> RunResult:
    a, info = r.adapter, r.teacher.info
    first = trainees[r.variants[0]]
    described = first.student.describe()
    name = described.get("name", described["architecture"])
    models = [ModelScores("teacher", "teacher", info.description or info.source, "-", info.parameters, scores["teacher"]),
              ModelScores("baseline", "student (no distillation)", f"{name}, random embeddings, labeled budget only",
                          "-", baselines["baseline"][0].student.inference_parameters(), scores["baseline"]),
              ModelScores("baseline_svd", "student (no distillation, SVD embeddings)",
                          f"{name}, the teacher's SVD embeddings, labeled budget only", "-",
                          baselines["baseline_svd"][0].student.inference_parameters(), scores["baseline_svd"])]
    for v, t in trainees.items():
        models.append(ModelScores(v, f"student (distilled, {v})", f"{name} {t.student.describe()['summary']}", v,
                                  t.student.inference_parameters(), scores[v]))
    ls = r.label_stats
    timing = {"seconds": {k: round(v, 1) for k, v in r.timer.seconds.items()},
              "total_seconds": round(time.perf_counter() - t_start, 1),
              "teacher_tokens_per_second": ls.get("tokens_per_second"), "teacher_labeling_cached": ls.get("cached", False),
              "padding_fraction": ls.get("padding_fraction"), "transfer_tokens": ls.get("real_tokens"),
              "teacher_rows_copied": ls.get("reused_rows", 0), "teacher_rows": ls.get("rows"),
              "cache_mib": round(cache_mib(r.union_cache) + cache_mib(r.validation_cache), 1),
              "live_teacher_seconds": round(r.live.seconds, 1) if r.live is not None else None,
              "live_teacher_batches": r.live.batches if r.live is not None else None,
              "peak_rss_mib": round(peak_rss_mib(), 1), "peak_rss_mib_after_phase": r.timer.peak_rss_mib,
              "threads": torch.get_num_threads(), "resumed": r.settings.run.resume,
              **process_stats()}
    rows_of = set_rows(r.sources, r.source_sizes)
    student = {**described, "name": name, "teacher_vocabulary": len(r.tokenizer),
               "parameters": first.student.inference_parameters(),
               "parameters_with_distillation_heads": count_parameters(first), "path": str(r.out / "student"),
               "transfer": r.variants[0]}
    return RunResult(
        task=TaskInfo(a.spec.name, a.spec.type, a.primary_metric, a.metric_description, a.unit, a.group_name),
        preset=r.settings.run.preset, command=command, data=r.data,
        sizes={k: len(r.splits[k]) for k in ("labeled", "validation", "teacher_labeled")},
        encoding={k: e.stats for k, e in r.enc.items()}, teacher=info, reference=r.teacher.reference, student=student,
        models=models, transfer_sizes={v: len(rows_of(v)) for v in r.variants}, schedules=schedules,
        baseline_schedule=baselines["baseline"][1], baseline_svd_schedule=baselines["baseline_svd"][1], sections=r.sections, timing=timing, settings=r.settings.as_dict())


def _run(adapter: TaskAdapter, settings: RunSettings, sources: list[str], command: str, t_start: float) -> dict:
    """The phases of :func:`run`, inside its locked output folder."""
    r = Run(adapter, settings, Path(settings.run.output_dir))
    torch.manual_seed(settings.data.seed)
    r.sources = sources
    with r.timer.phase("data"):
        prepare_data(r)
        parallel.check_agree({k: inputs_fingerprint(e) for k, e in {**r.enc, **r.eval_enc}.items()}, "the data")
        check_against_teacher(r)
    with r.timer.phase("teacher"):
        prepare_teacher(r)
    build_transfer(r)
    with r.timer.phase("teacher_labeling"):
        label_transfer(r)
    with r.timer.phase("distillation"):
        trainees, schedules = distill_students(r)
    baselines = {}
    for name in BASELINE_EMBEDDINGS:
        with r.timer.phase(name):
            baselines[name] = train_baseline(r, name)
    students = {v: t.student for v, t in trainees.items()}
    with r.timer.phase("evaluation"):
        scores = evaluate(r, students, {name: t.student for name, (t, _) in baselines.items()})
    with r.timer.phase("save"):
        parallel.main_does(lambda: save_students(r, students), "saved the students")
    result = _result(r, trainees, baselines, scores, schedules, t_start, command)
    return parallel.main_does(lambda: write_outputs(r, build_report(result)), "wrote the report")


def write_outputs(r: Run, report: dict) -> dict:
    """The report and the model card of each saved student (task, data, metrics, size); returns the report."""
    write_report(report, r.out)
    for variant in r.variants:
        write_training_summary(student_dir(r.out, variant, r.variants), report, variant)
        write_model_card(student_dir(r.out, variant, r.variants))
    return report


def run(adapter: TaskAdapter, settings: RunSettings, command: str | None = None) -> dict:
    """Run the whole distillation and write ``OUTPUT/report.json``, ``report.md`` and the students.

    ``command`` is the command line recorded in the report (default: this process's arguments).

    The output folder is locked for the run (a second run into it stops at once), and ``--resume``
    only continues a run started with the same settings (:mod:`xdistill.pipeline.folder`).

    Raises:
        ConfigError: bad options (checked before anything slow runs), a folder in use or not
            writable, ``--resume`` with other settings or a damaged checkpoint, or data and
            checkpoints that do not fit the options.
        DataFormatError: a malformed data file.
    """
    t_start = time.perf_counter()
    command = command or " ".join(["python -m xdistill"] + sys.argv[1:])
    sources = check_settings(settings)
    check_launch(settings, sources)
    parallel.check_agree({"settings": result_settings(settings, adapter.spec.path),
                          "output_dir": str(Path(settings.run.output_dir).resolve())}, "accelerate launch")
    with RunFolder(settings.run.output_dir, settings, adapter.spec.path, command):
        report = _run(adapter, settings, sources, command, t_start)
    m, k = report["mean"], adapter.primary_metric
    logger.info("mean %s: teacher %.2f, student %.2f, baseline %.2f, SVD baseline %.2f (student/teacher %.3f); "
                "total %.1f min, peak RSS %.0f MiB",
                k, m[f"teacher_{k}"], m[f"student_{k}"], m[f"baseline_{k}"], m[f"baseline_svd_{k}"],
                m["student_to_teacher"] or 0,
                report["timing"]["total_seconds"] / 60, report["timing"]["peak_rss_mib"])
    return report
