"""Nothing lost, nothing corrupted: run folders are never overwritten without asking, never shared by two
processes, never left with a diverged or mismatched checkpoint, and resumed only on the run's own data.

(Checkpoint integrity, the SHA-256 and hand-made files, is in ``test_checkpoint.py``; one-line refusals
are also rows of the bad-input catalogue, ``test_bad_inputs.py``.)
"""

from __future__ import annotations

import concurrent.futures
import importlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from purelearn import app, checkpoint
from purelearn.app import lock, loop, report
from purelearn.app.cli import EXIT_DIVERGED, main

pytest.importorskip("sklearn")

# 64 training samples, T=4, 16 hidden neurons, two batches per epoch
TINY = ["--limit", "64", "--T", "4", "--hidden", "16", "--batch-size", "32", "--no-plot", "--quiet"]
TINY_CONFIG = dict(limit=64, T=4, hidden=16, batch_size=32)
compare_module = importlib.import_module("purelearn.app.compare")  # app.compare is the function


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(code, err, expected_code=2):
    assert code == expected_code, err
    assert err.count("\n") == 1 and "error:" in err and "Traceback" not in err, err


def _strict_json(path):
    """The file parsed as strict JSON: NaN / Infinity are refused."""
    def refuse(constant):
        raise ValueError(f"{path} holds {constant}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture
def trained(tmp_path, capsys):
    """A finished 1-epoch run in tmp_path/run; returns its folder."""
    folder = tmp_path / "run"
    assert _run(capsys, "train", "--epochs", "1", *TINY, "--out", str(folder))[0] == 0
    return folder


# ----------------------------------------------------------------------------- no overwrite without --overwrite


def test_resume_into_another_folder_that_holds_a_run_is_refused_unless_overwrite(tmp_path, capsys, trained):
    other = tmp_path / "other"
    assert _run(capsys, "train", "--epochs", "1", "--algo", "bptt", *TINY, "--out", str(other))[0] == 0
    before = (other / report.CHECKPOINT).read_bytes()
    code, _, err = _run(capsys, "train", "--resume", str(trained), "--epochs", "2", "--out", str(other))
    _one_line_error(code, err)
    assert f"--out {other} already holds a run (checkpoint.pt, metrics.json); continue it with --resume" in err
    assert (other / report.CHECKPOINT).read_bytes() == before  # untouched
    assert _run(capsys, "train", "--resume", str(trained), "--epochs", "2", "--out", str(other), "--overwrite",
                "--quiet", "--no-plot")[0] == 0
    assert checkpoint.load(other / report.CHECKPOINT)["epoch"] == 2
    assert checkpoint.load(trained / report.CHECKPOINT)["epoch"] == 1  # the resumed run itself is kept


def test_resume_into_a_new_folder_forks_the_run_and_in_place_needs_no_overwrite(tmp_path, capsys, trained):
    fork = tmp_path / "fork"
    assert _run(capsys, "train", "--resume", str(trained), "--epochs", "2", "--out", str(fork))[0] == 0
    assert _run(capsys, "train", "--resume", str(trained), "--epochs", "2")[0] == 0
    a, b = checkpoint.load(fork / report.CHECKPOINT), checkpoint.load(trained / report.CHECKPOINT)
    assert a["epoch"] == b["epoch"] == 2
    assert [row["test_loss"] for row in a["history"]] == [row["test_loss"] for row in b["history"]]


def test_overwrite_starts_afresh_and_leaves_nothing_of_the_old_run(tmp_path, capsys, trained):
    """--overwrite clears the old run first: if the new one diverges before its first checkpoint, the
    old checkpoint is not left behind to be resumed by mistake."""
    code, _, err = _run(capsys, "train", "--epochs", "1", *TINY, "--lr", "1e30", "--out", str(trained), "--overwrite")
    assert code == EXIT_DIVERGED, err
    assert not (trained / report.CHECKPOINT).exists()
    assert _strict_json(trained / report.METRICS)["diverged"]["epoch"] == 1


class _InProcessPool:
    """A stand-in for compare's process pool that runs the child function here (no spawn: fast)."""

    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, fn, *args):
        future = concurrent.futures.Future()
        try:
            future.set_result(fn(*args))
        except Exception as err:  # noqa: BLE001 - handed back like the pool would
            future.set_exception(err)
        return future


