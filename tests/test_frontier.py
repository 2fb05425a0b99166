"""scripts/benchmark_frontier.py: the Pareto front, the student list, the table from run reports and
latency rows (tiny hand-made inputs; the script's runs are benchmarks, not tests)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tiny import load_script

frontier = load_script("benchmark_frontier")


def test_pareto_keeps_the_students_no_other_beats_on_both():
    df = pd.DataFrame({"f1": [50.0, 55.0, 54.0, 58.0, 58.0], "ms": [1.0, 2.0, 3.0, 5.0, 6.0]},
                      index=["a", "b", "c", "d", "e"])
    assert frontier.pareto(df, "f1", "ms") == ["a", "b", "d"]  # c: b is better and faster; e: d as good, faster


def test_students_option():
    assert frontier.parse_students(None) == frontier.STUDENTS
    assert frontier.parse_students(["x=--student transformer --student-shape l2-h64-a2"]) == {
        "x": "--student transformer --student-shape l2-h64-a2"}
    with pytest.raises(SystemExit, match="NAME=OPTIONS"):
        frontier.parse_students(["no-equals-sign"])


def test_table_from_reports_and_latency_rows(tmp_path):
    runs = {}
    for name, f1, params in (("small", 50.0, 1e6), ("big", 56.0, 4e6)):
        out = tmp_path / name
        (out / "student").mkdir(parents=True)
        report = {"metric": "f1", "mean": {"student_f1": f1, "teacher_f1": 60.0, "student_to_teacher": f1 / 60},
                  "student": {"summary": name, "parameters": params, "compression_vs_reference": 177e6 / params},
                  "timing": {"total_seconds": 600.0, "peak_rss_mib": 2000.0}}
        (out / "report.json").write_text(json.dumps(report))
        runs[name] = out
    rows = [{"role": "student", "path": str(runs[n] / "student"), "runtime": rt, "batch_size": b, "median_ms": ms,
             "speedup_vs_reference": 100.0}
            for n, base in (("small", 1.0), ("big", 3.0)) for rt in ("torch-fp32", "onnx-int8")
            for b, ms in ((1, base), (32, 10 * base))]
    rows.append({"role": "reference", "path": "", "runtime": "onnx-int8", "batch_size": 32, "median_ms": 900.0})
    df = frontier.frontier_table(runs, {"rows": rows})
    assert list(df.index) == ["small", "big"]
    assert df.loc["big", "onnx-int8_b32_ms"] == 30.0 and df.loc["small", "torch-fp32_b1_ms"] == 1.0
    assert df.loc["small", "percent_of_teacher"] == pytest.approx(100 * 50 / 60)
    assert df.loc["big", "train_minutes"] == 10.0
    assert frontier.pareto(df, "f1", "onnx-int8_b32_ms") == ["small", "big"]
