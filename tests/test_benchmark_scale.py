"""scripts/benchmark_scale.py's helpers: the NxK size syntax and the growth table (issue 14)."""

from __future__ import annotations

import pandas as pd
import pytest

from tiny import load_script
from xdistill.config.presets import PRESETS

scale = load_script("benchmark_scale")


def test_sizes_take_an_optional_repeat():
    assert scale.parse_size("850") == (850, 1) and scale.parse_size("16500x2") == (16500, 2)
    assert scale.parse_size("-1x3") == (-1, 3)
    for bad in ("x2", "10x0", "10xa", "ten"):
        with pytest.raises(SystemExit, match="--sizes"):
            scale.parse_size(bad)


def test_growth_compares_each_size_with_the_smallest_per_process_count():
    df = pd.DataFrame([
        {"run": "s1-p1", "processes": 1, "transfer_rows": 100, "labeling_s": 10.0, "s_per_epoch": 4.0, "peak_rss_mib": 1000.0},
        {"run": "s4-p1", "processes": 1, "transfer_rows": 400, "labeling_s": 44.0, "s_per_epoch": 16.0, "peak_rss_mib": 1100.0},
        {"run": "s1-p2", "processes": 2, "transfer_rows": 100, "labeling_s": 5.0, "s_per_epoch": 3.0, "peak_rss_mib": 900.0},
        {"run": "teacher-p2", "processes": 2, "transfer_rows": 100, "labeling_s": 5.0, "s_per_epoch": 3.0,
         "peak_rss_mib": 900.0},
    ])
    g = scale.growth(df)
    assert len(g) == 1  # one larger run; a single run per process count and the teacher run compare with nothing
    x = g.iloc[0]
    assert (x.run, x.against, x.rows_ratio) == ("s4-p1", "s1-p1", 4.0)
    assert x.labeling_s_per_row_ratio == pytest.approx(1.1) and x.epoch_s_per_row_ratio == pytest.approx(1.0)
    assert x.peak_rss_ratio == pytest.approx(1.1)


def test_speedups_are_throughput_over_one_process_and_name_the_batches():
    base = {"transfer_per_lang": 850, "transfer_repeat": 1, "transfer_rows": 100, "baseline": 20.0}
    df = pd.DataFrame([
        {**base, "run": "s850-p1", "processes": 1, "batch_size": 64, "labeling_tokens_per_s": 1000.0,
         "s_per_epoch": 30.0, "student": 40.0},
        {**base, "run": "s850-p2", "processes": 2, "batch_size": 128, "labeling_tokens_per_s": 1800.0,
         "s_per_epoch": 18.0, "student": 39.5},
    ])
    x = scale.speedups(df).iloc[0]
    assert x.labeling_speedup == pytest.approx(1.8) and x.distillation_speedup == pytest.approx(30 / 18)
    assert x.batch_size == "128 vs 64" and x.student_f1_difference == pytest.approx(-0.5)


def test_one_teacher_serves_every_transfer_size():
    assert scale.same_teacher_text(PRESETS["cpu"]["ner"]) == ["--mlm-text", "labeled,train"]
    assert scale.same_teacher_text(PRESETS["smoke"]["ner"]) == []  # a random-embedding teacher reads no text
    assert scale.same_teacher_text({"teacher_embeddings": "ppmi", "mlm_text": "labeled"}) == []
    # the paper preset's MLM pretraining reads the default text, transfer,labeled
    assert scale.same_teacher_text(PRESETS["paper"]["ner"]) == ["--mlm-text", "labeled"]
    with pytest.raises(SystemExit, match="only the transfer text"):
        scale.same_teacher_text({"teacher_embeddings": "ppmi", "mlm_text": "transfer"})
