"""Data parallelism (purelearn.distributed): the pieces in one process, and two gloo processes on
loopback whose learners equal one process on the global batch (tests/_data_parallel_worker.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from _launch import launch
from hypothesis import given
from hypothesis import strategies as st

from purelearn import distributed, neurons, nn, online, optim, tree

HERE = Path(__file__).parent
WORKER = HERE / "_data_parallel_worker.py"


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("dp") / "results.json"
    procs = launch(WORKER, str(out))
    for p in procs:
        assert p.returncode == 0, p.stderr[-3000:]
    ranks = json.loads(out.read_text())["ranks"]
    assert all("error" not in r for r in ranks), [r.get("error") for r in ranks]
    return ranks[0] | {"other ranks": ranks[1:]}


# --------------------------------------------------------------------------------------- one process


@given(n=st.integers(1, 200), ranks=st.integers(1, 16))
def test_shards_cover_the_batch_contiguously_and_evenly(n, ranks):
    if n < ranks:
        with pytest.raises(ValueError, match=f"{ranks} ranks"):
            distributed.shard_bounds(n, ranks, 0)
        return
    bounds = [distributed.shard_bounds(n, ranks, r) for r in range(ranks)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
    sizes = [b - a for a, b in bounds]
    assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1
    assert [t.shape[0] for t in torch.tensor_split(torch.arange(n), ranks)] == sizes


def test_one_process_is_the_identity():
    dp = distributed.DataParallel()
    grads = {"w": torch.randn(3, 2), "b": torch.randn(2)}
    assert distributed.world_size() == 1 and distributed.rank() == 0 and not distributed.active()
    assert dp.gradient(grads, 7) is grads and dp.mean(grads) is grads
    dp.check_same(grads, "grads")  # nothing to compare
    x = torch.arange(10.0).reshape(5, 2)
    assert distributed.shard(x).data_ptr() == x.data_ptr() and distributed.shard(x).shape == x.shape


def test_a_data_parallel_learner_in_one_process_is_the_plain_learner():
    model = nn.Sequential(nn.Linear(4, 3), neurons.LIF())
    params, states = model.init(torch.Generator().manual_seed(0), torch.rand(2, 4))
    x, y = torch.rand(5, 2, 4), torch.rand(5, 2, 3)
    plain = online.fptt(model, F.mse_loss, optim.sgd(lr=0.3))
    dp = online.fptt(model, F.mse_loss, optim.sgd(lr=0.3), data_parallel=distributed.DataParallel())
    a, _ = plain.run(plain.init(params, states), x, y)
    b, _ = dp.run(dp.init(params, states), x, y)
    assert tree.max_abs_diff(a, b) == 0.0


@given(st.lists(st.floats(-1e3, 1e3, allow_nan=False, width=32), min_size=1, max_size=20),
       st.integers(0, 19), st.integers(0, 31))
def test_checksums_see_every_bit_flip(values, where, bit):
    t = torch.tensor(values, dtype=torch.float32)
    same = distributed.checksums([t, t.clone()])
    assert same[0] == same[1]
    flipped = t.clone()
    flipped.view(torch.int32)[where % len(values)] ^= 1 << bit
    assert distributed.checksums([flipped])[0] != same[0]


def test_checksums_tell_equal_bits_in_other_shapes_apart():
    t = torch.arange(6.0)
    assert distributed.checksums([t])[0] != distributed.checksums([t.reshape(2, 3).t().contiguous()])[0]
    assert distributed.checksums([torch.tensor([True, False])]).shape == (1,)


def test_bad_data_parallel_arguments_are_named():
    with pytest.raises(ValueError, match="loss_reduction"):
        distributed.DataParallel(loss_reduction="avg")
    model = nn.Sequential(nn.Linear(4, 3), neurons.LIF())
    for make in (lambda dp: online.fptt(model, F.mse_loss, optim.sgd(lr=0.1), data_parallel=dp),
                 lambda dp: online.bptt(model, F.mse_loss, optim.sgd(lr=0.1), data_parallel=dp)):
        with pytest.raises(TypeError, match="data_parallel"):
            make("gloo")


# --------------------------------------------------------------------------------- two gloo processes

EAGER_CASES = ["fptt-f64", "fptt-f32", "fptt-adam-f32", "fptt-window-f64", "fptt_dual-f64", "fptt_dual-f32",
               "ottt_a-f64", "ottt_o-f32", "sltt-f64", "sltt_k-f64", "bptt-f64", "bptt-f32"]


@pytest.mark.parametrize("case", EAGER_CASES + ["fptt-compiled-f64", "sltt_k-compiled-f64"])
def test_two_ranks_equal_one_process_on_the_global_batch(two_ranks, case):
    result = two_ranks[case]
    tol = 1e-10 if case.endswith("f64") else 1e-5
    assert result["params"] <= tol and result["opt_state"] <= tol and result["loss"] <= tol, result
    assert result["ranks_agree"], "the ranks' params or optimizer state differ"
    assert all(other[case]["ranks_agree"] for other in two_ranks["other ranks"])


def test_without_the_all_reduce_the_shards_drift_apart(two_ranks):
    """The control: the same shards without ``data_parallel`` leave the one-process run and each other."""
    result = two_ranks["fptt-not-reduced-f64"]
    assert result["params"] > 1e-4 and not result["ranks_agree"]


def test_a_vmapped_sweep_of_data_parallel_learners_equals_each_row_alone(two_ranks):
    assert two_ranks["vmap"]["params"] <= 1e-10


def test_batchnorm_statistics_stay_per_rank_until_averaged(two_ranks):
    bn = two_ranks["batchnorm"]
    assert not bn["states_agree_before"], "per-rank batches should give per-rank running statistics"
    assert bn["states_agree_after"] and bn["mean_error"] <= 1e-6


def test_a_drifted_rank_is_named_on_every_rank(two_ranks):
    for ranks in [two_ranks, *two_ranks["other ranks"]]:
        assert ranks["drift"]["message"] is not None and "2.bias" in ranks["drift"]["message"]
        assert "0.weight" not in ranks["drift"]["message"]
