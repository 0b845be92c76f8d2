"""Specification of ``purelearn.online.fptt_dual``: the dual-variable FPTT equations of its module
docstring, written out with torch autograd and ``torch.optim`` on a SpikingJelly network."""

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
    list_diff,
    params_diff,
    sequences,
    snapshot,
)

from purelearn import neurons, nn, online, optim, tree

ALPHA, BETA = 0.1, 0.5


def hand_fptt_dual(sj, net, opt, x_seq, y_seq, w_bar, lam, *, alpha, beta, rho, window=1):
    """One sequence of the dual form by hand (``w_bar``, ``lam`` updated in the lists), per window of
    ``window`` steps (the last may be shorter) with l the window's summed loss, backpropagated through it::

        W  ← optimizer step on ∇[l(W) + Σ (rho − 1)·⟨W, λ⟩ + (alpha/2)·‖W − W̄‖²]
        λ  ← λ − alpha·(W − W̄)
        W̄  ← (1 − beta)·W̄ + beta·W − (beta/alpha)·λ
    """
    params = list(net.parameters())
    losses = []
    T = x_seq.shape[0]
    for a in range(0, T, window):
        opt.zero_grad()
        task = torch.stack([F.mse_loss(net(x_seq[t]), y_seq[t]) for t in range(a, min(a + window, T))])
        losses.extend(task.detach().clone())
        reg = sum((rho - 1.0) * (p * lm).sum() + (alpha / 2.0) * ((p - wb) ** 2).sum()
                  for p, wb, lm in zip(params, w_bar, lam, strict=True))
        (task.sum() + reg).backward()
        opt.step()
        sj.functional.detach_net(net)
        with torch.no_grad():
            for i, p in enumerate(params):
                lam[i] = lam[i] - alpha * (p - w_bar[i])
                w_bar[i] = (1.0 - beta) * w_bar[i] + beta * p - (beta / alpha) * lam[i]
    opt.zero_grad()
    sj.functional.reset_net(net)
    return losses


@pytest.mark.parametrize("rho", [0.0, 0.25])
@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_matches_hand_written_dual_loop_over_two_sequences(sj, dtype, opt_name, rho):
    torch.manual_seed(21)
    net = tnn.Sequential(tnn.Linear(6, 8), sj.neuron.LIFNode(), tnn.Linear(8, 3), sj.neuron.LIFNode()).to(dtype)
    data = sequences(2, 4, (6,), (3,), dtype, 21, batches=[3, 2])
    model, params, states = nn.from_torch(net, data[0][0][0])
    initial = tree.clone(params)
    topt = OPTIMIZERS[opt_name].torch(net.parameters())
    w_bar = [p.detach().clone() for p in net.parameters()]
    lam = [torch.zeros_like(p) for p in net.parameters()]
    learner = online.fptt_dual(model, F.mse_loss, OPTIMIZERS[opt_name].ours(), alpha=ALPHA, beta=BETA, rho=rho)
    carry = learner.init(params, states)
    for x, y in data:
        losses = hand_fptt_dual(sj, net, topt, x, y, w_bar, lam, alpha=ALPHA, beta=BETA, rho=rho)
        carry, outs = learner.run(carry, x, y)
        assert outs.y.shape == (x.shape[0], x.shape[1], 3)
        torch.testing.assert_close(outs.loss, torch.stack(losses), rtol=0, atol=TOL[dtype])
    assert params_diff(carry.params, net) <= TOL[dtype]
    assert list_diff(carry.w_bar, net, w_bar) <= TOL[dtype]
    assert list_diff(carry.lam, net, lam) <= TOL[dtype]
    assert params_diff(initial, net) > 1e-4
    assert max(lm.abs().max().item() for lm in lam) > 1e-6


