"""The command line: train end to end, exact resume, vmapped sweeps, compare, help and one-line errors."""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import os
import re
import subprocess
import sys
import warnings

import optree
import pytest
import torch

from purelearn import app, checkpoint, data, online
from purelearn.app import cli, loop, memory, registry
from purelearn.app.cli import flag, main
from purelearn.app.compare import configs_for
from purelearn.app.sweeps import parse_values

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


# ----------------------------------------------------------------------------- every bad input one line, one rule


def _error(capsys, *argv):
    """``(exit code, stderr)`` of a command that must fail in one line on stderr, without a traceback."""
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse errors exit from inside parse_args
        code = exit_.code
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("purelearn ") and "Traceback" not in err and out == "", err
    return code, err


#: A value for each option that only some algorithms take (a new option must get one here).
OPTION_VALUES = {"alpha": "0.2", "beta": "0.3", "window": "4", "reduction": "sum", "second_forward": "pre", "k": "2"}


def test_every_option_of_some_algorithms_has_a_value_here():
    assert set(OPTION_VALUES) == set(registry.OPTIONS)


@pytest.mark.parametrize("option, algo", [(option, algo) for option in OPTION_VALUES for algo in registry.ALGORITHMS
                                          if not registry.takes(algo, option)])
def test_every_option_of_some_algorithms_is_refused_for_the_others(capsys, option, algo):
    code, err = _error(capsys, "train", "--algo", algo, flag(option), OPTION_VALUES[option])
    assert code == 2 and f"{flag(option)} only applies to --algo {' or '.join(registry.takers(option))}, " \
                         f"got --algo {algo}" in err


def test_a_sweep_axis_the_algorithm_does_not_take_is_refused(capsys):
    code, err = _error(capsys, "sweep", "--algo", "bptt", "--alpha", "0.1,0.2")
    assert code == 2 and "--alpha only applies to --algo fptt or fptt-dual, got --algo bptt" in err


def test_compare_passes_each_algorithm_only_the_options_it_takes_and_old_runs_resume():
    from purelearn.app.config import from_stored

    given = app.Config(alpha=0.2, beta=0.3, window=4, reduction="sum", second_forward="pre", k=2)
    assert {name for name in registry.OPTIONS if getattr(given, name) is not None} == set(registry.OPTIONS)
    for config in configs_for(given, list(registry.ALGORITHMS)):
        config.validate()
        assert {name for name in registry.OPTIONS if getattr(config, name) is not None} == set(
            registry.ALGORITHMS[config.algo].options), config.algo
    old = dict(app.Config(algo="bptt").to_dict(), alpha=0.1, beta=0.5)  # what earlier versions stored
    resumed = from_stored(old)
    assert (resumed.alpha, resumed.beta) == (None, None) and resumed.validate()


@pytest.mark.parametrize("value, shows", [("1", True), ("true", True), ("YES", True), (" on ", True),
                                          ("0", False), ("", False), ("false", False), ("No", False), ("off", False)])
def test_purelearn_debug_shows_tracebacks_only_when_on(capsys, monkeypatch, value, shows):
    monkeypatch.setenv("PURELEARN_DEBUG", value)
    if shows:
        with pytest.raises(app.ConfigError, match="meta device"):
            main(["train", "--device", "meta"])
    else:
        assert _error(capsys, "train", "--device", "meta")[0] == 2


def test_an_unknown_purelearn_debug_value_is_a_warning_and_tracebacks_stay_off(capsys, monkeypatch):
    monkeypatch.setenv("PURELEARN_DEBUG", "maybe")
    code = main(["train", "--device", "meta"])
    lines = capsys.readouterr().err.splitlines()
    assert code == 2 and len(lines) == 2 and "Traceback" not in "".join(lines)
    assert lines[0].startswith("purelearn train: warning: PURELEARN_DEBUG='maybe' is neither on (1, true, yes, on)")
    assert lines[1].startswith("purelearn train: error: --device meta")


def _integer_options():
    """``(command, flag)`` of every option parsed as a bounded integer."""
    from purelearn.app.cli import _bounded, build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # the four commands' parsers
    return [(name, action.option_strings[0]) for name, sub in commands.items() for action in sub._actions
            if isinstance(action.type, functools.partial) and action.type.func is _bounded
            and action.type.keywords.get("convert") is int]


@pytest.mark.parametrize("command, option", _integer_options())
def test_every_integer_option_has_a_range_and_names_itself(capsys, command, option):
    argv = [command, "digits"] if command == "data" else [command, "--lr", "0.01"] if command == "sweep" else [command]
    code, err = _error(capsys, *argv, option, str(2**70))
    assert code == 2 and f"argument {option}: expected an integer in " in err and "Overflow" not in err, err


