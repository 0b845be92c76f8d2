"""The command line: train end to end, exact resume, vmapped sweeps, compare, help and one-line errors."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import subprocess
import sys

import optree
import pytest
import torch

from purelearn import app, checkpoint, data, online
from purelearn.app.cli import main

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

# tiny settings: 64 training samples, T=4, 16 hidden neurons, two batches per epoch
TINY = ["--limit", "64", "--T", "4", "--hidden", "16", "--batch-size", "32"]
TINY_SEQUENTIAL = ["--limit", "64", "--hidden", "16", "--batch-size", "32"]  # seq-digits: T = 64 pixels
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _leaves_equal(a, b) -> bool:
    la, lb = optree.tree_leaves(a), optree.tree_leaves(b)
    return optree.tree_structure(a) == optree.tree_structure(b) and all(
        x.dtype == y.dtype and torch.equal(x, y) for x, y in zip(la, lb, strict=True))


# ----------------------------------------------------------------------------- train


def test_train_runs_end_to_end_and_writes_metrics_plot_and_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, stderr = _run(capsys, "train", "--epochs", "1", *TINY, "--out", str(out))
    assert code == 0, stderr
    assert "test accuracy" in stdout and "peak memory" in stdout and "cpu_max_rss" in stdout
    assert "epoch 1/1 [" in stderr and "loss" in stderr and "acc" in stderr  # the progress line
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["algo"] == "fptt" and metrics["config"]["model"] == "mlp"
    assert 0 <= metrics["test_accuracy"] <= 1 and metrics["epochs_completed"] == 1
    assert metrics["peak_memory_kind"] == "cpu_max_rss" and metrics["peak_memory_bytes"] > 0
    assert metrics["train_time_s"] > 0 and len(metrics["history"]) == 1
    assert metrics["data"].pop("fingerprint").startswith("sha256:")
    assert metrics["data"] == {"name": "digits", "encoding": "rate", "T": 4, "train_size": 64, "test_size": 16,
                               "num_classes": 10, "step_shape": [1, 8, 8]}
    assert (out / "learning_curve.png").read_bytes()[:8] == PNG_MAGIC
    state = checkpoint.load(out / "checkpoint.pt")
    assert state["epoch"] == 1 and isinstance(state["carry"], online.FPTTCarry)


@pytest.mark.parametrize("algo, data", [("fptt", "digits"), ("fptt-dual", "digits"), ("ottt", "digits"),
                                        ("sltt-k", "digits"), ("bptt", "digits"), ("fptt", "seq-digits")])
def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path, capsys, algo, data):
    full, part = tmp_path / "full", tmp_path / "part"
    tiny = TINY if data == "digits" else TINY_SEQUENTIAL
    run = ["train", "--algo", algo, "--data", data, *tiny, "--no-plot"]  # seq-digits: FPTT in windows of 8
    assert _run(capsys, *run, "--epochs", "2", "--out", str(full))[0] == 0
    assert _run(capsys, *run, "--epochs", "1", "--out", str(part))[0] == 0
    code, stdout, stderr = _run(capsys, "train", "--resume", str(part), "--epochs", "2", "--no-plot")
    assert code == 0, stderr
    a, b = checkpoint.load(full / "checkpoint.pt"), checkpoint.load(part / "checkpoint.pt")
    assert a["epoch"] == b["epoch"] == 2
    for x, y in zip(optree.tree_leaves(a["carry"].params), optree.tree_leaves(b["carry"].params), strict=True):
        assert torch.equal(x, y)
    assert _leaves_equal(a["carry"], b["carry"])  # the whole carry: states, optimizer, algorithm state
    assert torch.equal(a["data_generator"], b["data_generator"])
    assert a["history"][1]["test_loss"] == b["history"][1]["test_loss"]


def test_resume_after_an_interrupt_finishes_the_configured_epochs(tmp_path, capsys, monkeypatch):
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert _run(capsys, "train", "--epochs", "2", *TINY, "--out", str(full), "--no-plot")[0] == 0
    real_save = checkpoint.save

    def interrupt_at_epoch_2(path, payload):
        if payload["epoch"] == 2:
            raise KeyboardInterrupt
        real_save(path, payload)

    monkeypatch.setattr(checkpoint, "save", interrupt_at_epoch_2)
    code, _, stderr = _run(capsys, "train", "--epochs", "2", *TINY, "--out", str(cut), "--no-plot")
    assert code == 130 and "--resume" in stderr
    monkeypatch.setattr(checkpoint, "save", real_save)
    assert checkpoint.load(cut / "checkpoint.pt")["epoch"] == 1
    assert _run(capsys, "train", "--resume", str(cut), "--no-plot")[0] == 0  # no --epochs: the run's own 2
    a, b = checkpoint.load(full / "checkpoint.pt"), checkpoint.load(cut / "checkpoint.pt")
    assert _leaves_equal(a["carry"], b["carry"])
    metrics = json.loads((cut / "metrics.json").read_text())
    assert metrics["epochs_completed"] == 2 and len(metrics["history"]) == 2


def test_train_refuses_to_overwrite_a_run_unless_asked(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert _run(capsys, "train", "--epochs", "1", *TINY, "--out", out, "--no-plot")[0] == 0
    code, _, err = _run(capsys, "train", "--epochs", "1", *TINY, "--out", out, "--no-plot")
    assert code == 2 and "already holds a run" in err and "--resume" in err
    assert _run(capsys, "train", "--epochs", "1", *TINY, "--out", out, "--no-plot", "--overwrite")[0] == 0


def test_train_on_a_user_file_with_the_recurrent_model(tmp_path, capsys):
    path = tmp_path / "seq.pt"
    x = torch.rand(40, 6, 3, generator=torch.Generator().manual_seed(0))
    torch.save({"x": x, "y": (x[:, :, 0].sum(1) > 3).long(), "encoding": "none"}, path)
    out = tmp_path / "run"
    code, stdout, err = _run(capsys, "train", "--data", str(path), "--model", "alif-rnn", "--algo", "bptt",
                             "--epochs", "1", "--hidden", "8", "--out", str(out), "--no-plot")
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"]["T"] == 6 and metrics["data"]["num_classes"] == 2 and metrics["data"]["train_size"] == 32


# ----------------------------------------------------------------------------- sweep


def test_sweep_of_a_2x2_grid_writes_outputs_and_equals_single_runs(tmp_path, capsys):
    out = tmp_path / "sweep"
    code, stdout, err = _run(capsys, "sweep", "--lr", "0.003,0.01", "--alpha", "0.05:0.1:2", "--epochs", "1",
                             *TINY, "--out", str(out))
    assert code == 0, err
    assert "rank" in stdout.splitlines()[0] and "one vmapped program" in stdout
    result = json.loads((out / "sweep.json").read_text())
    assert result["axes"] == ["lr", "alpha"] and len(result["rows"]) == 4
    with open(out / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["rank"]) for r in rows] == [1, 2, 3, 4]
    accs = [float(r["test_accuracy"]) for r in rows]
    assert accs == sorted(accs, reverse=True)
    assert (out / "sweep.png").read_bytes()[:8] == PNG_MAGIC
    base = app.Config(epochs=1, limit=64, T=4, hidden=16, batch_size=32, data_seed=0)
    for row in result["rows"]:
        single = app.fit(dataclasses.replace(base, lr=row["lr"], alpha=row["alpha"]))
        for key in ("test_accuracy", "test_loss", "train_accuracy", "train_loss"):
            assert abs(row[key] - single.metrics[key]) <= 1e-5, (row, key, single.metrics[key])


def test_sweep_over_one_axis_draws_a_line_plot(tmp_path, capsys):
    out = tmp_path / "sweep"
    code, _, err = _run(capsys, "sweep", "--algo", "bptt", "--seed", "0,1", "--epochs", "1", *TINY,
                        "--out", str(out), "--quiet")
    assert code == 0, err
    assert (out / "sweep.png").read_bytes()[:8] == PNG_MAGIC
    assert [r["seed"] for r in json.loads((out / "sweep.json").read_text())["rows"]] == [0, 1]


# ----------------------------------------------------------------------------- compare


@pytest.mark.slow
def test_compare_runs_each_algorithm_in_its_own_process(tmp_path, capsys):
    out = tmp_path / "cmp"
    code, stdout, err = _run(capsys, "compare", "--algos", "fptt,bptt", "--epochs", "1", *TINY, "--window", "2",
                             "--out", str(out), "--no-plot")
    assert code == 0, err  # --window is FPTT's: it reaches fptt, and bptt (which refuses it) runs without
    configs = json.loads((out / "compare.json").read_text())["configs"]
    assert configs["fptt"]["window"] == 2 and configs["bptt"]["window"] is None
    assert json.loads((out / "fptt" / "metrics.json").read_text())["config"]["window"] == 2
    lines = stdout.splitlines()
    assert lines[0].split()[:3] == ["algo", "model", "test"]
    assert any(line.startswith("fptt ") for line in lines) and any(line.startswith("bptt ") for line in lines)
    table = json.loads((out / "compare.json").read_text())["rows"]
    assert [r["algo"] for r in table] == ["fptt", "bptt"]
    for r in table:
        assert r["peak_memory_kind"] == "cpu_max_rss" and r["peak_memory_mib"] > 0
        assert os.path.exists(out / r["algo"] / "metrics.json")
    assert (out / "compare.csv").exists()


@pytest.mark.slow
def test_compare_on_a_sequential_user_file_trains_the_recurrent_model_with_every_algorithm_that_can(tmp_path, capsys):
    """The default model and the default list of algorithms both follow the data's encoding, not its name:
    a file saved with encoding "sequential" gets alif-rnn, and no OTTT row (OTTT has no recurrent form)."""
    path = tmp_path / "my_seq.pt"
    x = torch.rand(24, 6, generator=torch.Generator().manual_seed(0))
    torch.save({"x": x, "y": (x.sum(1) > 3).long(), "encoding": "sequential"}, path)
    out = tmp_path / "cmp"
    code, stdout, err = _run(capsys, "compare", "--data", str(path), "--epochs", "1", "--hidden", "4",
                             "--out", str(out), "--no-plot")
    assert code == 0, (stdout, err)
    rows = json.loads((out / "compare.json").read_text())["rows"]
    assert [r["algo"] for r in rows] == ["fptt", "fptt-dual", "sltt", "sltt-k", "bptt"]
    assert all(r["model"] == "alif-rnn" and r["T"] == 6 and "error" not in r for r in rows)


def test_a_failing_algorithm_is_a_row_with_its_error_and_exit_code_1(tmp_path, capsys):
    out = tmp_path / "cmp"
    code, stdout, _ = _run(capsys, "compare", "--algos", "ottt", "--model", "alif-rnn", "--data", "seq-digits",
                           "--epochs", "1", "--out", str(out), "--no-plot")
    assert code == 1 and "failed: --model 'alif-rnn' cannot be trained with ottt" in stdout
    row = json.loads((out / "compare.json").read_text())["rows"][0]
    assert row["algo"] == "ottt" and "OTTT has no recurrent form" in row["error"]


# ----------------------------------------------------------------------------- SHD-layout files


def _shd_folder(tmp_path, monkeypatch):
    """Small generated files in the SHD layout (3 classes, 20 of the 700 units); the cache under tmp_path."""
    monkeypatch.setenv("PURELEARN_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "shd"
    folder.mkdir()
    for part, samples in (("train", 8), ("test", 4)):
        data.write_shd(folder / f"shd_{part}.h5", data.randman(classes=3, units=20, samples=samples, seed=len(part)),
                       keys=["low", "mid", "high"])
    return folder


def test_train_on_shd_files_trains_the_srnn_on_binned_frames(tmp_path, capsys, monkeypatch):
    folder = _shd_folder(tmp_path, monkeypatch)
    out = tmp_path / "run"
    code, stdout, stderr = _run(capsys, "train", "--data", f"shd:{folder}", "--epochs", "1", "--limit", "16",
                                "--T", "20", "--hidden", "8", "--out", str(out), "--no-plot")
    assert code == 0, stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["model"] == "srnn" and metrics["config"]["data"] == f"shd:{folder}"
    assert metrics["data"].pop("fingerprint").startswith("sha256:")
    assert metrics["data"] == {"name": "shd", "encoding": "events", "T": 20, "train_size": 16, "test_size": 4,
                               "num_classes": 3, "step_shape": [700]}
    assert "srnn" in stdout and "test accuracy" in stdout


def test_data_command_prints_what_to_check_before_a_run(tmp_path, capsys, monkeypatch):
    folder = _shd_folder(tmp_path, monkeypatch)
    code, first, err = _run(capsys, "data", f"shd:{folder}")
    assert code == 0, err
    assert first.startswith("shd: Spiking Heidelberg Digits") and "classes   3: low, mid, high" in first
    assert "100 frames of 10 ms, covering 1 s from 0 (the largest spike time" in first and "700 units" in first
    rows = {line.split()[0]: line.split() for line in first.splitlines() if line.split()[:1] in (["train"], ["test"])}
    assert rows["train"][1:5] == ["24", "100.0", "[100,", "100]"] and rows["test"][1] == "12"
    assert f"cache     {tmp_path / 'cache'}" in first and "(written now)" in first
    code, again, _ = _run(capsys, "data", f"shd:{folder}", "--T", "50")
    assert code == 0 and "50 frames of 20 ms" in again and "(written now)" in again
    assert "(read back)" in _run(capsys, "data", f"shd:{folder}")[1]
    code, _, err = _run(capsys, "data", f"shd:{tmp_path / 'nowhere'}")
    assert code == 2 and err.count("\n") == 1 and "shd_train.h5 does not exist" in err


# ----------------------------------------------------------------------------- help and errors


@pytest.mark.parametrize("command", ["train", "sweep", "compare", "data"])
def test_help_of_each_command_lists_its_options(capsys, command):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    expected = {"train": ["--algo", "--data", "--model", "--epochs", "--batch-size", "--lr", "--alpha",
                          "--optimizer", "--seed", "--device", "--compile", "--out", "--T", "--k", "--resume",
                          "fptt-dual", "sltt-k", "seq-digits", "examples:"],
                "sweep": ["--lr", "--alpha", "--tau", "--seed", "start:stop:num", "vmap", "sweep.csv"],
                "compare": ["--algos", "--data", "compare.csv", "peak memory"],
                "data": ["shd:DIR", "ssc:DIR", "randman", "dt=SECONDS", "--T", "cached", "examples:"]}[command]
    for word in expected:
        assert word in text, word


def test_top_level_help_and_no_command(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "train" in capsys.readouterr().out
    assert main([]) == 2


def _bad_commands(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "checkpoint.pt").write_bytes(b"PK\x03\x04 truncated")
    bad_data = tmp_path / "bad.pt"
    torch.save({"x": torch.rand(4, 3, 2), "y": torch.zeros(4)}, bad_data)
    return {
        "unknown-algo": (["train", "--algo", "rtrl"], "invalid choice: 'rtrl'"),
        "bad-data-path": (["train", "--data", str(tmp_path / "nope.pt")], "does not exist"),
        "bad-data-layout": (["train", "--data", str(bad_data)], "'y' must be an int64 tensor"),
        "zero-epochs": (["train", "--epochs", "0"], "--epochs: expected an integer >= 1"),
        "negative-lr": (["train", "--lr", "-1"], "--lr: expected a finite number > 0"),
        "not-a-number": (["train", "--batch-size", "many"], "--batch-size: expected an integer >= 1"),
        "tau-of-lif": (["train", "--tau", "0.5"], "--tau must be > 1 for LIF neurons"),
        "k-without-sltt-k": (["train", "--k", "3"], "--k only applies to --algo sltt-k"),
        "k-above-T": (["train", "--algo", "sltt-k", "--k", "20", *TINY], "--k must be at most T=4"),
        "ottt-recurrent": (["train", "--algo", "ottt", "--model", "alif-rnn", *TINY], "OTTT has no recurrent form"),
        "conv-on-sequence": (["train", "--data", "seq-digits", "--model", "conv"], "model 'conv' needs image"),
        "no-cuda": (["train", "--device", "cuda:7"], "--device cuda:7") if not torch.cuda.is_available()
        else (["train", "--device", "nonsense"], "--device must be a torch device"),
        "unwritable-out": (["train", *TINY, "--out", str(blocker / "sub")], "cannot write there"),
        "resume-missing": (["train", "--resume", str(tmp_path / "none")], "no such folder"),
        "resume-corrupt": (["train", "--resume", str(corrupt)], "truncated or corrupt"),
        "resume-with-lr": (["train", "--resume", str(corrupt), "--lr", "0.1"], "--lr cannot be changed"),
        "sweep-no-axes": (["sweep", *TINY], "give at least one of --lr"),
        "sweep-bad-range": (["sweep", "--lr", "1:2"], "--lr: expected a comma-separated list"),
        "sweep-negative": (["sweep", "--alpha", "0.1,-0.2"], "--alpha: every value must be a number > 0"),
        "sweep-float-seed": (["sweep", "--seed", "0.5"], "--seed: expected integers"),
        "compare-bad-algo": (["compare", "--algos", "fptt,foo"], "--algos must list algorithms"),
    }


ERROR_CASES = ["unknown-algo", "bad-data-path", "bad-data-layout", "zero-epochs", "negative-lr", "not-a-number",
               "tau-of-lif", "k-without-sltt-k", "k-above-T", "ottt-recurrent", "conv-on-sequence", "no-cuda",
               "unwritable-out", "resume-missing", "resume-corrupt", "resume-with-lr", "sweep-no-axes",
               "sweep-bad-range", "sweep-negative", "sweep-float-seed", "compare-bad-algo"]


@pytest.mark.parametrize("name", ERROR_CASES)
def test_errors_are_one_line_on_stderr_with_exit_code_2(tmp_path, capsys, monkeypatch, name):
    monkeypatch.chdir(tmp_path)  # default output folders, if any, go here
    cases = _bad_commands(tmp_path)
    assert set(cases) == set(ERROR_CASES)
    argv, message = cases[name]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse errors exit from inside parse_args
        code = exit_.code
    out, err = capsys.readouterr()
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("purelearn "), err
    assert "error:" in err and message in err, err
    assert "Traceback" not in err and out == ""


def test_python_dash_m_purelearn_is_the_same_program():
    proc = subprocess.run([sys.executable, "-m", "purelearn", "train", "--epochs", "0"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "purelearn train: error: argument --epochs: expected an integer >= 1, got '0' (see purelearn train --help)"]
