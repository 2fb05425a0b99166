"""Exact resume: a smoke run killed (SIGKILL, in a subprocess) at a random point of each phase and
resumed with ``--resume`` ends identical to an uninterrupted run, to the last score and weight.

The kill points follow the run's own log: a phase's first line, then a seeded random delay within it.
Dropout is on (the smoke preset's 0.2), so a step cut off in the middle only ends the same if the
random states are restored.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

pytestmark = pytest.mark.integration

#: phase -> (the log line that starts it, the longest random delay after it in seconds)
KILL_POINTS = {
    "teacher training": ("teacher: bert trained from scratch", 2.0),
    "teacher labeling": ("teacher fine-tuned", 0.3),
    "inside a representation step": ("step representation:2", 0.5),
    "inside a logits step": ("step logits:2", 0.5),
    "inside the baseline": ("baseline: step labeled:1", 0.8),
    "evaluation and saving": ("baseline labeled:1 epoch 4.00", 0.0),
}


def _argv(data_dir: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "xdistill", "ner", "--preset", "smoke", "--langs", "sw", "--threads", "1",
            "--data-dir", str(data_dir), "--output-dir", str(out)]


def _outcome(out: Path) -> dict:
    """What must be identical: every score, every step of both schedules, every student weight."""
    r = json.loads((out / "report.json").read_text())
    weights = load_file(str(out / "student" / "model.safetensors"))
    return {"mean": r["mean"], "details": r["details"],
            "schedule": [(s["step"], s["best_score"], s["updates"], s["history"]) for s in r["schedule"]],
            "baseline": [(s["step"], s["best_score"], s["updates"]) for s in r["baseline_schedule"]],
            "weights": {k: v.tobytes() for k, v in sorted(weights.items())}}


def _kill_and_resume(argv: list[str], out: Path, pattern: str, delay: float, what: str) -> None:
    """Run ``argv``, SIGKILL it ``delay`` seconds after ``pattern`` appears in ``OUT/run.log``, then run it
    again with ``--resume`` to the end."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = out / "run.log"
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if log.is_file() and pattern in log.read_text(errors="replace"):
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"the run ended before the kill point {what!r} (rc {proc.returncode})"
    resumed = subprocess.run(argv + ["--resume"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]


@pytest.fixture(scope="module")
def straight(tmp_path_factory, data_dir):
    """The uninterrupted run; its stdout is the JSON summary alone (logs go to stderr)."""
    out = tmp_path_factory.mktemp("straight")
    p = subprocess.run(_argv(data_dir, out), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    summary = json.loads(p.stdout)  # what `... 2>/dev/null | python -m json.tool` needs
    assert summary["output_dir"] == str(out) and "Traceback" not in p.stderr
    return _outcome(out)


@pytest.mark.parametrize("phase", list(KILL_POINTS))
def test_killed_anywhere_and_resumed_ends_identical(phase, straight, tmp_path, data_dir):
    pattern, longest = KILL_POINTS[phase]
    out = tmp_path / "run"
    _kill_and_resume(_argv(data_dir, out), out, pattern, random.Random(phase).uniform(0, longest), phase)
    got = _outcome(out)
    for key in ("mean", "details", "schedule", "baseline"):
        assert got[key] == straight[key], key
    assert got["weights"] == straight["weights"]


def test_outcome_compares_weights_bit_for_bit(straight):
    """The comparison above is not vacuous: one changed bit in one weight is a difference."""
    changed = dict(straight["weights"])
    k = next(iter(changed))
    a = np.frombuffer(changed[k], dtype=np.uint8).copy()
    a[0] ^= 1
    changed[k] = a.tobytes()
    assert changed != straight["weights"]


TRANSFORMER = ["--student", "transformer", "--student-shape", "l2-h32-a2"]


@pytest.fixture(scope="module")
def straight_transformer(tmp_path_factory, data_dir):
    """An uninterrupted run with a transformer student (attention maps from the live teacher)."""
    out = tmp_path_factory.mktemp("straight-transformer")
    p = subprocess.run(_argv(data_dir, out) + TRANSFORMER, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return _outcome(out)


@pytest.mark.parametrize("phase, pattern", [("inside the intermediate stage", "step intermediate:1"),
                                            ("inside a logits step", "step logits:2")])
def test_transformer_student_killed_and_resumed_ends_identical(phase, pattern, straight_transformer, tmp_path, data_dir):
    out = tmp_path / "run"
    _kill_and_resume(_argv(data_dir, out) + TRANSFORMER, out, pattern, random.Random(phase).uniform(0, 0.3), phase)
    got = _outcome(out)
    for key in ("mean", "details", "schedule", "baseline"):
        assert got[key] == straight_transformer[key], key
    assert got["weights"] == straight_transformer["weights"]


def _zero_shot_argv(data_dir: Path, out: Path) -> list[str]:
    return _argv(data_dir, out) + ["--zero-shot", "--ood-text", str(data_dir / "unlabeled/leipzig/sw.txt"),
                                   "--ood-limit", "300", "--adversarial", "--adversarial-generator-mlm", "5",
                                   # a tiny generator: 4 s of MLM instead of 29 (2x128 over mBERT's vocabulary)
                                   "--adversarial-generator-hidden", "32", "--adversarial-generator-layers", "1",
                                   "--adversarial-generator-heads", "1", "--student-steps", "5", "--generator-steps", "2"]


def _zero_shot_outcome(out: Path) -> dict:
    r = json.loads((out / "report.json").read_text())
    weights = load_file(str(out / "student-adversarial" / "model.safetensors"))
    return {"mean": r["mean"], "adversarial": r["adversarial"]["rounds"],
            "schedules": {v: [(s["step"], s["best_score"], s["updates"]) for s in sch] for v, sch in r["schedules"].items()},
            "weights": {k: v.tobytes() for k, v in sorted(weights.items())}}


def test_zero_shot_adversarial_student_killed_and_resumed_ends_identical(tmp_path, data_dir):
    """The generator and its optimizer travel in the student's checkpoints: a run killed inside an adversarial
    logits step and resumed ends with the same generator rounds, scores and weights as an uninterrupted one."""
    straight = tmp_path / "straight"
    p = subprocess.run(_zero_shot_argv(data_dir, straight), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    out = tmp_path / "run"
    _kill_and_resume(_zero_shot_argv(data_dir, out), out, "student[adversarial]: step logits:2", 0.3,
                     "inside an adversarial logits step")
    got, want = _zero_shot_outcome(out), _zero_shot_outcome(straight)
    assert want["adversarial"], "no generator round ran"
    for key in ("mean", "adversarial", "schedules"):
        assert got[key] == want[key], key
    assert got["weights"] == want["weights"]
