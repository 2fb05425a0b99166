"""Config dataclasses: presets, validation in __post_init__ (naming the option), the data-dir env var."""

from __future__ import annotations

from dataclasses import fields

import pytest

from xdistill import config
from xdistill.cli import parse_distill_args
from xdistill.config import (ALL_ARGUMENT_CLASSES, DATA_DIR_ENV, PRESETS, DataArguments, DistillArguments,
                             RunArguments, StudentArguments, TeacherArguments)
from xdistill.errors import ConfigError


@pytest.fixture(autouse=True)
def _no_data_dir_env(monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)


def all_field_names() -> list[str]:
    return [f.name for cls in ALL_ARGUMENT_CLASSES for f in fields(cls)]


def config_error(cls, **kw) -> str:
    with pytest.raises(ConfigError) as ei:
        cls(**kw)
    return str(ei.value)


# --------------------------------------------------------------------------- presets


def test_presets_only_set_known_fields():
    names = set(all_field_names())
    assert set(PRESETS) == {"smoke", "cpu", "paper"}
    for preset, values in PRESETS.items():
        assert set(values) <= names, (preset, set(values) - names)


def test_field_names_are_unique_across_dataclasses():
    names = all_field_names()
    assert len(names) == len(set(names))


def test_validate_presets_catches_an_unknown_option(monkeypatch):
    config._validate_presets()  # what import ran: passes
    monkeypatch.setitem(PRESETS, "broken", {"labeled_per_lang": 1, "no_such_option": 3})
    with pytest.raises(AssertionError, match="no_such_option"):
        config._validate_presets()


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_gives_valid_arguments(preset):
    dargs, targs, sargs, dist, rargs = parse_distill_args(["--preset", preset], "ner")
    assert rargs.preset == preset
    by_name = {f.name: getattr(obj, f.name) for obj in (dargs, targs, sargs, dist, rargs) for f in fields(obj)}
    for key, value in PRESETS[preset].items():
        if key == "source" and value == "auto":
            continue
        assert by_name[key] == value, key


def test_preset_values_can_be_overridden_with_dashed_or_underscored_names():
    dargs, targs, sargs, dist, rargs = parse_distill_args(
        ["--preset", "smoke", "--labeled-per-lang", "7", "--teacher_layers", "1", "--hidden-size", "16",
         "--no-gradual-unfreezing", "--stages", "logits,labeled"], "ner")
    assert dargs.labeled_per_lang == 7
    assert dargs.teacher_labeled_per_lang == PRESETS["smoke"]["teacher_labeled_per_lang"]
    assert targs.teacher_layers == 1
    assert sargs.hidden_size == 16
    assert dist.gradual_unfreezing is False
    assert dist.stage_names == ["logits", "labeled"]


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
    (dict(student="cnn"), "--student"),
    (dict(embedding_dim=0), "--embedding-dim"),
    (dict(hidden_size=-4), "--hidden-size"),
])
def test_student_arguments_reject_bad_values(kw, option):
    assert option in config_error(StudentArguments, **kw)


def test_student_dropout_zero_is_allowed():
    assert StudentArguments(dropout=0.0).dropout == 0.0


# --------------------------------------------------------------------------- DistillArguments


@pytest.mark.parametrize("stages", ["representation,nonsense", "", " , ", "logits,logits", "Logits"])
def test_stages_rejected(stages):
    assert "--stages" in config_error(DistillArguments, stages=stages)


def test_stage_names_strip_spaces_and_keep_order():
    assert DistillArguments(stages=" labeled , representation ").stage_names == ["labeled", "representation"]


@pytest.mark.parametrize("kw,option", [
    (dict(representation_loss="l1"), "--representation-loss"),
    (dict(logits_loss="ce"), "--logits-loss"),
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
