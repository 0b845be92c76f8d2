"""A sweep sharded over two gloo processes on loopback (tests/_sweep_worker.py) equals the one-process
sweep: the same rows in the same order, the same parameters, the same table written once by rank 0;
a grid smaller than the ranks and a folder that already holds a sweep stop every rank promptly."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from _launch import launch
from _sweep_worker import AXES, CONFIG

from purelearn import app, tree

WORKER = Path(__file__).parent / "_sweep_worker.py"
FLOATS = ("test_accuracy", "test_loss", "train_accuracy", "train_loss")
TOL = 1e-6  # float32


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("sweep_ranks")
    procs = launch(WORKER, str(out), timeout=120)
    for p in procs:
        assert p.returncode == 0, p.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    params = [torch.load(out / f"params{r}.pt") for r in range(2)]
    return {"out": out, "ranks": ranks, "params": params}


@pytest.fixture(scope="module")
def one_process(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("sweep_one") / "sweep"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workers
    try:
        result = app.sweep_fit(app.Config(**CONFIG), AXES, str(out), plot=False)
    finally:
        torch.set_num_threads(threads)
    return result | {"out": out}


def _close(a: dict, b: dict) -> bool:
    return all(abs(a[k] - b[k]) <= TOL for k in FLOATS) and all(
        abs(x - y) <= TOL for x, y in zip(a["test_accuracy_per_epoch"], b["test_accuracy_per_epoch"], strict=True))


def test_every_rank_holds_the_one_process_rows_and_params(two_ranks, one_process):
    expected = one_process["rows"]
    for rank, (result, params) in enumerate(zip(two_ranks["ranks"], two_ranks["params"], strict=True)):
        rows = result["rows"]
        assert [(r["lr"], r["alpha"]) for r in rows] == [(r["lr"], r["alpha"]) for r in expected], rank
        assert [r["rank"] for r in rows] == [r["rank"] for r in expected], rank
        assert all(_close(a, b) for a, b in zip(rows, expected, strict=True)), (rank, rows, expected)
        assert tree.max_abs_diff(params, one_process["params"]) <= TOL, rank
        assert result["params_device"] == "cpu"
        assert result["world_size"] == 2 and len(result["time_s_per_rank"]) == 2
        assert result["time_s"] == result["time_s_per_rank"][0] == two_ranks["ranks"][0]["time_s"]
    assert one_process["world_size"] == 1 and one_process["time_s_per_rank"] == [one_process["time_s"]]


def test_rank_0_alone_locks_prints_and_writes_the_one_process_table(two_ranks, one_process):
    zero, one = two_ranks["ranks"]
    folder = str(two_ranks["out"] / "sweep")
    assert zero["calls"] == [f"hold {folder}", f"write_csv {folder}/sweep.csv", f"write_json {folder}/sweep.json"]
    assert one["calls"] == []
    assert "done in" in zero["printed"] and one["printed"] == ""

    def table(path: Path) -> list[dict]:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))

    sharded, single = table(two_ranks["out"] / "sweep" / "sweep.csv"), table(one_process["out"] / "sweep.csv")
    assert [(r["rank"], r["lr"], r["alpha"]) for r in sharded] == [(r["rank"], r["lr"], r["alpha"]) for r in single]
    assert all(abs(float(a[k]) - float(b[k])) <= TOL for a, b in zip(sharded, single, strict=True) for k in FLOATS)
    written = json.loads((two_ranks["out"] / "sweep" / "sweep.json").read_text())
    assert written["world_size"] == 2 and len(written["time_s_per_rank"]) == 2
    assert written["ranked"] == json.loads((one_process["out"] / "sweep.json").read_text())["ranked"]


def test_a_grid_smaller_than_the_ranks_is_refused_on_every_rank(two_ranks):
    """Rank 0 raises the ConfigError, the others stop with its message and exit code (one message printed)."""
    message = ("sweep: 1 configurations cannot be split over 2 ranks; give at least 2 configurations or launch "
               "fewer ranks")
    zero, one = (result["too_few"] for result in two_ranks["ranks"])
    assert zero["type"] == "ConfigError" and zero["message"] == message
    assert one["type"] == "StoppedByRank" and one["message"] == f"rank 0 failed: {message}" and one["exit_code"] == 2
    assert zero["seconds"] < 10 and one["seconds"] < 10


def test_a_folder_holding_a_sweep_stops_rank_0_and_then_the_others(two_ranks):
    zero, one = (result["existing"] for result in two_ranks["ranks"])
    assert zero["type"] == "ConfigError" and "already holds a sweep" in zero["message"]
    assert one["type"] == "StoppedByRank" and one["exit_code"] == 2
    assert "rank 0 failed" in one["message"] and "already holds a sweep" in one["message"]
    assert zero["seconds"] < 10 and one["seconds"] < 10
