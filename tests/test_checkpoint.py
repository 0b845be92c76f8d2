"""Checkpoints: carries of every learner round-trip through weights_only files, written atomically."""

from __future__ import annotations

import dataclasses
import os

import optree
import pytest
import torch

from purelearn import app, checkpoint
from purelearn.app import registry, report, task
from purelearn.neurons import ALIFState, LIFState, OTTTLIFState
from purelearn.nn import RecurrentState
from purelearn.online import BPTTCarry, FPTTCarry, FPTTDualCarry, OTTTCarry, SLTTCarry
from purelearn.optim import AdamState

CARRY_TYPES = {"fptt": FPTTCarry, "fptt-dual": FPTTDualCarry, "ottt": OTTTCarry, "ottt-a": OTTTCarry,
               "sltt": SLTTCarry, "sltt-k": SLTTCarry, "bptt": BPTTCarry}


def _trained_carry(algo: str, model_name: str = "mlp"):
    """A carry after one short sequence, so states, optimizer moments and algorithm state are non-trivial."""
    step_shape = (1,) if model_name == "alif-rnn" else (6,)
    model = registry.build_model(model_name, algo, step_shape, 3, hidden=5)
    x_seq = torch.rand(4, 2, *step_shape, generator=torch.Generator().manual_seed(1)).bernoulli()
    params, states = model.init(torch.Generator().manual_seed(0), x_seq[0])
    options = {"k": 2, "seed": 3} if "k" in registry.ALGORITHMS[algo].reads else {}
    learner = registry.make_learner(algo, model, registry.make_optimizer("adam", 1e-2), **options)
    weights = task.time_weights("uniform", 4)
    carry, _ = learner.run(learner.init(params, states), x_seq, task.targets(torch.tensor([0, 2]), weights, 3))
    # one step into the next sequence: neuron states are [N, ...] tensors, not fresh 0-d ones
    if algo != "bptt":
        carry, _ = learner.step(carry, x_seq[0], task.targets(torch.tensor([0, 2]), weights, 3)[0])
    return carry


