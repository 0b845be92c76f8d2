"""Specification of ``purelearn.online.ottt``: SpikingJelly 2.0.0 ``ottt_online_training`` with
``layer.OTTTSequential`` (OTTT_O and OTTT_A), the model check at build time, and OTTT_A's
per-sequence update."""

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
    grads_diff,
    params_diff,
    sequences,
    sj_online,
    tensor_leaves,
)

from purelearn import neurons, nn, online, optim, tree

SHAPES = {"mlp": (6,), "conv": (2, 8, 8)}


def sj_ottt_net(sj, arch: str, dtype: torch.dtype, seed: int) -> tnn.Module:
    torch.manual_seed(seed)
    if arch == "mlp":
        net = sj.layer.OTTTSequential(tnn.Linear(6, 8), sj.neuron.OTTTLIFNode(), tnn.Linear(8, 3),
                                      sj.neuron.LIFNode())
    else:
        net = sj.layer.OTTTSequential(tnn.Conv2d(2, 4, 3, padding=1), sj.neuron.OTTTLIFNode(), tnn.AvgPool2d(2),
                                      tnn.Flatten(), tnn.Linear(4 * 4 * 4, 3), sj.neuron.LIFNode())
    return net.to(dtype)


@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
@pytest.mark.parametrize("online_", [True, False], ids=["online", "accumulate"])
@pytest.mark.parametrize("arch", ["mlp", "conv"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_matches_spikingjelly_ottt_over_three_sequences(sj, dtype, arch, online_, opt_name):
    ol = sj_online()
    net = sj_ottt_net(sj, arch, dtype, 3)
    data = sequences(3, 4, SHAPES[arch], (3,), dtype, 3, batches=[3, 2, 3])
    model, params, states = nn.from_torch(net, data[0][0][0])
    assert isinstance(model[1], neurons.OTTTLIF)
    initial = tree.clone(params)
    topt = OPTIMIZERS[opt_name].torch(net.parameters())
    learner = online.ottt(model, F.mse_loss, OPTIMIZERS[opt_name].ours(), online=online_)
    carry = learner.init(params, states)
    for x, y in data:
        net.train()
        batch_loss, y_all = ol.ottt_online_training(net, topt, x.transpose(0, 1), y.transpose(0, 1),
                                                    F.mse_loss, online_)
        sj.functional.reset_net(net)
        carry, outs = learner.run(carry, x, y)
        assert outs.loss.shape == (x.shape[0],)
        torch.testing.assert_close(outs.loss.sum(), batch_loss, rtol=0, atol=TOL[dtype])
        torch.testing.assert_close(outs.y, y_all.transpose(0, 1), rtol=0, atol=TOL[dtype])
    assert params_diff(carry.params, net) <= TOL[dtype]
    assert params_diff(initial, net) > 1e-4


def test_linear_after_plain_lif_is_refused_naming_the_layer():
    model = nn.Sequential(nn.Linear(6, 8), neurons.LIF(), nn.Linear(8, 3), neurons.LIF())
    with pytest.raises(ValueError, match=r"layer 2 \(Linear\).*layer 1 \(LIF\).*trace"):
        online.ottt(model, F.mse_loss, optim.sgd(lr=0.1))


def test_conv_after_plain_lif_through_pooling_is_refused():
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), neurons.LIF(), nn.AvgPool2d(2), nn.Flatten(),
                          nn.Linear(16 * 4, 3), neurons.LIF())
    with pytest.raises(ValueError, match=r"layer 4 \(Linear\).*layer 1 \(LIF\)"):
        online.ottt(model, F.mse_loss, optim.sgd(lr=0.1))


def test_plain_lif_at_the_output_is_accepted():
    model = nn.Sequential(nn.Linear(6, 8), neurons.OTTTLIF(), nn.Linear(8, 3), neurons.LIF())
    online.ottt(model, F.mse_loss, optim.sgd(lr=0.1))


