"""Checkpoints: carries of every learner round-trip through weights_only files, written atomically,
verified by their SHA-256 on load."""

from __future__ import annotations

import dataclasses
import json
import os
import struct
import tempfile
import warnings

import optree
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

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
        assert a.dtype == b.dtype and a.requires_grad == b.requires_grad and torch.equal(a, b), path
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


# ----------------------------------------------------------------------------- integrity: the SHA-256


def _hand_made(path, encoded, tensors=(), version=checkpoint.VERSION, **extra):
    """A checkpoint file written by hand: the structure ``encoded`` (JSON-able, or a string as it is),
    ``tensors``, with a correct SHA-256, unless ``extra`` replaces keys (a None value drops the key)."""
    text = encoded if isinstance(encoded, str) else json.dumps(encoded)
    blob = {"format": checkpoint.FORMAT, "version": version, "structure": text, "tensors": list(tensors)}
    if "sha256" not in extra:
        blob["sha256"] = checkpoint.digest(text, list(tensors))
    blob.update(extra)
    blob = {k: v for k, v in blob.items() if v is not None}
    torch.save(blob, path)
    return path


def test_a_checkpoint_carries_the_sha256_of_its_contents(tmp_path):
    path = tmp_path / "checkpoint.pt"
    checkpoint.save(path, {"carry": _trained_carry("fptt"), "epoch": 1})
    raw = torch.load(path, weights_only=True)
    assert raw["version"] == 2 and raw["sha256"] == checkpoint.digest(raw["structure"], raw["tensors"])
    assert len(raw["sha256"]) == 64


def test_a_flipped_byte_in_a_tensor_is_refused_naming_the_file(tmp_path):
    """The class the hostile probe found: a flipped byte inside a weight loaded as another weight."""
    path = tmp_path / "checkpoint.pt"
    weights = torch.arange(16, dtype=torch.float32) + 1000
    checkpoint.save(path, {"w": weights})
    blob = bytearray(path.read_bytes())
    at = blob.index(struct.pack("<4f", 1000, 1001, 1002, 1003)) + 5
    blob[at] ^= 0x01  # 1001.0 becomes another finite float: torch alone loads it without complaint
    path.write_bytes(bytes(blob))
    with pytest.raises(checkpoint.CheckpointError) as info:
        checkpoint.load(path)
    message = str(info.value)
    assert str(path) in message and "do not match the SHA-256" in message and "\n" not in message


def test_a_changed_structure_or_hash_is_refused(tmp_path):
    path = tmp_path / "checkpoint.pt"
    checkpoint.save(path, {"epoch": 7})
    raw = torch.load(path, weights_only=True)
    for change in ({"structure": raw["structure"].replace("7", "8")}, {"sha256": "0" * 64}, {"sha256": None}):
        _hand_made(path, raw["structure"], raw["tensors"], **change)
        with pytest.raises(checkpoint.CheckpointError, match="do not match the SHA-256"):
            checkpoint.load(path)


@pytest.fixture(scope="module")
def saved_carry():
    """A small FPTT run's checkpoint (about 8 KB): the payload and the file's bytes."""
    payload = {"carry": _trained_carry("fptt"), "epoch": 3, "history": [{"loss": 0.5}]}
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "checkpoint.pt")
        checkpoint.save(path, payload)
        with open(path, "rb") as f:
            yield payload, f.read()


def _load_corrupted(blob: bytes, position: int, xor: int):
    """``checkpoint.load`` of ``blob`` with byte ``position`` XOR-ed with ``xor``: the payload, or the error."""
    damaged = bytearray(blob)
    damaged[position] ^= xor
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "checkpoint.pt")
        with open(path, "wb") as f:
            f.write(damaged)
        try:
            return checkpoint.load(path)
        except checkpoint.CheckpointError as err:
            assert path in str(err) and "\n" not in str(err)
            return err


@given(where=st.floats(0, 1, exclude_max=True), xor=st.integers(1, 255))
def test_any_single_byte_corruption_is_refused_or_loads_identical_values(saved_carry, where, xor):
    payload, blob = saved_carry
    back = _load_corrupted(blob, int(where * len(blob)), xor)
    if not isinstance(back, checkpoint.CheckpointError):
        _assert_identical(payload, back)  # a byte that did not matter (zip padding, a record id)


def test_corruption_at_every_37th_byte_is_refused_or_harmless_and_the_hash_is_what_refuses_most(saved_carry):
    """A deterministic sweep of the whole file (about 220 positions, each bit pattern 0xff): torch
    itself refuses damage to the zip records and the pickle; damage to the tensors and the structure
    is what only the SHA-256 catches."""
    payload, blob = saved_carry
    refused_by_hash = 0
    for position in range(0, len(blob), 37):
        back = _load_corrupted(blob, position, 0xFF)
        if isinstance(back, checkpoint.CheckpointError):
            refused_by_hash += "SHA-256" in str(back)
        else:
            _assert_identical(payload, back)
    assert refused_by_hash >= 10


