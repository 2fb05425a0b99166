"""Multi-process runs (issue 14): the process helpers, data-parallel gradients, sharded caches, and a
2-process smoke run (torchrun, gloo on CPU) against a 1-process run with the same teacher."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from safetensors.numpy import load_file

import torch

from xdistill import parallel
from xdistill.cli import main
from xdistill.errors import ConfigError
from xdistill.transfer.cache import FeatureCache

WORKER = Path(__file__).parent / "parallel_worker.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def torchrun(args: list[str], port: int, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           str(port), *args], capture_output=True, text=True, timeout=timeout, env=ENV)


def worker(case: str, tmp_path: Path, port: int) -> list[dict]:
    p = torchrun([str(WORKER), case, str(tmp_path)], port)
    assert p.returncode == 0, p.stderr[-3000:]
    return [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in range(2)]


def test_split_weighted_balances_contiguous_ranges():
    assert parallel.split_weighted([1] * 10, 2) == [(0, 5), (5, 10)]
    assert parallel.split_weighted([8, 1, 1, 1, 1], 2) == [(0, 1), (1, 5)]
    assert parallel.split_weighted([3], 2) == [(0, 1), (1, 1)]  # fewer rows than parts: one part is empty
    assert parallel.split_weighted([], 3) == [(0, 0), (0, 0), (0, 0)]
    ranges = parallel.split_weighted(np.arange(1, 101), 4)
    assert ranges[0][0] == 0 and ranges[-1][1] == 100
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))


def test_one_process_helpers_are_no_ops():
    assert parallel.world_size() == 1 and parallel.rank() == 0 and parallel.is_main()
    assert parallel.all_gather(3) == [3] and parallel.broadcast("x") == "x"
    assert parallel.main_does(lambda: 5, "x") == 5
    assert parallel.local_rows([4, 5, 6]) == [4, 5, 6]
    parallel.check_agree({"a": 1}, "x")
    parallel.shutdown()  # no group was formed: nothing to destroy


def test_mixed_precision_follows_the_launch_on_gpus_only(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    assert parallel.mixed_precision() == "no"
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    assert parallel.mixed_precision() == "no"  # float32 on CPUs whatever the launch says
    with parallel.autocast():
        assert not torch.is_autocast_enabled("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert parallel.mixed_precision() == "bf16" and parallel.autocast_dtype() == torch.bfloat16
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")
    assert parallel.autocast_dtype() == torch.float16
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    assert parallel.autocast_dtype() is None and isinstance(parallel.autocast(), contextlib.nullcontext)
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp8")
    with pytest.raises(ConfigError, match="ACCELERATE_MIXED_PRECISION.*no, fp16, bf16.*'fp8'"):
        parallel.mixed_precision()
    monkeypatch.undo()
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp8")  # the CLI names it before any work, no traceback
    assert main(["ner", "--preset", "smoke", "--data-dir", str(tmp_path), "--output-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "ACCELERATE_MIXED_PRECISION" in err and "Traceback" not in err and not (tmp_path / "o").exists()


def test_data_parallel_gradient_equals_one_process(tmp_path):
    for r in worker("gradients", tmp_path, 29541):
        assert r["world_size"] == 2
        assert r["max_diff"] < 1e-6 and r["one_row_diff"] < 1e-6


def test_embedding_gradients_are_summed_row_sparsely(tmp_path):
    for r in worker("embedding_gradients", tmp_path, 29547):
        assert r["max_diff"] < 1e-6
        assert r["rows_with_gradient"] == r["rows_used"]  # the union of both ranks' rows, nothing else


def test_disagreeing_processes_and_main_errors_stop_every_rank(tmp_path):
    ranks = worker("errors", tmp_path, 29542)
    for r in ranks:
        assert "the 2 processes of this launch disagree on data" in r["agree"] and "settings" not in r["agree"]
        assert r["main_does"] == ["ConfigError", "--resume: settings differ"]
        assert r["result"] == {"written_by": 0}
        assert r["gather"] == [0, 10]
        assert r["ranges"] == [[0, 1], [1, 6]]


def test_two_processes_copy_the_rows_an_earlier_cache_holds(tmp_path):
    for r in worker("cache_reuse", tmp_path, 29549):
        assert r["processes"] == 2 and len(r["shards"]) == 3
        assert r["reused_rows"] == 5 and r["fresh_reused_rows"] == 0
        assert r["same_offsets"] and r["max_diff"] <= 1e-3


@pytest.mark.integration
def test_two_process_run_matches_one_process(tmp_path, data_dir):
    """torchrun with 2 processes (as accelerate launch --multi_gpu starts them) runs a smoke job to the
    end with the teacher of a 1-process run: the same cache within float16 rounding, the same teacher
    scores (sharded evaluation), one writer, and a log per rank."""
    common = ["-m", "xdistill", "ner", "--preset", "smoke", "--data-dir", str(data_dir)]
    one = subprocess.run([sys.executable, *common, "--output-dir", str(tmp_path / "one"), "--threads", "1"],
                         capture_output=True, text=True, timeout=600, env=ENV)
    assert one.returncode == 0, one.stderr[-3000:]
    (tmp_path / "two").mkdir()
    shutil.copytree(tmp_path / "one" / "teacher", tmp_path / "two" / "teacher")
    two = torchrun([*common, "--output-dir", str(tmp_path / "two")], 29543)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "Traceback" not in two.stderr
    r1, r2 = (json.loads((tmp_path / d / "report.json").read_text()) for d in ("one", "two"))
    assert r1["timing"]["world_size"] == 1 and r2["timing"]["world_size"] == 2
    assert len(r2["timing"]["peak_rss_mib_per_process"]) == 2
    assert r2["mean"]["teacher_f1"] == pytest.approx(r1["mean"]["teacher_f1"], abs=1e-9)
    for name in ("transfer", "validation"):
        a, b = (FeatureCache.open(next(p for p in (tmp_path / d / "cache").glob(f"{name}-*") if ".tmp" not in p.name))
                for d in ("one", "two"))
        assert a.path.name == b.path.name  # the same key: same teacher, rows and settings
        assert len(b.meta["shards"]) == 3 and b.meta["stats"]["processes"] == 2
        for k in a.keys:
            np.testing.assert_allclose(b.arrays[k].astype(np.float32), a.arrays[k].astype(np.float32),
                                       rtol=1e-3, atol=1e-3)
    assert (tmp_path / "two" / "logs" / "rank-1.log").is_file()
    assert not (tmp_path / "two" / "logs" / "rank-0.log").exists()
    assert "[rank 1]" in (tmp_path / "two" / "logs" / "rank-1.log").read_text()
    assert json.loads((tmp_path / "two" / "student" / "config.json").read_text())["xdistill_student"] is True
    assert not list((tmp_path / "two" / "cache").glob("*.tmp*"))
    # each process read the transfer split's rows from its own files (OUTPUT/rows/transfer.rankR), the same rows
    rows = {d: sorted(p.name for p in (tmp_path / d / "rows").iterdir()) for d in ("one", "two")}
    assert rows == {"one": ["transfer.rank0"], "two": ["transfer.rank0", "transfer.rank1"]}
    for field in ("input_ids", "labels", "word_index"):
        one_ids = np.load(tmp_path / "one" / "rows" / "transfer.rank0" / f"{field}.npy")
        for rank in (0, 1):
            np.testing.assert_array_equal(np.load(tmp_path / "two" / "rows" / f"transfer.rank{rank}" / f"{field}.npy"),
                                          one_ids)


def _rank_pid(launcher: subprocess.Popen, rank: int) -> int | None:
    """The process id of rank ``rank`` among the launcher's children (their ``RANK`` variable)."""
    for child in psutil.Process(launcher.pid).children(recursive=True):
        try:
            if child.environ().get("RANK") == str(rank) and "xdistill" in " ".join(child.cmdline()):
                return child.pid
        except psutil.Error:
            continue
    return None


