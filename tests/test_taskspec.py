"""Task specs (tasks/*.toml): the packaged WikiANN spec and every validation error."""

from __future__ import annotations

from pathlib import Path

import pytest

from xdistill.errors import ConfigError
from xdistill.adapters import ADAPTERS, load_task
from xdistill.data.taskspec import TaskSpec, tasks_dir

WIKIANN_LABELS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")

VALID = """\
name = "toy"
type = "token-classification"
description = "a toy task"
labels = ["O", "B-PER", "I-PER"]
metric = "seqeval"

[hub]
path = "someone/toy"
config = "{lang}"

[local]
format = "panx"
train = "toy/train-{lang}.tsv"
eval = "toy/dev-{lang}.tsv"
unlabeled = false

"""


def write(tmp_path: Path, text: str, name: str = "toy.toml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def load_error(tmp_path: Path, text: str) -> tuple[str, Path]:
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as ei:
        load_task(p)
    return str(ei.value), p


# --------------------------------------------------------------------------- valid specs


def test_wikiann_loads_with_seven_iob2_labels():
    spec = load_task("wikiann")
    assert isinstance(spec, TaskSpec)
    assert spec.name == "wikiann"
    assert spec.type == "token-classification"
    assert spec.labels == WIKIANN_LABELS
    assert len(spec.labels) == 7
    assert spec.metric == "seqeval"
    assert spec.hub["path"] == "unimelb-nlp/wikiann"
    assert spec.local["format"] == "panx"
    assert "{lang}" in spec.local["train"] and "{lang}" in spec.local["eval"]
    assert spec.local["unlabeled"] is True
    assert Path(spec.path) == tasks_dir() / "wikiann.toml"


def test_wikiann_by_path_equals_by_name():
    assert load_task(tasks_dir() / "wikiann.toml") == load_task("wikiann")


def test_valid_file_by_path(tmp_path):
    p = write(tmp_path, VALID)
    spec = load_task(p)
    assert spec.labels == ("O", "B-PER", "I-PER")
    assert spec.description == "a toy task"
    assert spec.local["unlabeled"] is False
    assert spec.path == str(p)
    assert load_task(str(p)) == spec


def test_optional_tables_default_to_empty(tmp_path):
    text = 'name = "t"\ntype = "token-classification"\nlabels = ["O"]\nmetric = "seqeval"\n'
    spec = load_task(write(tmp_path, text))
    assert spec.hub == {} and spec.local == {} and spec.description == ""


# --------------------------------------------------------------------------- errors


def test_unknown_top_level_key_names_file_and_key(tmp_path):
    msg, p = load_error(tmp_path, VALID.replace('metric = "seqeval"', 'metric = "seqeval"\nmetrik = "f1"'))
    assert str(p) in msg
    assert "'metrik'" in msg
    assert "unknown key" in msg
    assert "metric" in msg  # the expected keys are listed


def test_unknown_nested_key_is_dotted(tmp_path):
    msg, p = load_error(tmp_path, VALID.replace('config = "{lang}"', 'config = "{lang}"\nrevision = "main"'))
    assert str(p) in msg
    assert "'hub.revision'" in msg


@pytest.mark.parametrize("old,new,key,expected", [
    ('metric = "seqeval"', "metric = 3", "'metric'", "str"),
    ('labels = ["O", "B-PER", "I-PER"]', 'labels = "O"', "'labels'", "list"),
    ("unlabeled = false", 'unlabeled = "no"', "'local.unlabeled'", "bool"),
    ('name = "toy"', 'name = "toy"\nhub = "someone/toy"', "'hub'", "dict"),
])
def test_wrong_type_names_file_key_and_type(tmp_path, old, new, key, expected):
    text = VALID.replace(old, new, 1)
    if new.startswith('name = "toy"\nhub'):
        text = text.split("[hub]")[0]  # only the scalar hub key, no [hub] table
    msg, p = load_error(tmp_path, text)
    assert str(p) in msg
    assert key in msg
    assert f"must be {expected}" in msg


@pytest.mark.parametrize("key", ["name", "type", "labels", "metric"])
def test_missing_required_key(tmp_path, key):
    lines = [ln for ln in VALID.splitlines() if not ln.startswith(f"{key} =")]
    msg, p = load_error(tmp_path, "\n".join(lines) + "\n")
    assert str(p) in msg
    assert f"missing key {key!r}" in msg


def test_unknown_task_type(tmp_path):
    msg, p = load_error(tmp_path, VALID.replace('"token-classification"', '"span-extraction"'))
    assert str(p) in msg
    assert "'type'" in msg
    assert "'span-extraction'" in msg
    for t in ADAPTERS:
        assert t in msg


@pytest.mark.parametrize("labels", ['["O", "B-PER", "O"]', "[]", '["O", ""]', '["O", 1]'])
def test_bad_labels(tmp_path, labels):
    msg, p = load_error(tmp_path, VALID.replace('["O", "B-PER", "I-PER"]', labels))
    assert str(p) in msg
    assert "'labels'" in msg


def test_invalid_toml_names_file(tmp_path):
    msg, p = load_error(tmp_path, VALID + "\nthis is not toml\n")
    assert str(p) in msg
    assert "TOML" in msg


def test_non_utf8_file_names_file(tmp_path):
    p = tmp_path / "latin1.toml"
    p.write_bytes(VALID.replace("a toy task", "caf\xe9").encode("latin-1"))
    with pytest.raises(ConfigError) as ei:
        load_task(p)
    assert str(p) in str(ei.value)


def test_unknown_task_name_lists_known_tasks():
    with pytest.raises(ConfigError) as ei:
        load_task("no-such-task")
    msg = str(ei.value)
    assert "'no-such-task'" in msg
    assert "known tasks" in msg
    assert "wikiann" in msg


def test_missing_toml_path_lists_known_tasks(tmp_path):
    with pytest.raises(ConfigError) as ei:
        load_task(tmp_path / "absent.toml")
    assert str(tmp_path / "absent.toml") in str(ei.value)
    assert "wikiann" in str(ei.value)


def test_unknown_local_format(tmp_path):
    msg, p = load_error(tmp_path, VALID.replace('format = "panx"', 'format = "xml"'))
    assert str(p) in msg
    assert "'local.format'" in msg and "'xml'" in msg


@pytest.mark.parametrize("fmt", ["auto", "panx", "conll"])
def test_known_local_formats(tmp_path, fmt):
    assert load_task(write(tmp_path, VALID.replace('format = "panx"', f'format = "{fmt}"'))).local["format"] == fmt


def test_a_defaults_table_is_refused_not_ignored(tmp_path):
    """Presets and the command line set options; a task file's [defaults] would never apply."""
    msg, p = load_error(tmp_path, VALID + "\n[defaults]\nmax_length = 64\n")
    assert str(p) in msg and "'defaults'" in msg and "--max-length" in msg


@pytest.mark.parametrize("metric,key", [("seqeval", "f1"), ("f1", "f1")])
def test_ner_metric_is_honoured(tmp_path, metric, key):
    from xdistill.adapters import make_adapter

    spec = load_task(write(tmp_path, VALID.replace('metric = "seqeval"', f'metric = "{metric}"')))
    assert make_adapter(spec).primary_metric == key


def test_unknown_metric_names_the_choices(tmp_path):
    msg, p = load_error(tmp_path, VALID.replace('metric = "seqeval"', 'metric = "bleu"'))
    assert str(p) in msg and "'metric'" in msg and "seqeval" in msg and "'bleu'" in msg
