"""``torchrun --nproc-per-node 2 -m purelearn train``: two gloo ranks on loopback equal one process,
resume exactly, write the run folder once, and stop together with one message when a rank fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from purelearn import checkpoint, tree
from purelearn.app import ranks as ranks_mod
from purelearn.app.cli import main
from purelearn.app.errors import ConfigError
from purelearn.app.loop import _check_shards

RUN = ["--limit", "60", "--T", "4", "--hidden", "16", "--batch-size", "14", "--no-plot", "--quiet"]
TIMEOUT_S = 180


def torchrun(*args: str, cwd: Path, timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --standalone --nproc-per-node 2 *args`` (loopback rendezvous)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent.parent)}
    env.pop("WORLD_SIZE", None)
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "--monitor-interval", "0.1", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One process for 2 epochs; two ranks for 1 epoch, resumed on two ranks to 2."""
    root = tmp_path_factory.mktemp("ranks")
    assert main(["train", "--epochs", "2", *RUN, "--out", str(root / "one")]) == 0
    first = torchrun("-m", "purelearn", "train", "--epochs", "1", *RUN, "--out", str(root / "two"), cwd=root)
    assert first.returncode == 0, first.stderr[-3000:]
    second = torchrun("-m", "purelearn", "train", "--resume", str(root / "two"), "--epochs", "2", "--no-plot",
                      "--quiet", cwd=root)
    assert second.returncode == 0, second.stderr[-3000:]
    return {"root": root, "one": root / "one", "two": root / "two", "stdout": first.stdout + second.stdout}


def test_two_ranks_resumed_equal_one_process(runs):
    one = checkpoint.load(str(runs["one"] / "checkpoint.pt"))
    two = checkpoint.load(str(runs["two"] / "checkpoint.pt"))
    assert tree.max_abs_diff(one["carry"].params, two["carry"].params) <= 1e-5
    assert tree.max_abs_diff(one["carry"].opt_state, two["carry"].opt_state) <= 1e-5
    assert torch.equal(one["data_generator"], two["data_generator"])  # same data order and spike draws
    m_one = json.loads((runs["one"] / "metrics.json").read_text())
    m_two = json.loads((runs["two"] / "metrics.json").read_text())
    assert (m_one["world_size"], m_two["world_size"]) == (1, 2)
    for a, b in zip(m_one["history"], m_two["history"], strict=True):
        for key in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
            assert abs(a[key] - b[key]) <= 1e-5, (key, a, b)


def test_rank_zero_alone_writes_and_prints(runs):
    assert sorted(p.name for p in runs["two"].iterdir()) == ["checkpoint.pt", "metrics.json"]
    assert runs["stdout"].count("test accuracy") == 2  # one result line per launch: rank 0's
    assert "on 2 ranks" in runs["stdout"]


def test_a_folder_holding_a_run_stops_both_ranks_with_one_message(runs):
    t0 = time.perf_counter()
    done = torchrun("-m", "purelearn", "train", "--epochs", "1", *RUN, "--out", str(runs["one"]), cwd=runs["root"])
    assert time.perf_counter() - t0 < 60
    assert done.returncode != 0
    assert done.stderr.count("already holds a run") == 1, done.stderr[-3000:]
    assert "(rank 0 of 2): error:" in done.stderr


def test_a_rank_that_fails_in_training_stops_the_job_with_its_message(tmp_path):
    script = tmp_path / "failing_rank.py"
    script.write_text(
        "import os, sys\n"
        "from purelearn.app import task\n"
        "from purelearn.app.cli import main\n"
        "calls, original = [0], task.targets\n"
        "def failing(*args):\n"
        "    calls[0] += 1\n"
        "    if os.environ['RANK'] == '1' and calls[0] == 3:\n"
        "        raise ValueError('injected failure on rank 1')\n"
        "    return original(*args)\n"
        "task.targets = failing\n"
        "sys.exit(main(sys.argv[1:]))\n")
    t0 = time.perf_counter()
    done = torchrun(str(script), "train", "--epochs", "3", *RUN, "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert time.perf_counter() - t0 < 90, "the job should stop, not wait for the collective timeout"
    assert done.returncode != 0
    assert done.stderr.count("injected failure on rank 1") == 1, done.stderr[-3000:]
    assert "(rank 1 of 2): error: injected failure" in done.stderr
    assert not (tmp_path / "run" / "metrics.json").exists()


# ------------------------------------------------------------------------------------- in one process


def test_batches_too_small_for_the_ranks_are_refused_naming_the_flag():
    four = ranks_mod.Ranks(rank=0, world=4)
    _check_shards(four, n_train=60, batch_size=14, n_test=8)  # 14, 14, 14, 14, 4: every rank gets one
    with pytest.raises(ConfigError, match="`batch_size` 3 .* fewer than the 4 ranks") as err:
        _check_shards(four, n_train=60, batch_size=3, n_test=8)
    assert err.value.field == "batch_size"
    with pytest.raises(ConfigError, match="batch of 2 sample"):
        _check_shards(four, n_train=58, batch_size=14, n_test=8)  # the last batch: 2
    with pytest.raises(ConfigError, match="test set has 3"):
        _check_shards(four, n_train=60, batch_size=14, n_test=3)


def test_compare_and_data_refuse_to_run_under_torchrun(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["compare", "--algos", "fptt"]) == 2
    assert "compare runs in one process" in capsys.readouterr().err


def test_a_world_of_one_is_a_plain_process(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert ranks_mod.from_environment() is None
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ConfigError, match="WORLD_SIZE='two' must be an integer"):
        ranks_mod.from_environment()