def test_compare_keeps_earlier_runs_in_its_folder_unless_overwrite(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(compare_module.concurrent.futures, "ProcessPoolExecutor", _InProcessPool)
    out = tmp_path / "cmp"
    argv = ["compare", "--algos", "fptt,bptt", "--epochs", "1", *TINY, "--out", str(out)]
    assert _run(capsys, *argv)[0] == 0
    earlier = (out / "bptt" / report.CHECKPOINT).read_bytes()
    (out / report.COMPARE).unlink()  # only the runs in cmp/ALGO are left: still refused
    code, stdout, err = _run(capsys, *argv)
    _one_line_error(code, err)
    assert f"{out / 'fptt'} already holds results (checkpoint.pt, metrics.json); pass --overwrite" in err
    assert stdout == "" and (out / "bptt" / report.CHECKPOINT).read_bytes() == earlier  # refused before training
    assert _run(capsys, *argv, "--overwrite")[0] == 0
    assert (out / "bptt" / report.CHECKPOINT).read_bytes() != earlier
    assert _strict_json(out / report.COMPARE)["rows"][1]["algo"] == "bptt"


def test_compare_passes_overwrite_to_its_children_only_when_given(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(compare_module.concurrent.futures, "ProcessPoolExecutor", _InProcessPool)
    monkeypatch.setattr(compare_module, "_fit_in_child", lambda *args: seen.append(args[-1]) or {})
    monkeypatch.setattr(compare_module, "_row", lambda algo, m: {"algo": algo})
    config = app.Config(algo="fptt", epochs=1, **TINY_CONFIG)
    app.compare([config], str(tmp_path / "a"))
    app.compare([config], str(tmp_path / "b"), overwrite=True)
    assert seen == [False, True]


def test_sweep_refuses_a_folder_that_holds_a_sweep_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["sweep", "--lr", "0.01,0.02", "--epochs", "1", *TINY, "--out", str(out)]
    assert _run(capsys, *argv)[0] == 0
    code, _, err = _run(capsys, *argv)
    _one_line_error(code, err)
    assert f"--out {out} already holds a sweep (sweep.json)" in err
    assert _run(capsys, *argv, "--overwrite")[0] == 0


# ----------------------------------------------------------------------------- one process per run folder


def test_a_locked_run_folder_is_refused_in_one_line_and_free_again_after_release(capsys, trained):
    held = lock.acquire(str(trained))
    try:
        for argv in (["train", "--resume", str(trained), "--epochs", "2"],
                     ["train", "--epochs", "1", *TINY, "--out", str(trained), "--overwrite"]):
            code, _, err = _run(capsys, *argv)
            _one_line_error(code, err)
            assert f"run folder {trained} is in use by another purelearn process (pid {os.getpid()} on host" in err
        assert checkpoint.load(trained / report.CHECKPOINT)["epoch"] == 1
    finally:
        held.release()
    assert not (trained / lock.LOCK_FILE).exists()
    assert _run(capsys, "train", "--resume", str(trained), "--epochs", "2")[0] == 0


def test_the_lock_is_released_when_a_run_fails(tmp_path):
    config = app.Config(epochs=1, lr=1e30, **TINY_CONFIG)
    with pytest.raises(app.DivergedError):
        app.fit(config, str(tmp_path), plot=False)
    assert not (tmp_path / lock.LOCK_FILE).exists()
    lock.acquire(str(tmp_path)).release()  # free


_HOLDER = """
import sys
from purelearn.app import lock
held = lock.acquire(sys.argv[1])
print("held", flush=True)
sys.stdin.read()  # until the test closes stdin, or kills us
held.release()
"""


def _holder(folder):
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(folder)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"  # bounded: the child exits if it cannot lock
    except BaseException:
        proc.kill()
        raise
    return proc


def test_two_processes_on_one_run_folder_and_a_stale_lock_after_kill_9(capsys, trained):
    """A real second process holds the folder: the CLI here is refused. Killed with SIGKILL, it leaves
    its lock file behind; the next run takes it over with a warning naming the dead owner."""
    proc = _holder(trained)
    try:
        code, _, err = _run(capsys, "train", "--resume", str(trained), "--epochs", "2")
        _one_line_error(code, err)
        assert f"is in use by another purelearn process (pid {proc.pid} on host" in err
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert lock.owner_of(str(trained))["pid"] == proc.pid  # the stale lock file is still there
    code, _, err = _run(capsys, "train", "--resume", str(trained), "--epochs", "2")
    assert code == 0, err
    assert f"warning: took over the lock of run folder {trained} from a process that no longer runs " \
           f"(pid {proc.pid}" in err
    assert checkpoint.load(trained / report.CHECKPOINT)["epoch"] == 2
    assert lock.owner_of(str(trained)) is None


def test_the_lock_holds_a_folder_for_a_live_process_that_has_not_written_its_pid_yet(tmp_path):
    fd = os.open(tmp_path / lock.LOCK_FILE, os.O_RDWR | os.O_CREAT)
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(app.RunInUseError, match=r"in use by another purelearn process \(owner unknown\)"):
            lock.acquire(str(tmp_path))
    finally:
        os.close(fd)
    lock.acquire(str(tmp_path)).release()


def test_compare_locks_its_folder(tmp_path):
    with lock.hold(str(tmp_path)), pytest.raises(app.RunInUseError, match="in use"):
        app.compare([app.Config(epochs=1, **TINY_CONFIG)], str(tmp_path))


# ----------------------------------------------------------------------------- divergence


def test_divergence_stops_at_the_first_non_finite_loss_with_exit_3_and_strict_json(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = _run(capsys, "train", "--lr", "1e30", "--epochs", "2", *TINY, "--out", str(out))
    _one_line_error(code, err, EXIT_DIVERGED)
    assert "training diverged: non-finite loss (nan) at batch 1 of 2 in epoch 1; no checkpoint was written; " \
           "try a lower --lr or gradient clipping (--clip)" in err
    assert stdout == "" and not (out / report.CHECKPOINT).exists()
    metrics = _strict_json(out / report.METRICS)
    assert metrics["diverged"]["epoch"] == 1 and metrics["diverged"]["batch"] == 1
    assert metrics["epochs_completed"] == 0 and metrics["test_accuracy"] is None


def _diverge_after_one_good_epoch(folder):
    """A run in ``folder`` whose first epoch is good and whose stored config then says lr=1e30."""
    app.fit(app.Config(epochs=1, **TINY_CONFIG), str(folder), plot=False)
    path = folder / report.CHECKPOINT
    state = checkpoint.load(path)
    state["config"] = json.dumps({**json.loads(state["config"]), "lr": 1e30})
    checkpoint.save(path, state)
    return path.read_bytes()


def test_divergence_keeps_the_last_good_checkpoint(tmp_path, capsys):
    good = _diverge_after_one_good_epoch(tmp_path)
    code, _, err = _run(capsys, "train", "--resume", str(tmp_path), "--epochs", "2", "--no-plot", "--quiet")
    _one_line_error(code, err, EXIT_DIVERGED)
    assert f"in epoch 2; the last good checkpoint (epoch 1) is kept in {tmp_path}" in err
    assert (tmp_path / report.CHECKPOINT).read_bytes() == good
    metrics = _strict_json(tmp_path / report.METRICS)
    assert metrics["epochs_completed"] == 1 and metrics["diverged"]["epoch"] == 2
    assert math.isfinite(metrics["test_accuracy"])


def test_a_carry_that_becomes_non_finite_in_the_last_update_is_never_written(tmp_path, monkeypatch):
    """Every loss of the epoch finite, the parameters NaN after its last update: stopped too."""
    real = loop.run_epoch

    def poisoned(*args, **kwargs):
        carry, loss, acc = real(*args, **kwargs)
        return carry._replace(params=app.loop.tree.map(lambda t: t * float("nan"), carry.params)), loss, acc

    app.fit(app.Config(epochs=1, **TINY_CONFIG), str(tmp_path), plot=False)
    good = (tmp_path / report.CHECKPOINT).read_bytes()
    monkeypatch.setattr(loop, "run_epoch", poisoned)
    message = r"optimizer state became non-finite in the last update \(batch 2 of 2\) of epoch 2; the last good"
    with pytest.raises(app.DivergedError, match=message) as info:
        app.fit(app.Config(), resume=str(tmp_path), epochs=2, plot=False)
    assert (info.value.epoch, info.value.batch) == (2, None)
    assert (tmp_path / report.CHECKPOINT).read_bytes() == good


def test_run_epoch_names_the_first_non_finite_batch_and_checks_only_when_asked():
    def run(carry, x_seq, y_seq):
        loss = torch.full((x_seq.shape[0],), float("inf") if carry >= 2 else 1.0)
        return carry + 1, type("Outs", (), {"loss": loss, "y": torch.zeros(x_seq.shape[0], x_seq.shape[1], 2)})

    batches = [(torch.zeros(4, 2, 3), torch.zeros(2, dtype=torch.long))] * 6
    weights = torch.ones(4)
    with pytest.raises(app.DivergedError, match=r"non-finite loss \(inf\) at batch 3") as info:
        loop.run_epoch(run, 0, batches, weights, 2, check_finite=True)
    assert info.value.batch == 3
    carry, loss, _ = loop.run_epoch(run, 0, batches, weights, 2)  # unchecked (e.g. under vmap): runs through
    assert carry == 6 and loss.item() == float("inf")


def test_json_outputs_are_strict_with_non_finite_numbers_as_null(tmp_path):
    path = tmp_path / "m.json"
    report.write_json(str(path), {"a": float("nan"), "b": [1.5, float("inf"), {"c": -float("inf")}], "d": "nan"})
    assert _strict_json(path) == {"a": None, "b": [1.5, None, {"c": None}], "d": "nan"}


# ----------------------------------------------------------------------------- resuming: epochs, data, carry, files


def test_resume_with_fewer_epochs_than_done_is_refused_and_as_many_is_a_no_op(capsys, tmp_path):
    folder = tmp_path / "run"
    assert _run(capsys, "train", "--epochs", "2", *TINY, "--out", str(folder))[0] == 0
    code, _, err = _run(capsys, "train", "--resume", str(folder), "--epochs", "1")
    _one_line_error(code, err)
    assert f"--epochs 1 is below the 2 epochs the run in {folder} has done; give --epochs >= 2" in err
    assert _run(capsys, "train", "--resume", str(folder), "--epochs", "2", "--no-plot")[0] == 0
    metrics = _strict_json(folder / report.METRICS)
    assert metrics["epochs_completed"] == metrics["config"]["epochs"] == 2


def _user_data(path, scale=1.0):
    x = torch.rand(40, 6, generator=torch.Generator().manual_seed(0))
    torch.save({"x": x * scale, "y": (x.sum(1) > 3).long(), "encoding": "rate"}, path)


def test_resume_on_changed_data_is_refused_unless_allowed(tmp_path, capsys):
    data_file, folder = tmp_path / "data.pt", tmp_path / "run"
    _user_data(data_file)
    argv = ["train", "--data", str(data_file), "--epochs", "1", "--T", "4", "--hidden", "8", "--no-plot", "--quiet"]
    assert _run(capsys, *argv, "--out", str(folder))[0] == 0
    recorded = checkpoint.load(folder / report.CHECKPOINT)["data_fingerprint"]
    assert recorded == _strict_json(folder / report.METRICS)["data"]["fingerprint"]
    _user_data(data_file, scale=0.99)
    code, _, err = _run(capsys, "train", "--resume", str(folder), "--epochs", "2")
    _one_line_error(code, err)
    assert f"the data of the run in {folder} changed since its checkpoint" in err and "--allow-changed-data" in err
    code, _, err = _run(capsys, "train", "--resume", str(folder), "--epochs", "2", "--allow-changed-data", "--quiet")
    assert code == 0 and "warning: the data of the run" in err
    assert checkpoint.load(folder / report.CHECKPOINT)["data_fingerprint"] != recorded


def test_allow_changed_data_only_applies_with_resume(capsys):
    code, _, err = _run(capsys, "train", "--allow-changed-data")
    _one_line_error(code, err)
    assert "--allow-changed-data only applies with --resume" in err


def test_the_fingerprint_follows_the_data_not_its_path(tmp_path):
    from purelearn import data

    _user_data(tmp_path / "a.pt")
    _user_data(tmp_path / "b.pt")
    _user_data(tmp_path / "c.pt", scale=0.99)
    a, b, c = (data.fingerprint(data.load(str(tmp_path / f"{n}.pt"))) for n in "abc")
    assert a == b != c and a.startswith("sha256:")
    split = data.load(str(tmp_path / "a.pt"))
    assert data.fingerprint(split.limit(8)) != a


def test_a_checkpoint_without_a_fingerprint_resumes(tmp_path):
    app.fit(app.Config(epochs=1, **TINY_CONFIG), str(tmp_path), plot=False)
    state = checkpoint.load(tmp_path / report.CHECKPOINT)
    del state["data_fingerprint"]  # as written before fingerprints existed
    checkpoint.save(tmp_path / report.CHECKPOINT, state)
    assert app.fit(app.Config(), resume=str(tmp_path), epochs=2, plot=False).metrics["epochs_completed"] == 2


def test_a_carry_of_another_algorithm_is_refused_in_one_line(tmp_path, capsys):
    fptt, bptt = tmp_path / "fptt", tmp_path / "bptt"
    app.fit(app.Config(epochs=1, **TINY_CONFIG), str(fptt), plot=False)
    app.fit(app.Config(algo="bptt", epochs=1, **TINY_CONFIG), str(bptt), plot=False)
    path = fptt / report.CHECKPOINT
    state = checkpoint.load(path)
    state["carry"] = checkpoint.load(bptt / report.CHECKPOINT)["carry"]
    checkpoint.save(path, state)
    code, _, err = _run(capsys, "train", "--resume", str(fptt), "--epochs", "2")
    _one_line_error(code, err)
    assert f"checkpoint {path} holds a BPTTCarry, but its config's algorithm fptt carries a FPTTCarry" in err


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("epoch"), r"key\(s\) \['epoch'\] missing"),
    (lambda s: s.update(history="x"), r"'history' must be a list of one row per epoch done \(1\)"),
    (lambda s: s.update(epoch=True), r"'epoch' must be an integer >= 0"),
    (lambda s: s.update(data_generator=torch.zeros(3)), r"'data_generator' must be a torch.Generator state"),
    (lambda s: s.update(config="[1]"), r"has no valid run config"),
    (lambda s: s.update(train_time_s=float("nan")), r"'train_time_s' must be a finite number"),
])
def test_a_run_checkpoint_with_missing_or_mistyped_keys_is_a_checkpoint_error(tmp_path, change, message):
    app.fit(app.Config(epochs=1, **TINY_CONFIG), str(tmp_path), plot=False)
    path = tmp_path / report.CHECKPOINT
    state = checkpoint.load(path)
    change(state)
    checkpoint.save(path, state)
    with pytest.raises(checkpoint.CheckpointError, match=message) as info:
        app.fit(app.Config(), resume=str(tmp_path), epochs=2, plot=False)
    assert str(path) in str(info.value)


