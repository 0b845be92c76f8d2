"""Specification of ``purelearn.online.sltt``: SpikingJelly 2.0.0 ``ottt_online_training`` over an
``nn.Sequential`` of ``SLTTLIFNode`` (per-sequence and per-step updates), and SLTT-K: exactly k
backward passes per sequence, on steps drawn reproducibly from the carry's key."""

from __future__ import annotations

import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as F
from _learner_helpers import (
    DTYPE_IDS,
    DTYPES,
    OPTIMIZERS,
    TOL,
    assert_untouched,
    params_diff,
    sequences,
    snapshot,
    train_beside_sj_ottt,
)

from purelearn import neurons, nn, online, optim, tree

SHAPES = {"mlp": (6,), "conv": (2, 8, 8)}


def sj_sltt_net(sj, arch: str, dtype: torch.dtype, seed: int) -> tnn.Module:
    torch.manual_seed(seed)
    if arch == "mlp":
        net = tnn.Sequential(tnn.Linear(6, 8), sj.neuron.SLTTLIFNode(), tnn.Linear(8, 3), sj.neuron.SLTTLIFNode())
    else:
        net = tnn.Sequential(tnn.Conv2d(2, 4, 3, padding=1), sj.neuron.SLTTLIFNode(), tnn.AvgPool2d(2),
                             tnn.Flatten(), tnn.Linear(4 * 4 * 4, 3), sj.neuron.SLTTLIFNode())
    return net.to(dtype)


def is_differentiated(y_hat: torch.Tensor) -> bool:
    """Whether the loss on ``y_hat`` is being differentiated (torch.func.grad or plain autograd)."""
    return bool(torch._C._functorch.is_gradtrackingtensor(y_hat) or y_hat.requires_grad)