@pytest.mark.parametrize("option", ["--lr", "--alpha", "--tau", "--clip"])
def test_every_number_option_stops_at_float32s_largest_and_names_itself(capsys, option):
    code, err = _error(capsys, "train", option, "1e308")
    assert code == 2 and err.strip() == (f"purelearn train: error: {option} must be at most 3.403e+38 (float32's "
                                         "largest finite number), got 1e+308"), err


def test_integer_fields_and_sweep_seeds_stop_at_int64():
    with pytest.raises(app.ConfigError, match=r"^`seed` must be an integer in 0..9223372036854775807 \(2\*\*63 - 1\), "
                                              r"got 9223372036854775808$"):
        app.Config(seed=2**63).validate()
    app.Config(seed=2**63 - 1, data_seed=2**63 - 1).validate()
    assert parse_values("seed", f"0,{2**63 - 1}", integer=True) == [0, 2**63 - 1]  # exact, not through a float
    with pytest.raises(app.ConfigError, match="expected integers in 0..9223372036854775807"):
        parse_values("seed", f"0,{2**63}", integer=True)


@pytest.mark.parametrize("device, message", [
    ("meta", r"--device meta: a meta device holds shapes, not values, so nothing can be trained on it; use cpu, cuda, "
             r"mps \(cuda:N for the N-th GPU\)"),
    ("foo", r"--device must be a torch device such as cpu or cuda:0, got 'foo'"),
    ("xla", r"--device xla: purelearn trains on cpu, cuda, mps \(cuda:N for the N-th GPU\), got a xla device"),
    ("cpu:3", r"--device cpu:3: the CPU is one device, cpu"),
    ("cuda:7", r"--device cuda:7: (CUDA is not available on this machine|this machine has \d CUDA device\(s\))"),
])
def test_a_device_that_cannot_train_is_one_line(capsys, device, message):
    code, err = _error(capsys, "train", "--device", device)
    assert code == 2 and re.search(message, err), err


def test_a_sweep_beyond_max_configs_is_refused_before_its_values_are_made(capsys):
    code, err = _error(capsys, "sweep", "--lr", "0.001:0.01:2", "--alpha", "0.1,0.2", "--max-configs", "3")
    assert code == 2 and "sweep: 2 --lr × 2 --alpha values make 4 configurations, more than --max-configs 3" in err
    code, err = _error(capsys, "sweep", "--lr", f"0.001:0.01:{10**15}")  # never a list of 10**15 values
    assert code == 2 and f"--lr 0.001:0.01:{10**15}: {10**15} values, more than --max-configs 1024" in err
    with pytest.raises(app.ConfigError, match="more than `max_configs` 1024") as info:
        app.sweep_fit(app.Config(), {"lr": [0.01] * 1025})
    assert info.value.field == "max_configs"


# ----------------------------------------------------------------------------- memory: estimated before anything large


def _with_memory(monkeypatch, nbytes):
    monkeypatch.setattr(memory, "available", lambda device: (nbytes, "available (test)"))


def test_bptt_at_a_large_T_is_refused_for_its_graph_naming_T(capsys, monkeypatch):
    _with_memory(monkeypatch, 256 * 2**20)
    code, err = _error(capsys, "train", "--algo", "bptt", "--T", "2000", "--limit", "64", "--epochs", "1",
                       "--no-plot", "--quiet", "--out", "runs-not-written")
    assert code == 2 and re.search(r"error: --T 2000 is too large: the run needs at least .* of memory \(the graph "
                                   r"of all T=2000 steps for the backward pass \(.* per step\): .*\), more than the "
                                   r"256.0 MiB available \(test\); lower --T, --batch-size or --hidden$", err), err


def test_the_estimate_counts_the_graph_each_algorithm_holds():
    split = data.load("digits", 64).limit(64)
    graphs, what = {}, {}
    for algo in ("bptt", "fptt", "sltt"):
        config = app.Config(algo=algo, T=64, window=8 if algo == "fptt" else None).resolved(split)
        model = registry.build_model(config.model, algo, split.train.step_shape, split.num_classes, hidden=32)
        learner = registry.learner_for(config, model, registry.make_optimizer(config.optimizer, config.lr))
        example = loop.example_step(split, torch.device("cpu"))
        params, states = loop.init_params(model, 0, example)
        measured = memory.measure(model, learner.init(params, states), params, states, example)
        estimate = memory.estimate(config, split, model, measured=measured)
        graphs[algo], what[algo] = next((t.bytes, t.what) for t in estimate.terms if t.what.startswith("the graph"))
        assert estimate.total > memory.estimate(config, split, model).total > 0  # the first check is a lower bound
    assert graphs["bptt"] == 8 * graphs["fptt"] > 0 and graphs["sltt"] > 0  # the same LIF neurons in both
    assert what["bptt"].startswith("the graph of all T=64 steps") and what["fptt"].startswith("the graph of a window "
                                                                                               "of 8 steps")
    assert what["sltt"] == "the graph of one step for the backward pass"
    memory.check(memory.Estimate((memory.Term("x", 2**80, ("T",)),)), app.Config(), "mps")  # unknown: not checked


