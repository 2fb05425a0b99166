"""Config dataclasses: presets, validation in __post_init__ (naming the option), the data-dir env var."""

from __future__ import annotations

from dataclasses import fields

import pytest

from xdistill.adapters import COMMANDS, check_presets
from xdistill.cli import parse_distill_args
from xdistill.config import (COMMON_ARGUMENTS, DATA_DIR_ENV, PRESETS, DistillArguments, GenerationArguments, GenerationOptions,
                             NERDataArguments, RunArguments, RunSettings, StudentArguments, TeacherArguments,
                             TextDataArguments)
from xdistill.errors import ConfigError
from xdistill.pipeline import check_settings

DataArguments = NERDataArguments  # the NER options; TextDataArguments shares the base


@pytest.fixture(autouse=True)
def _no_data_dir_env(monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)


def all_field_names(command: str = "ner") -> list[str]:
    return [f.name for cls in (*COMMANDS[command].arguments, *COMMON_ARGUMENTS) for f in fields(cls)]


def config_error(cls, **kw) -> str:
    with pytest.raises(ConfigError) as ei:
        cls(**kw)
    return str(ei.value)


# --------------------------------------------------------------------------- presets


def test_one_preset_table_for_every_command():
    assert set(PRESETS) == {"smoke", "cpu", "paper"}
    for preset, by_command in PRESETS.items():
        assert set(by_command) == set(COMMANDS), preset
        for command, values in by_command.items():
            names = set(all_field_names(command))
            assert set(values) <= names, (preset, command, set(values) - names)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_field_names_are_unique_across_dataclasses(command):
    names = all_field_names(command)
    assert len(names) == len(set(names))


def test_data_arguments_share_one_base():
    from xdistill.config import DataArguments as Base

    assert issubclass(NERDataArguments, Base) and issubclass(TextDataArguments, Base)
    shared = {f.name for f in fields(Base)}
    assert shared == {"data_dir", "source", "max_length", "seed"}
    assert shared <= {f.name for f in fields(TextDataArguments)}


def test_check_presets_catches_an_unknown_option(monkeypatch):
    check_presets()  # what import ran: passes
    monkeypatch.setitem(PRESETS, "broken", {"ner": {"labeled_per_lang": 1, "no_such_option": 3}})
    with pytest.raises(AssertionError, match="no_such_option"):
        check_presets()


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_gives_valid_arguments(preset, command):
    settings = parse_distill_args(["--preset", preset], command)
    assert isinstance(settings, RunSettings) and settings.run.preset == preset
    parts = [settings.data, settings.teacher, settings.student, settings.distill, settings.run]
    assert (settings.generation is not None) == any(issubclass(c, GenerationOptions) for c in COMMANDS[command].arguments)
    assert type(settings.generation) in COMMANDS[command].arguments
    parts += [settings.generation] if settings.generation else []
    by_name = {f.name: getattr(obj, f.name) for obj in parts for f in fields(obj)}
    for key, value in PRESETS[preset][command].items():
        if key == "source" and value == "auto":
            continue
        assert by_name[key] == value, key


def test_preset_values_can_be_overridden_with_dashed_or_underscored_names():
    s = parse_distill_args(
        ["--preset", "smoke", "--labeled-per-lang", "7", "--teacher_layers", "1", "--hidden-size", "16",
         "--no-gradual-unfreezing", "--stages", "logits,labeled"], "ner")
    assert s.data.labeled_per_lang == 7
    assert s.data.teacher_labeled_per_lang == PRESETS["smoke"]["ner"]["teacher_labeled_per_lang"]
    assert s.teacher.teacher_layers == 1
    assert s.student.hidden_size == 16
    assert s.distill.gradual_unfreezing is False
    assert s.distill.frozen_groups() == ()
    assert parse_distill_args(["--preset", "smoke", "--freeze-embeddings"], "ner").distill.frozen_groups() == ("embeddings",)
    assert s.distill.stage_names("representation,logits,labeled") == ["logits", "labeled"]


def test_unknown_option_is_a_config_error():
    with pytest.raises(ConfigError, match="--no-such-option"):
        parse_distill_args(["--no-such-option", "3"], "ner")