def test_a_version_1_checkpoint_without_hash_still_loads_with_one_warning(tmp_path):
    """Checkpoints written before the hash existed: loaded unverified, one warning per file."""
    path = tmp_path / "old.pt"
    tensors: list[torch.Tensor] = []
    structure = json.dumps(checkpoint.encode_tree({"w": torch.ones(3), "epoch": 2}, tensors))
    _hand_made(path, structure, tensors, version=1, sha256=None)
    with pytest.warns(UserWarning, match="written before checkpoints carried a SHA-256.*loaded unverified"):
        back = checkpoint.load(path)
    assert back["epoch"] == 2 and torch.equal(back["w"], torch.ones(3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        checkpoint.load(path)  # once per file and process
    checkpoint.save(path, back)
    assert torch.load(path, weights_only=True)["version"] == 2


def _nested(depth: int) -> dict:
    node: dict = {"value": 1}
    for _ in range(depth):
        node = {"list": [node]}
    return node


HAND_MADE = {
    "structure-missing": (lambda p: _hand_made(p, "{}", structure=None), "structure is missing"),
    "structure-not-json": (lambda p: _hand_made(p, "{not json"), "not valid JSON"),
    "tensors-not-a-list": (lambda p: _hand_made(p, {"value": 1}, tensors="x", sha256="0" * 64), "tensor list"),
    "namedtuple-without-fields": (lambda p: _hand_made(p, {"namedtuple": "purelearn.optim.AdamState"}),
                                  "malformed near"),
    "namedtuple-name-not-a-string": (lambda p: _hand_made(p, {"namedtuple": 3, "fields": []}), "not by a string"),
    "dict-entries-not-pairs": (lambda p: _hand_made(p, {"dict": [["a"]]}), "malformed near"),
    "dict-key-not-a-string": (lambda p: _hand_made(p, {"dict": [[1, {"value": 1}]]}), "malformed near"),
    "value-not-plain": (lambda p: _hand_made(p, {"value": {"a": 1}}), "malformed near"),
    "tensor-index-a-bool": (lambda p: _hand_made(p, {"tensor": True}, [torch.ones(1)]), "refers to tensor True"),
    "absurd-nesting": (lambda p: _hand_made(p, _nested(checkpoint.MAX_DEPTH + 5)), "nested more than 64 levels"),
    "nesting-beyond-json": (lambda p: _hand_made(p, '{"list": [' * 100_000 + "]}" * 100_000),
                            "nested too deeply|nested more than"),
    "sparse-tensor": (lambda p: torch.save({"format": checkpoint.FORMAT, "version": 2, "structure": '{"tensor": 0}',
                                            "tensors": [torch.eye(2).to_sparse()], "sha256": "0"}, p),
                      "tensor list is malformed"),
    "meta-tensor": (lambda p: torch.save({"format": checkpoint.FORMAT, "version": 2, "structure": '{"tensor": 0}',
                                          "tensors": [torch.empty(10**6, device="meta")], "sha256": "0"}, p),
                    "tensor list is malformed|truncated or corrupt"),
    "version-unknown": (lambda p: _hand_made(p, {"value": 1}, version=7), "has version 7; this purelearn reads 1, 2"),
}


@pytest.mark.parametrize("case", sorted(HAND_MADE))
def test_hand_made_checkpoints_are_refused_with_checkpoint_error(tmp_path, case):
    """Missing keys, values of the wrong type, absurd nesting: a CheckpointError naming the file, never a
    TypeError, KeyError or RecursionError."""
    make, message = HAND_MADE[case]
    path = tmp_path / "checkpoint.pt"
    make(path)
    with pytest.raises(checkpoint.CheckpointError, match=message) as info:
        checkpoint.load(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_temporaries_of_killed_saves_are_found_by_their_pattern_only(tmp_path):
    ours = [".tmp-checkpoint.pt-a1b2_c3d", ".tmp-checkpoint.pt-zzzzzzzz"]
    others = [".tmp-checkpoint.pt-short", ".tmp-notes", "checkpoint.pt", "notes.tmp", ".tmp-checkpoint.pt-a1b2c3d4e"]
    for name in ours + others:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / ".tmp-dir-abcdefgh").mkdir()  # a folder is never removed
    assert checkpoint.temporaries(tmp_path, "other.pt") == []
    removed = checkpoint.remove_stale_temporaries(tmp_path)
    assert sorted(os.path.basename(p) for p in removed) == sorted(ours)
    assert sorted(os.listdir(tmp_path)) == sorted([*others, ".tmp-dir-abcdefgh"])


def test_a_real_save_leaves_a_temporary_that_matches_the_pattern(tmp_path, monkeypatch):
    """The pattern is the one ``save`` writes: a save killed before its rename leaves such a file."""
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append(os.path.basename(src))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    checkpoint.save(tmp_path / "checkpoint.pt", {"epoch": 1})
    assert checkpoint._TEMPORARY.fullmatch(seen[0])["name"] == "checkpoint.pt"


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