@pytest.mark.parametrize("window, T", [(2, 5), (4, 4), (3, 9)])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_window_matches_hand_written_dual_loop(sj, dtype, window, T):
    torch.manual_seed(22)
    net = tnn.Sequential(tnn.Linear(6, 8), sj.neuron.LIFNode(), tnn.Linear(8, 3), sj.neuron.LIFNode()).to(dtype)
    data = sequences(2, T, (6,), (3,), dtype, 22, batches=[3, 2])
    model, params, states = nn.from_torch(net, data[0][0][0])
    topt = OPTIMIZERS["adam"].torch(net.parameters())
    w_bar = [p.detach().clone() for p in net.parameters()]
    lam = [torch.zeros_like(p) for p in net.parameters()]
    learner = online.fptt_dual(model, F.mse_loss, OPTIMIZERS["adam"].ours(), alpha=ALPHA, beta=BETA, window=window)
    carry = learner.init(params, states)
    for x, y in data:
        losses = hand_fptt_dual(sj, net, topt, x, y, w_bar, lam, alpha=ALPHA, beta=BETA, rho=0.0, window=window)
        carry, outs = learner.run(carry, x, y)
        assert outs.loss.shape == (T,) and outs.y.shape == (T, x.shape[1], 3)
        torch.testing.assert_close(outs.loss, torch.stack(losses), rtol=0, atol=TOL[dtype])
    assert params_diff(carry.params, net) <= TOL[dtype]
    assert list_diff(carry.w_bar, net, w_bar) <= TOL[dtype]
    assert list_diff(carry.lam, net, lam) <= TOL[dtype]


def make_learner(dtype=torch.float64):
    model = nn.Sequential(nn.Linear(6, 8), neurons.LIF(), nn.Linear(8, 3), neurons.LIF())
    (x, y), = sequences(1, 4, (6,), (3,), dtype, 2)
    params, states = model.init(torch.Generator().manual_seed(2), x[0])
    learner = online.fptt_dual(model, F.mse_loss, optim.adam(0.01), alpha=ALPHA, beta=BETA)
    return learner, learner.init(params, states), x, y


def test_init_copies_params_into_w_bar_and_zeroes_lam():
    learner, carry, _, _ = make_learner()
    assert carry._fields == ("params", "states", "opt_state", "w_bar", "lam")
    assert tree.max_abs_diff(carry.w_bar, carry.params) == 0
    for w, p in zip(tree.leaves(carry.w_bar), tree.leaves(carry.params), strict=True):
        assert w.data_ptr() != p.data_ptr()
    assert all(torch.count_nonzero(lm) == 0 for lm in tree.leaves(carry.lam))


def test_reset_params_to_mean_sets_params_to_w_bar_and_keeps_lam():
    learner, carry, x, y = make_learner()
    carry, _ = learner.run(carry, x, y)
    assert tree.max_abs_diff(carry.params, carry.w_bar) > 1e-6
    snap = snapshot(carry)
    reset = learner.reset_params_to_mean(carry)
    assert_untouched(snap)
    assert tree.max_abs_diff(reset.params, carry.w_bar) == 0
    for p, w in zip(tree.leaves(reset.params), tree.leaves(carry.w_bar), strict=True):
        assert p.data_ptr() != w.data_ptr()
    assert tree.max_abs_diff(reset.lam, carry.lam) == 0
    assert tree.max_abs_diff(reset.w_bar, carry.w_bar) == 0
    assert tree.max_abs_diff(reset.opt_state, carry.opt_state) == 0
    # training continues from the mean
    nxt, _ = learner.run(reset, x, y)
    assert tree.max_abs_diff(nxt.params, reset.params) > 0


def test_last_flag_changes_nothing_in_the_dual_form():
    learner, carry, x, y = make_learner()
    a, out_a = learner.step(carry, x[0], y[0])
    b, out_b = learner.step(carry, x[0], y[0], last=True)
    assert tree.max_abs_diff(a, b) == 0
    assert torch.equal(out_a.loss, out_b.loss)


@pytest.mark.parametrize("name", ["alpha", "beta"])
@pytest.mark.parametrize("value", [0.0, -0.1])
def test_non_positive_alpha_or_beta_is_refused(name, value):
    model = nn.Sequential(nn.Linear(6, 3), neurons.LIF())
    with pytest.raises(ValueError, match=rf"`{name}` must be a finite number > 0, got {value}"):
        online.fptt_dual(model, F.mse_loss, optim.sgd(lr=0.1), **{name: value})