def test_a_sweep_multiplies_what_each_configuration_holds(monkeypatch):
    _with_memory(monkeypatch, 1)
    with pytest.raises(app.ConfigError, match=r"\(parameters and their gradients × 64 configurations: .*; lower "
                                              r"`hidden`, or sweep fewer configurations$"):
        app.sweep_fit(app.Config(epochs=1, limit=64), {"seed": list(range(64))})


def test_compare_refuses_a_run_too_large_before_any_run_starts(tmp_path, capsys, monkeypatch):
    _with_memory(monkeypatch, 2**20)
    code, err = _error(capsys, "compare", "--algos", "fptt,bptt", "--T", "2000", "--limit", "64", "--out",
                       str(tmp_path / "cmp"))
    assert code == 2 and "error: --T 2000 is too large: the run needs at least" in err
    assert not (tmp_path / "cmp").exists()


def test_running_out_of_memory_anyway_is_one_line(capsys, monkeypatch):
    def oom(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you "
                           "tried to allocate 25600000000 bytes. Error code 12 (Cannot allocate memory)")

    monkeypatch.setattr(cli, "fit", oom)
    code, err = _error(capsys, "train")
    assert code == 2 and "error: out of CPU memory, beyond the estimate checked before the run" in err


# ----------------------------------------------------------------------------- data files


class _NotATensor:
    """An object a data file must not hold (loading it would run code)."""


@pytest.mark.parametrize("content", ["numpy", "object", "pickle"])
def test_a_file_of_other_objects_is_refused_without_advice_to_load_it_unsafely(tmp_path, capsys, content):
    import pickle

    import numpy as np

    path = tmp_path / "data.pt"
    if content == "pickle":
        path.write_bytes(pickle.dumps({"x": [1.0]}))
    else:
        torch.save({"x": np.zeros((4, 3, 2)) if content == "numpy" else _NotATensor(), "y": torch.zeros(4)}, path)
    code, err = _error(capsys, "train", "--data", str(path))
    assert code == 2 and "not a readable torch.save file of plain tensors" in err
    with pytest.raises(checkpoint.CheckpointError) as info:
        checkpoint.load(path)
    for message in (err, str(info.value)):
        assert "weights_only" not in message and "Weights only" not in message and "trust" not in message, message


@pytest.mark.parametrize("blob, message", [
    (lambda: dict(x=torch.rand(6, 3, 2).to_sparse()), "key 'x' must be a dense tensor, got a sparse_coo tensor"),
    (lambda: dict(x=torch.rand(6, 4).to_sparse_csr(), encoding="rate"), "key 'x' must be a dense tensor, got a "
                                                                        "sparse_csr"),
    (lambda: dict(y=torch.zeros(6, dtype=torch.long).to_sparse()), "key 'y' must be a dense tensor, got a sparse_coo"),
    (lambda: dict(x=torch.empty(6, 3, 2, device="meta")), "key 'x' was saved from the meta device: it has a shape "
                                                          "([6, 3, 2]) but no values"),
    (lambda: dict(y=torch.tensor([0, 1, 0, 1, 0, 2**63 - 1])), "key 'y' must hold class labels 0..16777215 (at most "
                                                               "16777216 classes, 2**24), got 9223372036854775807 at "
                                                               "sample 5"),
    (lambda: dict(x_test=torch.rand(2, 3, 2), y_test=torch.tensor([0, 2**31])), "key 'y_test' must hold class "
                                                                                "labels 0..16777215"),
], ids=["sparse-x", "csr-x", "sparse-y", "meta-x", "label-int64-max", "test-label-2**31"])
def test_sparse_meta_and_out_of_range_data_are_one_line(tmp_path, capsys, blob, message):
    path = tmp_path / "data.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch: sparse CSR support is in beta
        torch.save({"x": torch.rand(6, 3, 2), "y": torch.tensor([0, 1, 0, 1, 0, 1]), **blob()}, path)
    code, err = _error(capsys, "train", "--data", str(path))
    assert code == 2 and message in err, err
