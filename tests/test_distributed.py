"""Training under torchrun (gloo on CPU): 2 ranks reach the weights of 1 rank, and a dead rank fails the job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

from textdiffseg import train
from textdiffseg.checkpoint import read_checkpoint

pytestmark = pytest.mark.slow

# Same global batch and seed on 1 and on 2 ranks; only float summation order differs (gloo all-reduce, the
# per-rank partial sums), so after 3 AdamW steps the weights agree to well within this.
WEIGHT_TOLERANCE = 1e-4


def _args(data: Path, out: Path, bert: Path, steps: int) -> list[str]:
    return ["--data", str(data), "--out", str(out), "--preset", "tiny", "--steps", str(steps), "--no-progress",
            "--text-encoder", str(bert), "--seed", "3", "--save-every", "1000", "--prompts-per-volume", "2"]


def _torchrun(args: list[str], ranks: int = 2) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}",
               "-m", "textdiffseg.train", *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def test_two_ranks_match_one_rank(tmp_path: Path, train_phantom_dir: Path, tiny_bert_dir: Path) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = tmp_path / "one"
        assert train.main([*_args(train_phantom_dir, single, tiny_bert_dir, 3), "--global-batch", "2"]) == 0
    finally:
        torch.set_num_threads(threads)
    double = tmp_path / "two"
    process = _torchrun(_args(train_phantom_dir, double, tiny_bert_dir, 3))
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-3000:]
    assert '"world_size": 2' in output
    a = read_checkpoint(single / "model.pt")["state_dict"]
    b = read_checkpoint(double / "model.pt")["state_dict"]
    assert a.keys() == b.keys()
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    print(f"max |w_1rank - w_2ranks| after 3 steps: {worst:.2e}")
    assert worst < WEIGHT_TOLERANCE, f"max weight difference {worst:.2e}"
    lines = (double / "history.jsonl").read_text().splitlines()
    assert len(lines) == 3, "only rank 0 writes the history"


def test_uneven_global_batch_is_refused(tmp_path: Path, train_phantom_dir: Path, tiny_bert_dir: Path) -> None:
    process = _torchrun([*_args(train_phantom_dir, tmp_path / "r", tiny_bert_dir, 2), "--global-batch", "3"])
    output, _ = process.communicate(timeout=300)
    assert process.returncode != 0
    assert "not a multiple of the 2 ranks" in output


def test_a_killed_rank_fails_the_job_without_hanging(tmp_path: Path, train_phantom_dir: Path,
                                                     tiny_bert_dir: Path) -> None:
    out = tmp_path / "crash"
    process = _torchrun(_args(train_phantom_dir, out, tiny_bert_dir, 100000))
    try:
        deadline = time.monotonic() + 240
        while not (out / "history.jsonl").is_file():  # training has started on every rank
            assert process.poll() is None and time.monotonic() < deadline, "training did not start"
            time.sleep(0.5)
        workers = [p for p in psutil.Process(process.pid).children(recursive=True)
                   if p.environ().get("RANK") == "1"]
        assert workers, "rank 1 not found"
        started = time.monotonic()
        workers[0].send_signal(signal.SIGKILL)
        output, _ = process.communicate(timeout=180)
        assert process.returncode != 0, output[-2000:]
        print(f"torchrun exited {process.returncode} {time.monotonic() - started:.1f} s after rank 1 was killed")
        assert time.monotonic() - started < 180
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert not (out / "model.pt").exists(), "a failed job must not look finished"