def _outcome(out: Path) -> dict:
    r = json.loads((out / "report.json").read_text())
    weights = load_file(str(out / "student" / "model.safetensors"))
    return {"mean": r["mean"], "schedule": [(s["step"], s["best_score"], s["updates"]) for s in r["schedule"]],
            "weights": {k: v.tobytes() for k, v in sorted(weights.items())}}


@pytest.mark.integration
def test_a_killed_rank_stops_the_launch_and_resume_ends_identical(tmp_path, data_dir):
    """SIGKILL rank 1 inside distillation: the launcher stops rank 0, nothing half-written is left in the
    cache, and ``--resume`` with 2 processes ends bit-identical to an uninterrupted 2-process run."""
    def argv(out):
        return [str(p) for p in ("-m", "xdistill", "ner", "--preset", "smoke", "--langs", "sw", "--data-dir", data_dir,
                                 "--output-dir", out)]

    straight = torchrun(argv(tmp_path / "straight"), 29544)
    assert straight.returncode == 0, straight.stderr[-3000:]
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29545", *argv(out)]
    launcher = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline, killed = time.monotonic() + 300, False
    while launcher.poll() is None and time.monotonic() < deadline and not killed:
        log = out / "run.log"
        if log.is_file() and "student[unlabeled]: step representation:2" in log.read_text(errors="replace"):
            pid = _rank_pid(launcher, 1)
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                killed = True
        time.sleep(0.02)
    assert killed, "the run ended before the kill point"
    _, err = launcher.communicate(timeout=120)
    assert launcher.returncode != 0
    assert "Signal 9" in err or "SIGKILL" in err or "exitcode" in err
    assert not (out / "report.json").exists()
    assert not [p for p in (out / "cache").iterdir() if ".tmp" in p.name]
    resumed = torchrun([*argv(out), "--resume"], 29546)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _outcome(out) == _outcome(tmp_path / "straight")


@pytest.mark.integration
def test_two_machine_launch_runs_a_smoke_job(tmp_path, data_dir):
    """Two ``accelerate launch --num_machines 2`` (machine ranks 0 and 1, one process each, both on this
    machine over 127.0.0.1), as a 2-node cluster launches them: the smoke job runs to the end."""
    out = tmp_path / "out"
    launches = [subprocess.Popen(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "2", "--machine_rank",
         str(rank), "--num_processes", "2", "--main_process_ip", "127.0.0.1", "--main_process_port", "29548",
         "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "xdistill", "ner", "--preset", "smoke", "--langs",
         "sw", "--data-dir", str(data_dir), "--output-dir", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV) for rank in (0, 1)]
    results = [p.communicate(timeout=600) for p in launches]
    for p, (_, err) in zip(launches, results):
        assert p.returncode == 0, err[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["timing"]["world_size"] == 2
    assert json.loads(results[0][0])["output_dir"] == str(out)  # the main process prints the summary
    assert results[1][0].strip() == ""
    assert (out / "logs" / "rank-1.log").is_file()