def test_online_flag_must_be_a_bool():
    model = nn.Sequential(nn.Linear(6, 8), neurons.OTTTLIF(), nn.Linear(8, 3), neurons.LIF())
    with pytest.raises(TypeError, match="online"):
        online.ottt(model, F.mse_loss, optim.sgd(lr=0.1), online=1)


def test_accumulating_step_keeps_the_sum_until_last(sj):
    """OTTT_A: ``step`` adds ∇l_t to ``grad_sum`` and leaves params alone until ``last=True``."""
    ol = sj_online()
    dtype = torch.float64
    (x, y), = sequences(1, 3, (6,), (3,), dtype, 4)
    net = sj_ottt_net(sj, "mlp", dtype, 4)
    model, params, states = nn.from_torch(net, x[0])
    initial = tree.clone(params)
    learner = online.ottt(model, F.mse_loss, optim.sgd(lr=0.5), online=False)
    carry = learner.init(params, states)
    assert all(torch.count_nonzero(g) == 0 for g in tree.leaves(carry.grad_sum))
    for t in range(2):
        carry, _ = learner.step(carry, x[t], y[t])
        assert tree.max_abs_diff(carry.params, initial) == 0
        assert tree.max_abs_diff(carry.opt_state, learner.optimizer.init(initial)) == 0

    # the reference's accumulated .grad over the first two steps (lr=0 keeps its weights)
    zero_lr = torch.optim.SGD(net.parameters(), lr=0.0)
    ol.ottt_online_training(net, zero_lr, x[:2].transpose(0, 1), y[:2].transpose(0, 1), F.mse_loss, False)
    sj.functional.reset_net(net)
    assert grads_diff(carry.grad_sum, net) <= TOL[dtype]
    assert max(p.grad.abs().max().item() for p in net.parameters()) > 1e-6

    end, _ = learner.step(carry, x[2], y[2], last=True)
    assert all(torch.count_nonzero(g) == 0 for g in tree.leaves(end.grad_sum))
    ref = sj_ottt_net(sj, "mlp", dtype, 4)
    ol.ottt_online_training(ref, torch.optim.SGD(ref.parameters(), lr=0.5), x.transpose(0, 1),
                            y.transpose(0, 1), F.mse_loss, False)
    assert params_diff(end.params, ref) <= TOL[dtype]


def test_online_carry_has_no_grad_sum_and_updates_every_step():
    model = nn.Sequential(nn.Linear(6, 8), neurons.OTTTLIF(), nn.Linear(8, 3), neurons.LIF())
    (x, y), = sequences(1, 3, (6,), (3,), torch.float64, 5)
    params, states = model.init(torch.Generator().manual_seed(5), x[0])
    learner = online.ottt(model, F.mse_loss, optim.sgd(lr=0.5), online=True)
    carry = learner.init(params, states)
    assert carry.grad_sum is None
    nxt, _ = learner.step(carry, x[0], y[0])
    assert nxt.grad_sum is None
    assert tree.max_abs_diff(nxt.params, carry.params) > 0


def test_run_returns_fresh_states_and_traces():
    model = nn.Sequential(nn.Linear(6, 8), neurons.OTTTLIF(), nn.Linear(8, 3), neurons.LIF())
    (x, y), = sequences(1, 3, (6,), (3,), torch.float64, 6)
    params, states = model.init(torch.Generator().manual_seed(6), x[0])
    learner = online.ottt(model, F.mse_loss, optim.sgd(lr=0.5), online=False)
    carry, _ = learner.run(learner.init(params, states), x, y)
    assert all(s.dim() == 0 and s.item() == 0 for s in tensor_leaves(carry.states))
    assert all(torch.count_nonzero(g) == 0 for g in tree.leaves(carry.grad_sum))
    carry, outs = learner.run(carry, x[:, :1], y[:, :1])
    assert outs.y.shape == (3, 1, 3)
