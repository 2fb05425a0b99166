"""What a distillation run produced, as data: the input of ``report.json`` and the model cards."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..data.types import TaskData
from ..teachers import ReferenceModel, TeacherInfo


#: the no-distillation students (XtremeDistil, sec. 5.2): random embeddings, and the teacher's SVD embeddings
BASELINES = ("baseline", "baseline_svd")


@dataclass
class TaskInfo:
    """The task as reports name it (from its adapter)."""

    name: str
    type: str
    metric: str                 # the primary metric's key in score dicts
    metric_description: str
    unit: str                   # what an example is called: sentences, texts
    group_name: str | None      # the report's name for the groups (languages), or None


@dataclass
class ModelScores:
    """One evaluated model: a report row.

    Attributes:
        key: ``teacher``, ``baseline`` or the transfer set a distilled student learned from.
        name: the row's name (``student (distilled, unlabeled)``).
        description: what it is, in a few words.
        transfer: the transfer set, or ``-``.
        parameters: inference parameters.
        scores: group -> the adapter's score dict (metrics in percent, ``n`` examples).
    """

    key: str
    name: str
    description: str
    transfer: str
    parameters: int
    scores: dict[str, dict]


@dataclass
class RunResult:
    """Everything ``report.json`` says about a run (see the README for its fields).

    Attributes:
        task: the task.
        preset, command: the preset and the command line.
        data: the task's splits and where they came from.
        sizes: examples per split the models saw (``labeled``, ``validation``, ``teacher_labeled``).
        encoding: per encoded split, its statistics (windows, truncation).
        teacher: the teacher.
        reference: the pretrained model compression is measured against.
        student: the first distilled student's ``describe()``, with ``parameters``,
            ``parameters_with_distillation_heads``, ``teacher_vocabulary``, ``path``, ``transfer``.
        models: teacher, the baselines (``baseline``: random embeddings; ``baseline_svd``: the
            teacher's SVD embeddings), then one distilled student per transfer set (in that order).
        transfer_sizes: rows per transfer set.
        schedules: per transfer set, its student's step results; ``baseline_schedule`` the baseline's,
            ``baseline_svd_schedule`` the SVD baseline's.
        sections: what transfer sources say about their text, by report key (``generation``).
        timing: seconds per phase, labeling throughput, peak RSS, threads.
        settings: every option, by argument class.
    """

    task: TaskInfo
    preset: str
    command: str
    data: TaskData
    sizes: dict[str, int]
    encoding: dict[str, dict]
    teacher: TeacherInfo
    reference: ReferenceModel
    student: dict
    models: list[ModelScores]
    transfer_sizes: dict[str, int]
    schedules: dict[str, list]
    baseline_schedule: list
    baseline_svd_schedule: list = field(default_factory=list)
    sections: dict[str, dict] = field(default_factory=dict)
    timing: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)

    @property
    def variants(self) -> list[str]:
        """The transfer sets, in the order their students were distilled."""
        return [m.key for m in self.models if m.key not in ("teacher", *BASELINES)]

    def model(self, key: str) -> ModelScores:
        """The model row ``key``.

        Raises:
            KeyError: no such model.
        """
        for m in self.models:
            if m.key == key:
                return m
        raise KeyError(key)
