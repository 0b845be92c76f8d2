"""Specification of ``purelearn.online.fptt``: SpikingJelly 2.0.0 ``fptt_online_training`` numerics,
the paper's options (``reduction="sum"``, ``second_forward="pre"``), parameters without a gradient,
and what a step / a run leaves in the carry."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as F
from _learner_helpers import (
    DTYPE_IDS,
    DTYPES,
    OPTIMIZERS,
    TOL,
    LossRecorder,
    list_diff,
    memories,
    params_diff,
    restore_memories,
    sequences,
    sj_online,
    tensor_leaves,
)

from purelearn import neurons, nn, online, optim, tree

ALPHA = 0.1


def sj_net(sj: SimpleNamespace, kind: str, dtype: torch.dtype, seed: int) -> tnn.Sequential:
    """A tiny two-layer SpikingJelly network of IF or LIF neurons."""
    torch.manual_seed(seed)
    node = {"if": sj.neuron.IFNode, "lif": sj.neuron.LIFNode}[kind]
    return tnn.Sequential(tnn.Linear(6, 8), node(), tnn.Linear(8, 3), node()).to(dtype)


def hand_fptt(sj: SimpleNamespace, net: tnn.Module, opt: torch.optim.Optimizer, x_seq: torch.Tensor,
              y_seq: torch.Tensor, alpha: float, w_ra: list[torch.Tensor], *, reduction: str,
              second_forward: str, window: int = 1) -> list[torch.Tensor]:
    """The FPTT equations written out with torch autograd on ``net`` (one sequence; ``w_ra`` updated).

    Per window of ``window`` steps (the last may be shorter): minimise Σ_{t∈window} l_t +
    (alpha/2)·Σ_i d(W_i, w_ra_i + g_i/(2 alpha)), backpropagating through the window's steps, with d
    the per-tensor mean of squares ("mean") or the squared norm ("sum"); then, except after the last
    window, g = ∇Σ l_t at the new weights, re-running the window from the state after it ("post") or
    before it ("pre"), and w_ra = (w_ra + W)/2 − g/(2 alpha). Returns the per-step task losses l_t.
    """
    params = list(net.parameters())
    grad_last = [torch.zeros_like(p) for p in params]
    losses = []
    T = x_seq.shape[0]

    def window_loss(a: int) -> torch.Tensor:
        step_losses = [F.mse_loss(net(x_seq[t]), y_seq[t]) for t in range(a, min(a + window, T))]
        return torch.stack(step_losses)

    for a in range(0, T, window):
        s_prev = memories(net)
        opt.zero_grad()
        task = window_loss(a)
        losses.extend(task.detach().clone())
        sq = [(p - (ra + g / (2.0 * alpha))) ** 2 for p, ra, g in zip(params, w_ra, grad_last, strict=True)]
        reg = sum(s.sum() if reduction == "sum" else s.mean() for s in sq)
        (task.sum() + (alpha / 2.0) * reg).backward()
        opt.step()
        sj.functional.detach_net(net)
        s_next = memories(net)
        if a + window < T:
            if second_forward == "pre":
                restore_memories(net, s_prev)
            opt.zero_grad()
            window_loss(a).sum().backward()
            with torch.no_grad():
                for i, p in enumerate(params):
                    grad_last[i] = p.grad.detach().clone()
                    w_ra[i] = (w_ra[i] + p) / 2.0 - p.grad / (2.0 * alpha)
            sj.functional.detach_net(net)
            restore_memories(net, s_next)
    opt.zero_grad()
    sj.functional.reset_net(net)
    return losses


# --------------------------------------------------------------------------------------------------
# The reference: SpikingJelly's fptt_online_training
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("T", [1, 2, 5])
@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
@pytest.mark.parametrize("kind", ["if", "lif"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_matches_spikingjelly_fptt_over_three_sequences(sj, dtype, kind, opt_name, T, seed):
    ol = sj_online()
    net = sj_net(sj, kind, dtype, seed)
    data = sequences(3, T, (6,), (3,), dtype, seed, batches=[3, 2, 3])
    model, params, states = nn.from_torch(net, data[0][0][0])
    initial = tree.clone(params)
    topt = OPTIMIZERS[opt_name].torch(net.parameters())
    w_ra = ol.fptt_online_training_init_w_ra(topt)
    learner = online.fptt(model, F.mse_loss, OPTIMIZERS[opt_name].ours(), alpha=ALPHA)
    carry = learner.init(params, states)
    for x, y in data:
        rec = LossRecorder()
        ol.fptt_online_training(net, topt, x, y, rec, ALPHA, w_ra)
        sj.functional.reset_net(net)
        carry, outs = learner.run(carry, x, y)
        # the reference calls the loss twice per step (once at t = T-1): the first call is l_t
        assert len(rec.losses) == 2 * T - 1
        assert outs.loss.shape == (T,)
        assert outs.y.shape == (T, x.shape[1], 3)
        torch.testing.assert_close(outs.loss, torch.stack(rec.losses[0::2]), rtol=0, atol=TOL[dtype])
        torch.testing.assert_close(outs.y, torch.stack(rec.ys[0::2]), rtol=0, atol=TOL[dtype])
    assert params_diff(carry.params, net) <= TOL[dtype]
    assert list_diff(carry.w_ra, net, w_ra) <= TOL[dtype]
    # the comparison is not vacuous: training moved the weights
    assert params_diff(initial, net) > 1e-4


def test_loss_that_uses_part_of_the_output_matches_spikingjelly(sj):
    """Output unit 1 is not in the loss: its bias gets a zero gradient, exactly as the reference."""
    ol = sj_online()
    dtype = torch.float64
    net = sj_net(sj, "lif", dtype, 3)
    loss_fn = lambda y, t: F.mse_loss(y[:, :1], t[:, :1])
    data = sequences(2, 3, (6,), (3,), dtype, 3)
    model, params, states = nn.from_torch(net, data[0][0][0])
    topt = torch.optim.SGD(net.parameters(), lr=0.5, momentum=0.9)
    w_ra = ol.fptt_online_training_init_w_ra(topt)
    learner = online.fptt(model, loss_fn, optim.sgd(lr=0.5, momentum=0.9), alpha=ALPHA)
    carry = learner.init(params, states)
    carry_mid, _ = learner.step(carry, data[0][0][0], data[0][1][0])
    assert torch.all(carry_mid.grad_last["2"]["bias"][1:] == 0)
    assert torch.all(carry_mid.grad_last["2"]["weight"][1:] == 0)
    for x, y in data:
        ol.fptt_online_training(net, topt, x, y, loss_fn, ALPHA, w_ra)
        sj.functional.reset_net(net)
        carry, _ = learner.run(carry, x, y)
    assert params_diff(carry.params, net) <= TOL[dtype]
    assert list_diff(carry.w_ra, net, w_ra) <= TOL[dtype]


# --------------------------------------------------------------------------------------------------
# Options beyond the reference, against the equations written out by hand
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
@pytest.mark.parametrize(
    "reduction, second_forward",
    [("mean", "post"), ("sum", "post"), ("mean", "pre"), ("sum", "pre")],
)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_options_match_hand_written_fptt_loop(sj, dtype, reduction, second_forward, opt_name):
    net = sj_net(sj, "lif", dtype, 5)
    data = sequences(3, 4, (6,), (3,), dtype, 5)
    model, params, states = nn.from_torch(net, data[0][0][0])
    topt = OPTIMIZERS[opt_name].torch(net.parameters())
    w_ra = [p.detach().clone() for p in net.parameters()]
    learner = online.fptt(model, F.mse_loss, OPTIMIZERS[opt_name].ours(), alpha=ALPHA,
                          reduction=reduction, second_forward=second_forward)
    carry = learner.init(params, states)
    for x, y in data:
        losses = hand_fptt(sj, net, topt, x, y, ALPHA, w_ra, reduction=reduction,
                           second_forward=second_forward)
        carry, outs = learner.run(carry, x, y)
        torch.testing.assert_close(outs.loss, torch.stack(losses), rtol=0, atol=TOL[dtype])
    assert params_diff(carry.params, net) <= TOL[dtype]
    assert list_diff(carry.w_ra, net, w_ra) <= TOL[dtype]


@pytest.mark.parametrize("second_forward", ["post", "pre"])
@pytest.mark.parametrize("window, T", [(2, 6), (3, 7), (4, 4), (8, 5)])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_window_matches_hand_written_fptt_loop(sj, dtype, window, T, second_forward):
    """FPTT with one update per window (the last one shorter when window does not divide T, a single
    short window when window > T), backpropagating within each window, equals the equations by hand."""
    net = sj_net(sj, "lif", dtype, 6)
    data = sequences(3, T, (6,), (3,), dtype, 6)
    model, params, states = nn.from_torch(net, data[0][0][0])
    topt = OPTIMIZERS["adam"].torch(net.parameters())
    w_ra = [p.detach().clone() for p in net.parameters()]
    learner = online.fptt(model, F.mse_loss, OPTIMIZERS["adam"].ours(), alpha=ALPHA, reduction="sum",
                          second_forward=second_forward, window=window)
    carry = learner.init(params, states)
    for x, y in data:
        losses = hand_fptt(sj, net, topt, x, y, ALPHA, w_ra, reduction="sum", second_forward=second_forward,
                           window=window)
        carry, outs = learner.run(carry, x, y)
        assert outs.loss.shape == (T,) and outs.y.shape == (T, *y.shape[1:])
        torch.testing.assert_close(outs.loss, torch.stack(losses), rtol=0, atol=TOL[dtype])
    assert params_diff(carry.params, net) <= TOL[dtype]
    assert list_diff(carry.w_ra, net, w_ra) <= TOL[dtype]


def test_window_run_equals_window_steps_then_end_sequence():
    """``run`` with a window of 3 over T=7 is ``step`` on x[0:3], x[3:6], then x[6:7] with last=True."""
    model = nn.Sequential(nn.Linear(6, 8), neurons.LIF(), nn.Linear(8, 3), neurons.LIF())
    (x, y), = sequences(1, 7, (6,), (3,), torch.float64, 8)
    params, states = model.init(torch.Generator().manual_seed(8), x[0])
    learner = online.fptt(model, F.mse_loss, optim.adam(1e-2), alpha=ALPHA, window=3)
    carry = learner.init(params, states)
    ran, outs = learner.run(carry, x, y)
    c, losses = carry, []
    for a, b in ((0, 3), (3, 6), (6, 7)):
        c, out = learner.step(c, x[a:b], y[a:b], last=b == 7)
        losses.append(out.loss)
    c = learner.end_sequence(c)
    assert tree.max_abs_diff((ran.params, ran.w_ra, ran.opt_state), (c.params, c.w_ra, c.opt_state)) == 0
    assert torch.equal(outs.loss, torch.cat(losses))


def test_window_of_one_is_the_per_step_form_and_longer_windows_differ():
    model = nn.Sequential(nn.Linear(6, 8), neurons.LIF(), nn.Linear(8, 3), neurons.LIF())
    (x, y), = sequences(1, 6, (6,), (3,), torch.float64, 9)
    params, states = model.init(torch.Generator().manual_seed(9), x[0])
    results = {}
    for window in (None, 1, 2, 6):
        kwargs = {} if window is None else {"window": window}
        learner = online.fptt(model, F.mse_loss, optim.sgd(lr=0.5, momentum=0.9), alpha=ALPHA, **kwargs)
        results[window] = learner.run(learner.init(params, states), x, y)[0].params
    assert tree.max_abs_diff(results[None], results[1]) == 0
    assert tree.max_abs_diff(results[1], results[2]) > 1e-6
    assert tree.max_abs_diff(results[2], results[6]) > 1e-6


def test_window_step_refuses_a_window_longer_than_the_learner_s():
    model = nn.Sequential(nn.Linear(6, 3), neurons.LIF())
    x = torch.rand(5, 2, 6)
    params, states = model.init(torch.Generator().manual_seed(0), x[0])
    learner = online.fptt(model, F.mse_loss, optim.sgd(lr=0.1), window=4)
    carry = learner.init(params, states)
    with pytest.raises(ValueError, match=r"`x_win` has 5 time steps.*window is 4"):
        learner.step(carry, x, torch.rand(5, 2, 3))
    with pytest.raises(ValueError, match=r"`x_win` must be a window \[L, N, features...\].*got shape \(2, 6\)"):
        learner.step(carry, x[0], torch.rand(2, 3))  # one step [N, features], not a window


@pytest.mark.parametrize("option", [{"reduction": "sum"}, {"second_forward": "pre"}])
def test_options_change_the_result(option):
    """``reduction="sum"`` and ``second_forward="pre"`` are not the defaults in disguise."""
    model = nn.Sequential(nn.Linear(6, 8), neurons.LIF(), nn.Linear(8, 3), neurons.LIF())
    (x, y), = sequences(1, 4, (6,), (3,), torch.float64, 7)
    params, states = model.init(torch.Generator().manual_seed(7), x[0].double())
    results = []
    for kwargs in ({}, option):
        learner = online.fptt(model, F.mse_loss, optim.sgd(lr=0.5, momentum=0.9), alpha=ALPHA, **kwargs)
        carry, _ = learner.run(learner.init(params, states), x, y)
        results.append(carry.w_ra)
    assert tree.max_abs_diff(*results) > 1e-6


def test_invalid_options_are_refused():
    model = nn.Sequential(nn.Linear(6, 3), neurons.LIF())
    with pytest.raises(ValueError, match="reduction.*'max'"):
        online.fptt(model, F.mse_loss, optim.sgd(lr=0.1), reduction="max")
    with pytest.raises(ValueError, match="second_forward.*'both'"):
        online.fptt(model, F.mse_loss, optim.sgd(lr=0.1), second_forward="both")
    with pytest.raises(ValueError, match=r"`window` must be >= 1.*got 0"):
        online.fptt(model, F.mse_loss, optim.sgd(lr=0.1), window=0)
    with pytest.raises(TypeError, match=r"`window` must be an int.*float"):
        online.fptt(model, F.mse_loss, optim.sgd(lr=0.1), window=2.0)


# --------------------------------------------------------------------------------------------------
# Parameters without a gradient
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UnusedParam(nn.Layer):
    """A layer with a parameter that never enters its output (so it receives no gradient at all)."""

    size: int = 4
    has_params = True

    def init(self, generator, x):
        return {"unused": torch.linspace(-1.0, 1.0, self.size, dtype=x.dtype, device=x.device)}, None

    def apply(self, params, state, x):
        return x, None


@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
def test_parameter_without_gradient_gets_zero_gradient(opt_name):
    """The reference raises TypeError here (``None / float``); purelearn treats the gradient as 0."""
    dtype = torch.float64
    with_unused = nn.Sequential(nn.Linear(6, 8), neurons.LIF(), UnusedParam(8), nn.Linear(8, 3), neurons.LIF())
    without = nn.Sequential(nn.Linear(6, 8), neurons.LIF(), nn.Identity(), nn.Linear(8, 3), neurons.LIF())
    data = sequences(2, 4, (6,), (3,), dtype, 11)
    params, states = with_unused.init(torch.Generator().manual_seed(11), data[0][0][0])
    params_without = {k: v for k, v in params.items() if k != "2"}
    carries = []
    for model, p in ((with_unused, params), (without, params_without)):
        learner = online.fptt(model, F.mse_loss, OPTIMIZERS[opt_name].ours(), alpha=ALPHA)
        carry = learner.init(p, states)
        mid, _ = learner.step(carry, data[0][0][0], data[0][1][0])
        if model is with_unused:
            assert torch.equal(mid.grad_last["2"]["unused"], torch.zeros(8, dtype=dtype))
        for x, y in data:
            carry, _ = learner.run(carry, x, y)
        carries.append(carry)
    ours, ref = carries
    # the unused parameter only feels the regulariser, which is 0 at its starting point
    torch.testing.assert_close(ours.params["2"]["unused"], params["2"]["unused"], rtol=0, atol=1e-12)
    torch.testing.assert_close(ours.w_ra["2"]["unused"], params["2"]["unused"], rtol=0, atol=1e-12)
    # and the other parameters learn as if it were not there
    for k in ("0", "3"):
        assert tree.max_abs_diff(ours.params[k], ref.params[k]) <= 1e-12
        assert tree.max_abs_diff(ours.w_ra[k], ref.w_ra[k]) <= 1e-12


# --------------------------------------------------------------------------------------------------
# What step and run leave in the carry
# --------------------------------------------------------------------------------------------------


def small_problem(dtype: torch.dtype = torch.float64, batch: int = 3, T: int = 4, seed: int = 0):
    model = nn.Sequential(nn.Linear(6, 8), neurons.LIF(), nn.Linear(8, 3), neurons.LIF())
    (x, y), = sequences(1, T, (6,), (3,), dtype, seed, batches=[batch])
    params, states = model.init(torch.Generator().manual_seed(seed), x[0])
    learner = online.fptt(model, F.mse_loss, optim.sgd(lr=0.5, momentum=0.9), alpha=ALPHA)
    return learner, learner.init(params, states), x, y


def test_init_copies_params_into_w_ra_and_zeroes_grad_last():
    learner, carry, _, _ = small_problem()
    assert isinstance(carry, online.FPTTCarry)
    assert tree.max_abs_diff(carry.w_ra, carry.params) == 0
    for w, p in zip(tree.leaves(carry.w_ra), tree.leaves(carry.params), strict=True):
        assert w.data_ptr() != p.data_ptr()
    assert all(torch.count_nonzero(g) == 0 for g in tree.leaves(carry.grad_last))


def test_last_step_leaves_w_ra_and_grad_last_unchanged():
    learner, carry, x, y = small_problem()
    carry, _ = learner.step(carry, x[0], y[0])
    assert any(torch.count_nonzero(g) > 0 for g in tree.leaves(carry.grad_last))
    end, _ = learner.step(carry, x[1], y[1], last=True)
    assert tree.max_abs_diff(end.w_ra, carry.w_ra) == 0
    assert tree.max_abs_diff(end.grad_last, carry.grad_last) == 0
    assert tree.max_abs_diff(end.params, carry.params) > 0
    # a non-last step does update w_ra
    nxt, _ = learner.step(carry, x[1], y[1])
    assert tree.max_abs_diff(nxt.w_ra, carry.w_ra) > 0


def test_single_step_sequences_keep_w_ra_at_initial_params():
    learner, carry, x, y = small_problem(T=1)
    initial = tree.clone(carry.params)
    for _ in range(3):
        carry, outs = learner.run(carry, x, y)
        assert outs.loss.shape == (1,)
    assert tree.max_abs_diff(carry.w_ra, initial) == 0
    assert tree.max_abs_diff(carry.params, initial) > 0


def test_run_returns_fresh_states_and_zero_grad_last():
    learner, carry, x, y = small_problem(batch=3)
    carry, _ = learner.run(carry, x, y)
    fresh = learner.model.init_states(x[0])
    for s, f in zip(tensor_leaves(carry.states), tensor_leaves(fresh), strict=True):
        assert s.dim() == 0
        assert torch.equal(s, f)
    assert all(torch.count_nonzero(g) == 0 for g in tree.leaves(carry.grad_last))
    # the next sequence may have a smaller batch
    x2, y2 = x[:, :2], y[:, :2]
    carry2, outs = learner.run(carry, x2, y2)
    assert outs.y.shape == (x.shape[0], 2, 3)
    assert torch.isfinite(outs.loss).all()
    assert tree.max_abs_diff(carry2.params, carry.params) > 0


def test_run_equals_steps_then_end_sequence():
    learner, carry, x, y = small_problem()
    ran, outs = learner.run(carry, x, y)
    c = carry
    losses = []
    for t in range(x.shape[0]):
        c, out = learner.step(c, x[t], y[t], last=t == x.shape[0] - 1)
        losses.append(out.loss)
    c = learner.end_sequence(c)
    assert tree.max_abs_diff((ran.params, ran.w_ra), (c.params, c.w_ra)) == 0
    assert torch.equal(outs.loss, torch.stack(losses))
