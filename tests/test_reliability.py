"""Reliability: damaged caches are recomputed, damaged checkpoints refused, one run per output folder,
--resume only with the run's settings, files readable under the user's umask."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tiny_models as tm
from tiny import make_adapter, make_student, make_teacher, make_tokenizer, sentences, single_thread  # noqa: F401
from xdistill.config import (DistillArguments, NERDataArguments, RunArguments, RunSettings, StudentArguments,
                             TeacherArguments)
from xdistill.data.types import Feature
from xdistill.distill import DataSource, DistillData, Distiller, StageContext, Trainee, build_stages, make_schedule
from xdistill.errors import ConfigError
from xdistill.pipeline.folder import OWNER, RECORD, RunFolder, differences, fingerprint, result_settings
from xdistill.teachers.training import CHECKSUMS, resume_checkpoint
from xdistill.transfer import CachedTargets, label_rows
from xdistill.utils import atomic_write_json, file_digest, peak_rss_mib


# --------------------------------------------------------------------------- the teacher-output cache


@pytest.fixture
def tiny(tmp_path):
    """A tiny random tokenizer, NER adapter and teacher."""
    tok = make_tokenizer(tmp_path / "tok")
    return tok, make_adapter(), tm.teacher_of(make_teacher(tok), tok)


@pytest.fixture
def labeled(tmp_path, tiny):
    tok, adapter, teacher = tiny
    enc = adapter.encode(sentences(8, seed=1, labeled=False), tok, 16)
    features = [Feature("hidden_states", 2), Feature("logits")]

    def run():
        return label_rows(teacher, adapter.level, enc, features, tmp_path / "cache", max_tokens=64, name="transfer")

    return run


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "delete", "meta.json"])
def test_a_damaged_cache_is_computed_again(labeled, damage, caplog):
    first, stats = labeled()
    assert stats["cached"] is False
    reference = np.array(first.arrays["logits"])
    path = first.path / "logits.0.npy"
    if damage == "flip a byte":
        data = bytearray(path.read_bytes())
        data[-1] ^= 0xFF
        path.write_bytes(bytes(data))  # same size: only the checksum tells
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "delete":
        path.unlink()
    else:
        (first.path / "meta.json").write_text("{not json")
    with caplog.at_level(logging.WARNING):
        again, stats = labeled()
    assert stats["cached"] is False and "is damaged" in caplog.text
    np.testing.assert_array_equal(np.array(again.arrays["logits"]), reference)
    assert labeled()[1]["cached"] is True  # and the recomputed cache is read back


# --------------------------------------------------------------------------- student checkpoints


@pytest.fixture
def distill_world(tmp_path, tiny):
    tok, adapter, teacher = tiny
    transfer = adapter.encode(sentences(8, seed=1, labeled=False), tok, 16)
    labeled = adapter.encode(sentences(8, seed=2), tok, 16)
    val = sentences(4, seed=3)
    validation = adapter.encode(val, tok, 16)
    stages = build_stages(["logits", "labeled"], DistillArguments(), StageContext(2))
    cache, _ = label_rows(teacher, adapter.level, transfer, [Feature("logits")], tmp_path / "cache", 64, "t")

    def distiller():
        trainee = Trainee(make_student(tok, teacher.model, [transfer, labeled], dropout=0.2),
                          [m for s in stages for m in s.matches], {})
        data = DistillData({"transfer": DataSource(transfer, CachedTargets(cache, adapter.level)),
                            "labeled": DataSource(labeled)}, DataSource(validation), adapter.gold(val), tok.pad_token_id)
        return Distiller(trainee, adapter, DistillArguments(batch_size=4, max_epochs=1, patience=1), data,
                         tmp_path / "ckpt", seed=0)

    return distiller, stages, tmp_path / "ckpt"


def test_a_truncated_student_checkpoint_is_refused(distill_world):
    distiller, stages, ckpt = distill_world
    d = distiller()
    steps = make_schedule(d.trainee, stages, gradual=True)
    d.run(steps[:2], max_epochs=1)
    prog = json.loads((ckpt / "progress.json").read_text())
    path = ckpt / prog["checkpoint"]["file"]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ConfigError) as e:
        distiller().run(steps[:2], max_epochs=1, resume=True)
    msg = str(e.value)
    assert str(path) in msg and "bytes" in msg and "--resume" in msg and f"Remove {ckpt}" in msg


def test_a_changed_student_checkpoint_of_the_same_size_is_refused(distill_world):
    distiller, stages, ckpt = distill_world
    steps = make_schedule(distiller().trainee, stages, gradual=True)
    distiller().run(steps[:1], max_epochs=1)
    path = ckpt / json.loads((ckpt / "progress.json").read_text())["checkpoint"]["file"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="SHA-256 differs"):
        distiller().run(steps[:1], max_epochs=1, resume=True)


# --------------------------------------------------------------------------- teacher (Trainer) checkpoints


def _trainer_checkpoint(root, step: int, with_checksums: bool = True):
    d = root / f"checkpoint-{step}"
    d.mkdir(parents=True)
    for name in ("model.safetensors", "optimizer.pt", "trainer_state.json"):
        (d / name).write_bytes(os.urandom(64))
    if with_checksums:
        atomic_write_json(d / CHECKSUMS, {p.name: file_digest(p) for p in d.iterdir()})
    return d


def test_teacher_resume_skips_an_unfinished_checkpoint(tmp_path, caplog):
    complete = _trainer_checkpoint(tmp_path, 10)
    unfinished = _trainer_checkpoint(tmp_path, 20, with_checksums=False)  # killed while the Trainer wrote it
    with caplog.at_level(logging.WARNING):
        assert resume_checkpoint(tmp_path) == complete
    assert not unfinished.exists() and "unfinished checkpoint" in caplog.text
    assert resume_checkpoint(tmp_path / "none") is None


def test_teacher_resume_refuses_a_truncated_checkpoint(tmp_path):
    d = _trainer_checkpoint(tmp_path, 30)
    (d / "optimizer.pt").write_bytes(b"x")
    with pytest.raises(ConfigError) as e:
        resume_checkpoint(tmp_path)
    assert str(d) in str(e.value) and "optimizer.pt" in str(e.value) and "Remove" in str(e.value)


# --------------------------------------------------------------------------- the output folder


def _settings(out, **run):
    return RunSettings(NERDataArguments(source="hub"), TeacherArguments(), StudentArguments(), DistillArguments(),
                       RunArguments(output_dir=str(out), **run))


def test_a_second_run_into_a_folder_in_use_stops_naming_the_holder(tmp_path):
    with RunFolder(tmp_path, _settings(tmp_path), command="python -m xdistill ner (first)"):
        owner = json.loads((tmp_path / OWNER).read_text())
        assert owner["pid"] == os.getpid()
        with pytest.raises(ConfigError) as e:
            RunFolder(tmp_path, _settings(tmp_path), command="second").__enter__()
        msg = str(e.value)
        assert f"--output-dir {tmp_path}: in use by process {os.getpid()}" in msg and "(first)" in msg
    assert not (tmp_path / OWNER).exists()  # released
    with RunFolder(tmp_path, _settings(tmp_path)):
        pass


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path, caplog):
    atomic_write_json(tmp_path / OWNER, {"pid": 2 ** 22 + 12345, "command": "a killed run"})
    with caplog.at_level(logging.WARNING), RunFolder(tmp_path, _settings(tmp_path)):
        assert json.loads((tmp_path / OWNER).read_text())["pid"] == os.getpid()
    assert "took over the lock left by process" in caplog.text and "no longer running" in caplog.text


def test_resume_with_other_settings_lists_the_differences(tmp_path):
    with RunFolder(tmp_path, _settings(tmp_path)):
        pass
    changed = RunSettings(NERDataArguments(source="hub"), TeacherArguments(), StudentArguments(hidden_size=16),
                          DistillArguments(lr=1e-3), RunArguments(output_dir=str(tmp_path), resume=True))
    with pytest.raises(ConfigError) as e:
        RunFolder(tmp_path, changed).__enter__()
    msg = str(e.value)
    assert "--lr: 0.002 -> 0.001" in msg and "--hidden-size: 600 -> 16" in msg and "another --output-dir" in msg
    # settings that do not change results may differ: threads, the preset's name, the folder
    same = _settings(tmp_path, resume=True, threads=3, preset="smoke")
    with RunFolder(tmp_path, same):
        pass
    assert json.loads((tmp_path / RECORD).read_text())["settings"] == result_settings(same, None)


def test_a_run_recorded_before_an_option_existed_resumes_at_its_default(tmp_path, caplog):
    with RunFolder(tmp_path, _settings(tmp_path)):
        pass
    record = json.loads((tmp_path / RECORD).read_text())  # as an xdistill without --lr-schedule wrote it
    del record["settings"]["distill"]["lr_schedule"]
    atomic_write_json(tmp_path / RECORD, {"fingerprint": fingerprint(record["settings"]), "settings": record["settings"]})
    linear = RunSettings(NERDataArguments(source="hub"), TeacherArguments(), StudentArguments(),
                         DistillArguments(lr_schedule="linear"), RunArguments(output_dir=str(tmp_path), resume=True))
    with pytest.raises(ConfigError, match="--lr-schedule: \\(none\\) -> linear"):
        RunFolder(tmp_path, linear).__enter__()
    with caplog.at_level(logging.INFO), RunFolder(tmp_path, _settings(tmp_path, resume=True)):
        pass
    assert "recorded by an older xdistill without --lr-schedule" in caplog.text
    assert json.loads((tmp_path / RECORD).read_text())["settings"]["distill"]["lr_schedule"] == "constant"


def test_differences_name_options():
    assert differences({"distill": {"lr": 1, "x_y": 2}}, {"distill": {"lr": 1, "x_y": 3}}) == ["--x-y: 2 -> 3"]


def test_an_unwritable_output_dir_names_the_option(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=f"--output-dir {blocker}/out: cannot write there"):
        RunFolder.check_writable(blocker / "out")


def test_files_are_written_with_the_umask_mode(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "a.json", {"x": 1})
        assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
        os.umask(0o077)
        atomic_write_json(tmp_path / "b.json", {"x": 1})
        assert stat.S_IMODE((tmp_path / "b.json").stat().st_mode) == 0o600
    finally:
        os.umask(old)


@pytest.mark.integration
def test_launched_processes_refuse_what_runs_in_one_process_only(tmp_path, data_dir):
    """Two ranks (``torchrun``, as ``accelerate launch`` starts them) with generated transfer text, which
    one process writes: each stops at once, before writing anything, with an error that says how to launch."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                        "29533", "-m", "xdistill", "classify", "--preset", "smoke", "--data-dir",
                        str(data_dir), "--output-dir", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode != 0
    assert p.stderr.count("error: 2 processes were launched: --augment generate") == 2
    assert "--augment none --transfer unlabeled" in p.stderr
    assert "Traceback (most recent call last)" not in p.stderr.split("error: 2 processes")[0]
    assert not (tmp_path / "out").exists()


def test_peak_rss_is_the_process_own_not_its_parents():
    """A child started by a large process reports its own peak: ``ru_maxrss`` would report at least
    the parent's, as Linux keeps the peak of the image before ``exec``."""
    if not Path("/proc/self/status").exists():
        pytest.skip("VmHWM is Linux's; elsewhere peak_rss_mib is getrusage's")
    ballast = np.ones(768 * 1024 * 1024, dtype=np.uint8)  # every page written: resident
    parent = peak_rss_mib()
    child = subprocess.run([sys.executable, "-c", "from xdistill.utils import peak_rss_mib; print(peak_rss_mib())"],
                           capture_output=True, text=True, check=True)
    del ballast
    assert parent > 768
    assert float(child.stdout) < parent - 512, (float(child.stdout), parent)