def test_unknown_preset_is_a_config_error():
    with pytest.raises(ConfigError, match="--preset"):
        parse_distill_args(["--preset", "huge"], "ner")


# --------------------------------------------------------------------------- DataArguments


def test_data_defaults_without_data_dir_use_the_hub():
    d = DataArguments()
    assert d.data_dir is None
    assert d.source == "hub"


def test_data_dir_from_env_var(monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    d = DataArguments(data_dir=None)
    assert d.data_dir == str(tmp_path)
    assert d.source == "local"


def test_explicit_data_dir_wins_over_env_var(monkeypatch, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert DataArguments(data_dir=str(other)).data_dir == str(other)


def test_env_var_with_source_hub_keeps_hub(monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert DataArguments(source="hub").source == "hub"


def test_teacher_budget_smaller_than_student_budget():
    msg = config_error(DataArguments, labeled_per_lang=100, teacher_labeled_per_lang=50)
    assert "--teacher-labeled-per-lang" in msg
    assert "--labeled-per-lang" in msg
    # -1 (all) and an equal budget are fine
    assert DataArguments(labeled_per_lang=100, teacher_labeled_per_lang=-1).teacher_labeled_per_lang == -1
    assert DataArguments(labeled_per_lang=100, teacher_labeled_per_lang=100).teacher_labeled_per_lang == 100


@pytest.mark.parametrize("kw,option", [
    (dict(labeled_per_lang=0), "--labeled-per-lang"),
    (dict(labeled_per_lang=-5), "--labeled-per-lang"),
    (dict(validation_per_lang=0), "--validation-per-lang"),
    (dict(max_length=4), "--max-length"),
    (dict(teacher_labeled_per_lang=-2), "--teacher-labeled-per-lang"),
    (dict(transfer_per_lang=-3), "--transfer-per-lang"),
    (dict(unlabeled_per_lang=-2), "--unlabeled-per-lang"),
    (dict(eval_per_lang=-2), "--eval-per-lang"),
    (dict(source="ftp"), "--source"),
    (dict(source="local"), "--source local"),
])
def test_data_arguments_reject_bad_values(kw, option):
    assert option in config_error(DataArguments, **kw)


def test_data_dir_must_exist(tmp_path):
    msg = config_error(DataArguments, data_dir=str(tmp_path / "missing"))
    assert "--data-dir" in msg and "missing" in msg


# --------------------------------------------------------------------------- TeacherArguments


def test_teacher_scratch_spellings():
    assert TeacherArguments().from_scratch
    assert TeacherArguments(teacher="scratch").teacher is None
    assert TeacherArguments(teacher="").from_scratch
    assert not TeacherArguments(teacher="some/checkpoint").from_scratch


def test_teacher_hidden_size_not_divisible_by_heads():
    msg = config_error(TeacherArguments, teacher_hidden_size=30, teacher_heads=4)
    assert "--teacher-hidden-size" in msg and "--teacher-heads" in msg


@pytest.mark.parametrize("kw,option", [
    (dict(teacher_hidden_size=0), "--teacher-hidden-size"),
    (dict(teacher_layers=0), "--teacher-layers"),
    (dict(teacher_heads=0), "--teacher-heads"),
    (dict(teacher_intermediate_size=-1), "--teacher-intermediate-size"),
    (dict(teacher_epochs=0.0), "--teacher-epochs"),
    (dict(teacher_lr=0.0), "--teacher-lr"),
    (dict(teacher_batch_size=0), "--teacher-batch-size"),
    (dict(teacher_eval_steps=-1), "--teacher-eval-steps"),
    (dict(label_tokens_per_batch=0), "--label-tokens-per-batch"),
])
def test_teacher_arguments_reject_bad_values(kw, option):
    assert option in config_error(TeacherArguments, **kw)


def test_teacher_eval_steps_zero_is_allowed():
    assert TeacherArguments(teacher_eval_steps=0).teacher_eval_steps == 0


# --------------------------------------------------------------------------- StudentArguments


@pytest.mark.parametrize("kw,option", [
    (dict(dropout=1.0), "--dropout"),
    (dict(dropout=-0.1), "--dropout"),
    (dict(student=" "), "--student"),
    (dict(embedding_dim=0), "--embedding-dim"),
    (dict(hidden_size=-4), "--hidden-size"),
])
def test_student_arguments_reject_bad_values(kw, option):
    assert option in config_error(StudentArguments, **kw)


def test_student_dropout_zero_is_allowed():
    assert StudentArguments(dropout=0.0).dropout == 0.0


# --------------------------------------------------------------------------- DistillArguments


@pytest.mark.parametrize("stages", ["", " , ", "logits,logits"])
def test_stages_rejected(stages):
    assert "--stages" in config_error(DistillArguments, stages=stages)


def _settings(**distill):
    return RunSettings(NERDataArguments(), TeacherArguments(), StudentArguments(), DistillArguments(**distill),
                       RunArguments())


@pytest.mark.parametrize("stages", ["representation,nonsense", "Logits"])
def test_unregistered_stage_is_refused_before_the_run(stages):
    with pytest.raises(ConfigError, match="--stages.*representation, logits, labeled"):
        check_settings(_settings(stages=stages))


@pytest.mark.parametrize("kw,option", [(dict(representation_loss="l1"), "--representation-loss"),
                                       (dict(logits_loss="ce"), "--logits-loss")])
def test_unregistered_loss_is_refused_before_the_run(kw, option):
    with pytest.raises(ConfigError, match=f"{option}.*unknown loss"):
        check_settings(_settings(**kw))


def test_unknown_scratch_architecture_is_refused_before_the_run():
    s = _settings()
    s.teacher = TeacherArguments(teacher_architecture="gpt")
    with pytest.raises(ConfigError, match="--teacher-architecture.*bert, xlm-roberta.*'gpt'"):
        check_settings(s)


def test_unregistered_student_kind_is_refused_before_the_run():
    s = _settings()
    s.student = StudentArguments(student="cnn")
    with pytest.raises(ConfigError, match="--student.*cnn.*bilstm"):
        check_settings(s)


@pytest.mark.parametrize("transfer,augment,match", [("unlabeled,nonsense", "none", "--transfer.*subset"),
                                                    ("generated", "none", "--augment generate")])
def test_transfer_sets_are_checked_before_the_run(transfer, augment, match):
    s = RunSettings(TextDataArguments(), TeacherArguments(), StudentArguments(), DistillArguments(), RunArguments(),
                    GenerationArguments(transfer=transfer, augment=augment))
    with pytest.raises(ConfigError, match=match):
        check_settings(s)


def test_stage_names_strip_spaces_and_keep_order():
    assert DistillArguments(stages=" labeled , representation ").stage_names("logits") == ["labeled", "representation"]
    assert DistillArguments().stage_names("logits,labeled") == ["logits", "labeled"]  # auto: the student's own


@pytest.mark.parametrize("kw,option", [
    (dict(representation_loss=""), "--representation-loss"),
    (dict(logits_loss=" "), "--logits-loss"),
    (dict(temperature=0.0), "--temperature"),
    (dict(batch_size=0), "--batch-size"),
    (dict(lr=-1e-3), "--lr"),
    (dict(max_epochs=0), "--max-epochs"),
    (dict(patience=0), "--patience"),
    (dict(evals_per_epoch=0), "--evals-per-epoch"),
    (dict(baseline_max_epochs=0), "--baseline-max-epochs"),
])
def test_distill_arguments_reject_bad_values(kw, option):
    assert option in config_error(DistillArguments, **kw)


# --------------------------------------------------------------------------- RunArguments


@pytest.mark.parametrize("kw,option", [(dict(preset="huge"), "--preset"), (dict(threads=-1), "--threads")])
def test_run_arguments_reject_bad_values(kw, option):
    assert option in config_error(RunArguments, **kw)


def test_student_seed_defaults_to_the_data_seed():
    assert DistillArguments().seed(42) == 42 and DistillArguments(student_seed=3).seed(42) == 3
    assert DistillArguments(student_seed=0).seed(42) == 0
    with pytest.raises(ConfigError, match="--student-seed"):
        DistillArguments(student_seed=-2)


def test_lr_schedule_is_one_of_the_known():
    assert DistillArguments().lr_schedule == "constant"
    with pytest.raises(ConfigError, match="--lr-schedule: expected one of constant, linear, got 'cosine'"):
        DistillArguments(lr_schedule="cosine")
