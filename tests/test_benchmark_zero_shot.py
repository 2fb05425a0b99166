"""scripts/benchmark_zero_shot.py: the student seeds, the per-seed adversarial gain and the zero-shot command line (issue 12)."""

from __future__ import annotations

import pytest

from tiny import load_script

bench = load_script("benchmark_zero_shot")


def _report(student_seed: int, ood: float, adversarial: float, data_seed: int = 42) -> dict:
    return {"metric": "accuracy", "mean": {"ood_accuracy": ood, "adversarial_accuracy": adversarial},
            "settings": {"distill": {"student_seed": student_seed}, "data": {"seed": data_seed}}}


def test_seed_rows_give_the_paired_gain_its_mean_and_spread():
    reports = {bench.effective_seed(r): r for r in (_report(-1, 74.82, 75.10), _report(1, 75.78, 75.94),
                                                    _report(2, 75.66, 75.88))}
    assert sorted(reports) == [1, 2, 42]  # -1 means --seed
    df = bench.seed_rows(reports)
    assert list(df.index) == ["1", "2", "42", "mean", "sd"]
    assert df.loc["42", "gain"] == pytest.approx(0.28)
    assert df.loc["mean", "gain"] == pytest.approx((0.16 + 0.22 + 0.28) / 3)
    assert df.loc["sd", "gain"] == pytest.approx(0.06)  # sample SD of 0.16, 0.22, 0.28
    assert df.loc["mean", "ood"] == pytest.approx((74.82 + 75.78 + 75.66) / 3)


def test_one_seed_has_no_spread():
    df = bench.seed_rows({0: _report(0, 70.0, 71.5)})
    assert df.loc["sd"].tolist() == [0.0, 0.0, 0.0] and df.loc["mean", "gain"] == pytest.approx(1.5)


def test_student_seeds_option():
    assert bench.parse_seeds("1,2") == [1, 2] and bench.parse_seeds(None) == []
    for bad in ("1,a", "-1"):
        with pytest.raises(SystemExit, match="--student-seeds"):
            bench.parse_seeds(bad)


def test_a_saved_teacher_alone_is_reused_without_a_regular_run(tmp_path):
    assert bench.needs_regular_run(tmp_path)  # nothing there
    (tmp_path / "teacher").mkdir()
    assert bench.needs_regular_run(tmp_path)  # a teacher folder without its config is not a saved teacher
    (tmp_path / "teacher" / "config.json").write_text("{}")
    assert not bench.needs_regular_run(tmp_path)  # scripts/teacher_recipe.py's output: reused
    (tmp_path / "teacher" / "config.json").unlink()
    (tmp_path / "report.json").write_text("{}")
    assert not bench.needs_regular_run(tmp_path)  # a finished regular run


class _Stop(Exception):
    pass


def _first_zero_shot_command(tmp_path, monkeypatch, command: str, extra: tuple[str, ...] = ()) -> list[str]:
    """The command line of the first zero-shot run main() would start (the run itself is not started)."""
    (tmp_path / "teacher").mkdir()
    (tmp_path / "teacher" / "config.json").write_text("{}")
    seen: list[list[str]] = []

    def record(cmd: list[str]) -> None:
        seen.append(cmd)
        raise _Stop

    monkeypatch.setattr(bench, "run", record)
    with pytest.raises(_Stop):
        bench.main([command, "--teacher-run", str(tmp_path), "--root", str(tmp_path / "out"), "--data-dir", "D",
                    *(["--", *extra] if extra else [])])
    return seen[0]


def test_the_ner_zero_shot_run_gets_the_recipe_and_passed_options_come_last(tmp_path, monkeypatch):
    cmd = _first_zero_shot_command(tmp_path, monkeypatch, "ner", ("--ood-span", "2-5"))
    text = " ".join(cmd)
    assert "--zero-shot --ood-text leipzig,tatoeba --ood-limit 500 --ood-span 1-10 --student-vocabulary whole" in text
    assert cmd[-2:] == ["--ood-span", "2-5"]  # a passed option is later on the line, so it wins


def test_the_classify_zero_shot_run_gets_its_own_recipe(tmp_path, monkeypatch):
    cmd = _first_zero_shot_command(tmp_path, monkeypatch, "classify", ("--pooling", "max"))
    assert "--ood-span" not in cmd  # NER's spans are not for reviews
    assert " --student-vocabulary whole --pooling attention " in " ".join(cmd)
    assert cmd[-2:] == ["--pooling", "max"]  # a passed option still wins
    assert cmd[cmd.index("--ood-text") + 1] == "D/wikiann/train-en.tsv,D/unlabeled/leipzig/en.txt"


def test_seed_reruns_reuse_the_first_generator_instead_of_training_one(tmp_path):
    cmd = ["x", "--adversarial", "--adversarial-generator-init", "teacher", "--student-seed", "1",
           "--adversarial-generator-init=teacher"]
    again = bench.reuse_generator(cmd, tmp_path / "g")
    assert again == ["x", "--adversarial", "--student-seed", "1", "--adversarial-generator", str(tmp_path / "g")]
    given = ["x", "--adversarial-generator", "hub/mlm"]
    assert bench.reuse_generator(given, tmp_path / "g") == given