class BackwardCounter:
    """``F.mse_loss`` recording, per call, whether that step's loss is differentiated."""

    def __init__(self) -> None:
        self.calls: list[bool] = []

    def __call__(self, y_hat: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.calls.append(is_differentiated(y_hat))
        return F.mse_loss(y_hat, target)

    def take(self) -> list[int]:
        """The differentiated call indices since the last ``take`` (time steps, for one sequence)."""
        steps = [t for t, d in enumerate(self.calls) if d]
        self.calls = []
        return steps


def mlp(seed: int = 0, dtype: torch.dtype = torch.float64, T: int = 8, n: int = 4):
    model = nn.Sequential(nn.Linear(6, 8), neurons.SLTTLIF(), nn.Linear(8, 3), neurons.SLTTLIF())
    data = sequences(n, T, (6,), (3,), dtype, seed)
    params, states = model.init(torch.Generator().manual_seed(seed), data[0][0][0])
    return model, params, states, data


# --------------------------------------------------------------------------------------------------
# The reference
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
@pytest.mark.parametrize("online_", [False, True], ids=["accumulate", "online"])
@pytest.mark.parametrize("arch", ["mlp", "conv"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_matches_spikingjelly_sltt_over_three_sequences(sj, dtype, arch, online_, opt_name):
    net = sj_sltt_net(sj, arch, dtype, 8)
    data = sequences(3, 4, SHAPES[arch], (3,), dtype, 8, batches=[3, 2, 3])
    model, params, states = nn.from_torch(net, data[0][0][0])
    assert all(isinstance(m, neurons.SLTTLIF) for m in model.neurons)
    initial = tree.clone(params)
    topt = OPTIMIZERS[opt_name].torch(net.parameters())
    kwargs = {} if not online_ else {"online": True}  # online=False is the default
    learner = online.sltt(model, F.mse_loss, OPTIMIZERS[opt_name].ours(), **kwargs)
    carry, _ = train_beside_sj_ottt(sj, net, topt, learner, learner.init(params, states), data, online_,
                                       TOL[dtype])
    assert params_diff(carry.params, net) <= TOL[dtype]
    assert params_diff(initial, net) > 1e-4


def test_default_is_per_sequence_update():
    model, params, states, data = mlp()
    learner = online.sltt(model, F.mse_loss, optim.sgd(lr=0.5))
    assert learner.online is False
    carry = learner.init(params, states)
    x, y = data[0]
    nxt, _ = learner.step(carry, x[0], y[0])
    assert tree.max_abs_diff(nxt.params, carry.params) == 0
    assert max(g.abs().max().item() for g in tree.leaves(nxt.grad_sum)) > 0


def test_lif_neurons_are_refused_naming_the_layer():
    model = nn.Sequential(nn.Linear(6, 8), neurons.SLTTLIF(), nn.Linear(8, 3), neurons.LIF())
    with pytest.raises(ValueError, match=r"layer 3 is LIF.*SLTTLIF"):
        online.sltt(model, F.mse_loss, optim.sgd(lr=0.1))
    model = nn.Sequential(nn.Linear(6, 8), neurons.LIF(), nn.Linear(8, 3), neurons.SLTTLIF())
    with pytest.raises(ValueError, match=r"layer 1 is LIF"):
        online.sltt(model, F.mse_loss, optim.sgd(lr=0.1))


# --------------------------------------------------------------------------------------------------
# SLTT-K
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("online_", [False, True], ids=["accumulate", "online"])
@pytest.mark.parametrize("k", [1, 3])
def test_sltt_k_runs_exactly_k_backward_passes_on_the_selected_steps(k, online_):
    model, params, states, data = mlp(T=8)
    counter = BackwardCounter()
    learner = online.sltt(model, counter, optim.sgd(lr=0.5), online=online_, k=k, seed=3)
    carry = learner.init(params, states)
    selections = []
    for x, y in data:
        expected = learner.selected_steps(carry, x.shape[0])
        carry, _ = learner.run(carry, x, y)
        assert len(counter.calls) == x.shape[0]  # every step runs a forward (and a loss)
        steps = counter.take()
        assert len(steps) == k
        assert steps == expected
        selections.append(steps)
    # a new draw for every sequence
    for i in range(len(selections) - 1):
        assert selections[i] != selections[i + 1]


def test_plain_sltt_differentiates_every_step():
    model, params, states, data = mlp(T=5)
    counter = BackwardCounter()
    learner = online.sltt(model, counter, optim.sgd(lr=0.5))
    carry = learner.init(params, states)
    x, y = data[0]
    learner.run(carry, x, y)
    assert counter.take() == list(range(5))


def test_sltt_k_selection_is_reproducible_from_the_seed():
    model, params, states, data = mlp(T=8)

    def draws(seed: int) -> list[list[int]]:
        counter = BackwardCounter()
        learner = online.sltt(model, counter, optim.sgd(lr=0.5), k=2, seed=seed)
        carry = learner.init(params, states)
        out = []
        for x, y in data:
            carry, _ = learner.run(carry, x, y)
            out.append(counter.take())
        return out, carry.params

    (a, pa), (b, pb), (c, _) = draws(5), draws(5), draws(6)
    assert a == b
    assert tree.max_abs_diff(pa, pb) == 0
    assert a != c


@pytest.mark.parametrize("online_", [False, True], ids=["accumulate", "online"])
def test_sltt_k_matches_spikingjelly_loop_on_the_selected_steps(sj, online_):
    """SLTT-K = SpikingJelly's SLTT loop where only the drawn steps call ``backward``."""
    dtype = torch.float64
    net = sj_sltt_net(sj, "mlp", dtype, 9)
    data = sequences(3, 6, (6,), (3,), dtype, 9)
    model, params, states = nn.from_torch(net, data[0][0][0])
    topt = torch.optim.SGD(net.parameters(), lr=0.5, momentum=0.9)
    learner = online.sltt(model, F.mse_loss, optim.sgd(lr=0.5, momentum=0.9), online=online_, k=2, seed=1)
    carry = learner.init(params, states)
    for x, y in data:
        selected = learner.selected_steps(carry, x.shape[0])
        topt.zero_grad()
        for t in range(x.shape[0]):
            if online_:
                topt.zero_grad()
            loss = F.mse_loss(net(x[t]), y[t])
            if t in selected:
                loss.backward()
                if online_:
                    topt.step()
            sj.functional.detach_net(net)
        if not online_:
            topt.step()
        sj.functional.reset_net(net)
        carry, _ = learner.run(carry, x, y)
    assert params_diff(carry.params, net) <= TOL[dtype]


@pytest.mark.parametrize("online_", [False, True], ids=["accumulate", "online"])
def test_sltt_k_with_k_equal_T_equals_plain_sltt(online_):
    model, params, states, data = mlp(T=5, n=3)
    plain = online.sltt(model, F.mse_loss, optim.adam(0.01), online=online_)
    full_k = online.sltt(model, F.mse_loss, optim.adam(0.01), online=online_, k=5, seed=4)
    a, b = plain.init(params, states), full_k.init(params, states)
    for x, y in data:
        a, out_a = plain.run(a, x, y)
        b, out_b = full_k.run(b, x, y)
        assert torch.equal(out_a.loss, out_b.loss)
    assert tree.max_abs_diff(a.params, b.params) == 0
    assert tree.max_abs_diff(a.opt_state, b.opt_state) == 0


def test_sltt_k_larger_than_T_is_refused_before_any_change():
    model, params, states, data = mlp(T=4)
    learner = online.sltt(model, F.mse_loss, optim.sgd(lr=0.5), k=5)
    carry = learner.init(params, states)
    x, y = data[0]
    snap = snapshot(carry, x, y)
    with pytest.raises(ValueError, match=r"`k`=5.*T=4"):
        learner.run(carry, x, y)
    assert_untouched(snap)


@pytest.mark.parametrize("k, exc", [(0, ValueError), (-1, ValueError), (2**63, ValueError), (1.5, TypeError),
                                    (True, TypeError)])
def test_invalid_k_is_refused(k, exc):
    model, _, _, _ = mlp(n=1)
    with pytest.raises(exc, match=r"^sltt: `k` must be an int"):
        online.sltt(model, F.mse_loss, optim.sgd(lr=0.5), k=k)


def test_run_advances_the_key_and_resets_states():
    model, params, states, data = mlp(T=4)
    learner = online.sltt(model, F.mse_loss, optim.sgd(lr=0.5), k=2, seed=0)
    carry = learner.init(params, states)
    assert carry.key.dtype == torch.int64 and carry.key.dim() == 0
    x, y = data[0]
    nxt, _ = learner.run(carry, x, y)
    assert nxt.key.item() != carry.key.item()
    assert all(s.dim() == 0 for s in tree.leaves(nxt.states))
    assert all(torch.count_nonzero(g) == 0 for g in tree.leaves(nxt.grad_sum))