def test_temporaries_left_by_killed_writes_are_removed_at_start_and_nothing_else(tmp_path, capsys, trained):
    ours = [".tmp-checkpoint.pt-k1ll3d_x", "metrics.json.tmp", ".write-test-12345"]
    theirs = ["notes.txt", ".tmp-mine", "checkpoint.pt.bak", "data.json.tmp", ".tmp-checkpoint.pt-toolongname"]
    for name in ours + theirs:
        (trained / name).write_bytes(b"x" * 100)
    code, _, err = _run(capsys, "train", "--resume", str(trained), "--epochs", "2", "--no-plot", "--quiet")
    assert code == 0 and "warning: removed 3 temporary file(s) that an interrupted run left in" in err
    assert sorted(os.listdir(trained)) == sorted([*theirs, report.CHECKPOINT, report.METRICS])


def test_a_killed_run_resumes_from_its_last_checkpoint_and_cleans_up_after_itself(tmp_path):
    """kill -9 of a real `purelearn train` after its first checkpoint (bounded wait); the next --resume takes
    over the stale lock, removes the killed process's temporaries, and finishes."""
    folder = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "purelearn", "train", "--epochs", "200", *TINY,
                             "--out", str(folder)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (folder / report.CHECKPOINT).exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the run did not write a checkpoint"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    (folder / ".tmp-checkpoint.pt-12345678").write_bytes(b"half a save")
    done = checkpoint.load(folder / report.CHECKPOINT)["epoch"]
    with pytest.warns(UserWarning):
        result = app.fit(app.Config(), resume=str(folder), epochs=done + 1, plot=False)
    assert result.metrics["epochs_completed"] == done + 1
    assert sorted(os.listdir(folder)) == [report.CHECKPOINT, report.METRICS]