def _assert_identical(a, b, path="carry"):
    assert type(a) is type(b), f"{path}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), path
    elif isinstance(a, dict):
        assert list(a) == list(b), path
        for k in a:
            _assert_identical(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_identical(x, y, f"{path}.{getattr(type(a), '_fields', range(len(a)))[i]}")
    else:
        assert a == b, path


@pytest.mark.parametrize("algo", list(CARRY_TYPES))
def test_carry_of_every_learner_round_trips_with_its_named_tuple_types(tmp_path, algo):
    carry = _trained_carry(algo)
    path = tmp_path / "ckpt.pt"
    checkpoint.save(path, {"carry": carry, "epoch": 3, "note": "x"})
    back = checkpoint.load(path)
    assert back["epoch"] == 3 and back["note"] == "x"
    assert isinstance(back["carry"], CARRY_TYPES[algo])
    assert isinstance(back["carry"].opt_state, AdamState)
    _assert_identical(carry, back["carry"])
    # the file itself is plain data: torch.load(weights_only=True) reads it without our help
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == checkpoint.FORMAT
    assert len(raw["tensors"]) == len(optree.tree_leaves(carry))


def test_neuron_state_types_are_restored():
    expected = {"ottt": OTTTLIFState, "sltt": LIFState, "fptt": LIFState}
    for algo, state_type in expected.items():
        carry = _trained_carry(algo)
        back = checkpoint.decode_tree(checkpoint.encode_tree(carry, tensors := []), tensors)
        assert isinstance(back.states["2"], state_type)
    carry = _trained_carry("fptt", "alif-rnn")
    back = checkpoint.decode_tree(checkpoint.encode_tree(carry, tensors := []), tensors)
    assert isinstance(back.states["1"], RecurrentState) and isinstance(back.states["1"].neuron, ALIFState)
    _assert_identical(carry, back)


def test_none_empty_tuples_and_plain_values_round_trip(tmp_path):
    payload = {"a": None, "b": (), "c": [1, 2.5, "s", True], "d": {"e": torch.arange(3)}}
    checkpoint.save(tmp_path / "p.pt", payload)
    _assert_identical(payload, checkpoint.load(tmp_path / "p.pt"))


def test_interrupted_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    old = _trained_carry("fptt")
    checkpoint.save(path, {"carry": old, "epoch": 1})

    def crash(src, dst):
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        checkpoint.save(path, {"carry": _trained_carry("bptt"), "epoch": 2})
    monkeypatch.undo()
    back = checkpoint.load(path)
    assert back["epoch"] == 1
    _assert_identical(old, back["carry"])
    assert os.listdir(tmp_path) == ["checkpoint.pt"]  # the temporary file is cleaned up


def test_crash_while_writing_the_temporary_file_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    checkpoint.save(path, {"epoch": 1})
    real_save = torch.save

    def torn_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(path, {"epoch": 2})
    monkeypatch.setattr(torch, "save", real_save)
    assert checkpoint.load(path)["epoch"] == 1
    assert os.listdir(tmp_path) == ["checkpoint.pt"]


def test_save_overwrites_atomically_with_the_new_content(tmp_path):
    path = tmp_path / "checkpoint.pt"
    checkpoint.save(path, {"epoch": 1})
    checkpoint.save(path, {"epoch": 2})
    assert checkpoint.load(path)["epoch"] == 2


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_truncated_or_corrupt_checkpoint_is_one_clear_line(tmp_path, damage):
    path = tmp_path / "checkpoint.pt"
    checkpoint.save(path, {"carry": _trained_carry("fptt"), "epoch": 1})
    blob = path.read_bytes()
    path.write_bytes({"truncate": blob[: len(blob) // 2], "garbage": b"\x00garbage" * 50, "empty": b""}[damage])
    with pytest.raises(checkpoint.CheckpointError) as info:
        checkpoint.load(path)
    message = str(info.value)
    assert "truncated or corrupt" in message and str(path) in message and "\n" not in message


def test_other_files_and_missing_files_are_refused(tmp_path):
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint at"):
        checkpoint.load(tmp_path / "nothing.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(checkpoint.CheckpointError, match="not a purelearn checkpoint"):
        checkpoint.load(tmp_path / "other.pt")


def test_named_tuple_types_outside_purelearn_are_never_instantiated():
    node = {"namedtuple": "os.stat_result", "fields": []}
    with pytest.raises(checkpoint.CheckpointError, match="outside the allowed modules"):
        checkpoint.decode_tree(node, [])
    node = {"namedtuple": "purelearn.app.config.Config", "fields": []}  # a class, but not a NamedTuple
    with pytest.raises(checkpoint.CheckpointError, match="not a NamedTuple"):
        checkpoint.decode_tree(node, [])
    node = {"namedtuple": "purelearn.online.NoSuchCarry", "fields": []}
    with pytest.raises(checkpoint.CheckpointError, match="does not exist"):
        checkpoint.decode_tree(node, [])


def test_unsupported_leaves_are_refused_when_saving(tmp_path):
    with pytest.raises(TypeError, match="cannot store a object"):
        checkpoint.save(tmp_path / "x.pt", {"bad": object()})
    assert not os.listdir(tmp_path)


# ----------------------------------------------------------------------------- resuming runs of older versions

TINY_SEQ = dict(data="seq-digits", epochs=2, limit=32, hidden=8, batch_size=16)


def _strip_config(path, *keys):
    """Rewrite a run's checkpoint as an older purelearn wrote it: without the config fields ``keys``."""
    import json

    state = checkpoint.load(path)
    config = json.loads(state["config"])
    for key in keys:
        del config[key]
    state["config"] = json.dumps(config)
    checkpoint.save(path, state)


def test_a_checkpoint_from_before_fptt_windows_resumes_per_step_fptt(tmp_path):
    """Checkpoints written before --window/--reduction/--second-forward/--predict existed ran FPTT per step
    in SpikingJelly's form, predicting with the loss weights: resuming one continues that run exactly."""
    old_style = app.Config(algo="fptt", window=1, reduction="mean", second_forward="post", weighting="late",
                             predict="late", **TINY_SEQ)
    full = app.fit(old_style)
    app.fit(dataclasses.replace(old_style, epochs=1), str(tmp_path), plot=False)
    _strip_config(tmp_path / report.CHECKPOINT, "window", "reduction", "second_forward", "predict")
    resumed = app.fit(app.Config(), resume=str(tmp_path), plot=False, epochs=2)
    assert (resumed.config.window, resumed.config.reduction, resumed.config.second_forward,
            resumed.config.predict) == (1, "mean", "post", "late")
    _assert_identical(resumed.carry.params, full.carry.params)


def test_a_checkpoint_whose_params_do_not_fit_the_model_is_refused_in_one_line(tmp_path):
    app.fit(app.Config(algo="bptt", **{**TINY_SEQ, "epochs": 1}), str(tmp_path), plot=False)
    path = tmp_path / report.CHECKPOINT
    state = checkpoint.load(path)
    state["carry"].params["1"].pop("neuron")  # as alif-rnn was before its time constants were trained
    checkpoint.save(path, state)
    with pytest.raises(checkpoint.CheckpointError, match=r"does not fit model 'alif-rnn'.*start a new run"):
        app.fit(app.Config(), resume=str(tmp_path), plot=False, epochs=2)
