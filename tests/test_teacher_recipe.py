"""scripts/teacher_recipe.py: its options (the recipe runs themselves are benchmarks, not tests)."""

from __future__ import annotations

import pytest

from tiny import load_script

recipe = load_script("teacher_recipe")


def test_command_results_and_the_command_options_are_split():
    assert recipe.parse_args(["ner", "--langs", "de", "--results", "r.jsonl", "--preset", "cpu"]) == (
        "ner", "r.jsonl", ["--langs", "de", "--preset", "cpu"])
    assert recipe.parse_args(["--results", "r.jsonl", "classify"]) == ("classify", "r.jsonl", [])
    assert recipe.parse_args(["ner", "--help"]) == ("ner", None, ["--help"])  # the command's own help


@pytest.mark.parametrize("argv, expected", [
    ([], "required: command"),
    (["nerx"], "invalid choice: 'nerx'"),
    (["ner", "--results"], "--results: expected a file name"),
    (["ner", "--results", "--langs", "de"], "--results: expected a file name"),
])
def test_bad_options_are_usage_errors(argv, expected, capsys):
    with pytest.raises(SystemExit) as e:
        recipe.parse_args(argv)
    assert e.value.code == 2
    assert expected in capsys.readouterr().err


def test_help_before_the_command_prints_the_script_usage(capsys):
    with pytest.raises(SystemExit) as e:
        recipe.parse_args(["--help"])
    assert e.value.code == 0
    assert "teacher alone" in capsys.readouterr().out


def test_an_unknown_command_option_is_an_error_line_not_a_traceback(capsys):
    assert recipe.main(["ner", "--no-such-option", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "--no-such-option" in err and "Traceback" not in err
