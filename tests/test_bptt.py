"""Specification of ``purelearn.online.bptt``: a hand-written torch autograd BPTT loop on the same
SpikingJelly network, equality with SLTT's accumulated gradient over SLTT-LIF models, and a step
that is one update over a window (the whole sequence in ``run``)."""

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
    params_diff,
    sequences,
)

from purelearn import neurons, nn, online, optim, tree


def sj_net(sj, node: str, dtype: torch.dtype, seed: int) -> tnn.Module:
    torch.manual_seed(seed)
    cls = {"lif": sj.neuron.LIFNode, "sltt": sj.neuron.SLTTLIFNode}[node]
    return tnn.Sequential(tnn.Linear(6, 8), cls(), tnn.Linear(8, 3), cls()).to(dtype)


def hand_bptt(sj, net, opt, x_seq, y_seq):
    """loss = Σ_t mse(net(x_t), y_t); backward; step; reset_net. Returns (losses [T], y [T, ...])."""
    opt.zero_grad()
    losses, ys = [], []
    for t in range(x_seq.shape[0]):
        y_hat = net(x_seq[t])
        losses.append(F.mse_loss(y_hat, y_seq[t]))
        ys.append(y_hat.detach())
    sum(losses).backward()
    opt.step()
    sj.functional.reset_net(net)
    return torch.stack([loss.detach() for loss in losses]), torch.stack(ys)


@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
@pytest.mark.parametrize("node", ["lif", "sltt"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_matches_hand_written_bptt_over_three_sequences(sj, dtype, node, opt_name):
    net = sj_net(sj, node, dtype, 12)
    data = sequences(3, 5, (6,), (3,), dtype, 12, batches=[3, 2, 3])
    model, params, states = nn.from_torch(net, data[0][0][0])
    initial = tree.clone(params)
    topt = OPTIMIZERS[opt_name].torch(net.parameters())
    learner = online.bptt(model, F.mse_loss, OPTIMIZERS[opt_name].ours())
    carry = learner.init(params, states)
    for x, y in data:
        losses, ys = hand_bptt(sj, net, topt, x, y)
        carry, outs = learner.run(carry, x, y)
        torch.testing.assert_close(outs.loss, losses, rtol=0, atol=TOL[dtype])
        torch.testing.assert_close(outs.y, ys, rtol=0, atol=TOL[dtype])
    assert params_diff(carry.params, net) <= TOL[dtype]
    assert params_diff(initial, net) > 1e-4


def test_detaching_the_temporal_path_changes_the_bptt_gradient():
    """The SLTT equality below is not vacuous: with the membrane path kept (LIF) BPTT differs."""
    model = nn.Sequential(nn.Linear(6, 8), neurons.LIF(), nn.Linear(8, 3), neurons.LIF())
    slttish = nn.Sequential(nn.Linear(6, 8), neurons.SLTTLIF(detach_reset=False), nn.Linear(8, 3),
                            neurons.SLTTLIF(detach_reset=False))
    (x, y), = sequences(1, 5, (6,), (3,), torch.float64, 13)
    params, states = model.init(torch.Generator().manual_seed(13), x[0])
    results = []
    for m in (model, slttish):
        learner = online.bptt(m, F.mse_loss, optim.sgd(lr=1.0))
        results.append(learner.run(learner.init(params, states), x, y)[0].params)
    assert tree.max_abs_diff(*results) > 1e-6


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_bptt_over_sltt_lif_equals_sltt_accumulated_gradient(dtype):
    """SGD(lr=1), one sequence: both learners move the weights by minus their gradient."""
    model = nn.Sequential(nn.Linear(6, 8), neurons.SLTTLIF(), nn.Linear(8, 3), neurons.SLTTLIF())
    (x, y), = sequences(1, 5, (6,), (3,), dtype, 14)
    params, states = model.init(torch.Generator().manual_seed(14), x[0])
    bptt = online.bptt(model, F.mse_loss, optim.sgd(lr=1.0))
    sltt = online.sltt(model, F.mse_loss, optim.sgd(lr=1.0), online=False)
    b, b_out = bptt.run(bptt.init(params, states), x, y)
    s, s_out = sltt.run(sltt.init(params, states), x, y)
    delta_b = tree.sub(b.params, params)
    delta_s = tree.sub(s.params, params)
    assert tree.max_abs_diff(delta_b, delta_s) <= TOL[dtype]
    assert max(d.abs().max().item() for d in tree.leaves(delta_b)) > 1e-4
    torch.testing.assert_close(b_out.loss, s_out.loss, rtol=0, atol=TOL[dtype])


def test_plan_is_one_call_over_the_whole_sequence_and_run_is_that_step():
    model = nn.Sequential(nn.Linear(6, 8), neurons.LIF(), nn.Linear(8, 3), neurons.LIF())
    learner = online.bptt(model, F.mse_loss, optim.adam(lr=0.01))
    (x, y), = sequences(1, 5, (6,), (3,), torch.float64, 3)
    params, states = model.init(torch.Generator().manual_seed(3), x[0])
    carry = learner.init(params, states)
    assert learner.plan(carry, 5) == (online.Call(slice(0, 5), (("last", True),)),)
    assert learner.updates_per_sequence(5) == 1
    by_step, out_step = learner.step(carry, x, y)
    by_run, out_run = learner.run(carry, x, y)
    assert tree.max_abs_diff(by_step.params, by_run.params) == 0.0
    assert tree.max_abs_diff(by_step.opt_state, by_run.opt_state) == 0.0
    assert torch.equal(out_step.loss, out_run.loss) and torch.equal(out_step.y, out_run.y)
    # run ends the sequence (fresh states); the step alone keeps the states after the window
    assert all(leaf.dim() > 0 for leaf in tree.leaves(by_step.states))
    assert all(leaf.dim() == 0 for leaf in tree.leaves(by_run.states))


def test_step_refuses_a_single_step():
    model = nn.Sequential(nn.Linear(6, 3), neurons.LIF())
    learner = online.bptt(model, F.mse_loss, optim.sgd(lr=0.1))
    params, states = model.init(torch.Generator().manual_seed(0), torch.zeros(2, 6))
    carry = learner.init(params, states)
    with pytest.raises(ValueError, match=r"`x_win` must be a window \[L, N, features...\]"):
        learner.step(carry, torch.zeros(2, 6), torch.zeros(2, 3))


def test_run_returns_fresh_states_and_keeps_optimizer_state():
    model = nn.Sequential(nn.Linear(6, 8), neurons.LIF(), nn.Linear(8, 3), neurons.LIF())
    (x, y), = sequences(1, 4, (6,), (3,), torch.float64, 15)
    params, states = model.init(torch.Generator().manual_seed(15), x[0])
    learner = online.bptt(model, F.mse_loss, optim.adam(0.01))
    carry = learner.init(params, states)
    assert carry._fields == ("params", "states", "opt_state")
    carry, outs = learner.run(carry, x, y)
    assert outs.loss.shape == (4,) and outs.y.shape == (4, 3, 3)
    assert all(s.dim() == 0 for s in tree.leaves(carry.states))
    assert int(carry.opt_state.count) == 1
    carry, _ = learner.run(carry, x[:, :2], y[:, :2])
    assert int(carry.opt_state.count) == 2