# ----------------------------------------------------------------------------- a file system that stops taking writes


def _fail_writes_of(monkeypatch, name, error, after=0, call="replace"):
    """Make ``os.replace`` onto a file called ``name`` (or, with ``call="fsync"``, every ``os.fsync`` of a
    file) raise ``OSError(error)`` after ``after`` successful ones: a disk that fills up, a file system
    that turns read-only, mid-run."""
    real, done = getattr(os, call), []

    def failing(*args, **kwargs):
        if call == "fsync" or os.path.basename(args[1]) == name:
            done.append(args)
            if len(done) > after:
                raise OSError(error, os.strerror(error))
        return real(*args, **kwargs)

    monkeypatch.setattr(os, call, failing)


@pytest.mark.parametrize("call", ["replace", "fsync"])
def test_a_full_disk_at_a_checkpoint_keeps_the_last_good_one_exits_4_and_the_run_resumes(tmp_path, capsys,
                                                                                          monkeypatch, call):
    import errno

    folder = tmp_path / "run"
    _fail_writes_of(monkeypatch, report.CHECKPOINT, errno.ENOSPC, after=1, call=call)
    code, _, err = _run(capsys, "train", "--epochs", "3", *TINY, "--out", str(folder))
    _one_line_error(code, err, expected_code=4)
    assert (f"could not write {folder / report.CHECKPOINT}: no space left on the device (the disk is full); ENOSPC; "
            f"epoch 2 was not saved; the last good checkpoint (epoch 1) is kept in {folder}: free space (or make "
            f"the folder writable) and continue with --resume {folder}") in err
    monkeypatch.undo()
    assert checkpoint.load(folder / report.CHECKPOINT)["epoch"] == 1  # intact, verified by its hash
    assert sorted(os.listdir(folder)) == [report.CHECKPOINT]  # no temporary file, no lock left behind
    code, _, err = _run(capsys, "train", "--resume", str(folder), "--epochs", "2", "--no-plot", "--quiet")
    assert code == 0, err


def test_a_read_only_file_system_at_the_metrics_is_one_line_and_the_checkpoint_is_kept(tmp_path, capsys,
                                                                                    monkeypatch):
    import errno

    folder = tmp_path / "run"
    _fail_writes_of(monkeypatch, report.METRICS, errno.EROFS)
    code, _, err = _run(capsys, "train", "--epochs", "1", *TINY, "--out", str(folder))
    _one_line_error(code, err, expected_code=4)
    assert (f"could not write {folder / report.METRICS}: the file system is read-only; EROFS; the last good "
            f"checkpoint (epoch 1) is kept in {folder}") in err
    assert sorted(os.listdir(folder)) == [report.CHECKPOINT]  # metrics.json.tmp removed


def test_storage_errors_say_the_reason_and_survive_a_process_boundary():
    import errno
    import pickle

    from purelearn.app.errors import StorageError, describe_os_error

    assert describe_os_error(OSError(errno.EDQUOT, "Disk quota exceeded")) == "the disk quota is exceeded; EDQUOT"
    assert describe_os_error(OSError(errno.EXDEV, "Invalid cross-device link")) == "Invalid cross-device link; EXDEV"
    err = pickle.loads(pickle.dumps(StorageError("could not write x: full", errno.ENOSPC)))  # compare's children
    assert isinstance(err, OSError) and err.errno == errno.ENOSPC and str(err) == "could not write x: full"


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("epoch"), r"is not a run's checkpoint: key\(s\) \['epoch'\] missing"),
    (lambda s: s.update(history="x"), r"'history' must be a list of one row per epoch done \(1\)"),
    (lambda s: s.update(carry={"a": [[[[[torch.zeros(1)]]]]]}), r"holds a dict"),
])
def test_a_hand_made_checkpoint_is_one_line_on_the_command_line(capsys, trained, change, message):
    path = trained / report.CHECKPOINT
    state = checkpoint.load(path)
    change(state)
    checkpoint.save(path, state)  # a valid hash: only the contents are wrong
    code, _, err = _run(capsys, "train", "--resume", str(trained), "--epochs", "2")
    _one_line_error(code, err)
    assert re.search(rf"error: checkpoint .*{message}", err), err
