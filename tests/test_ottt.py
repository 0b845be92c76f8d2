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
    train_beside_sj_ottt,
)

from purelearn import neurons, nn, online, optim, tree
from purelearn.online.ottt import wire

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
    net = sj_ottt_net(sj, arch, dtype, 3)
    data = sequences(3, 4, SHAPES[arch], (3,), dtype, 3, batches=[3, 2, 3])
    model, params, states = nn.from_torch(net, data[0][0][0])
    assert isinstance(model[1], neurons.OTTTLIF)
    initial = tree.clone(params)
    topt = OPTIMIZERS[opt_name].torch(net.parameters())
    learner = online.ottt(model, F.mse_loss, OPTIMIZERS[opt_name].ours(), online=online_)
    carry, outs = train_beside_sj_ottt(sj, net, topt, learner, learner.init(params, states), data, online_,
                                       TOL[dtype])
    assert outs.loss.shape == (data[-1][0].shape[0],)
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


# --------------------------------------------------------------------------------------------------
# wire: OTTT's spike/trace gradient, outside the model
# --------------------------------------------------------------------------------------------------


def ottt_convnet() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), neurons.OTTTLIF(), nn.AvgPool2d(2), nn.Dropout(0.3),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, 3), neurons.LIF())


def test_wired_weight_gradient_comes_from_the_trace_and_the_input_gradient_from_the_spike():
    """With a constant upstream gradient δ, ∂loss/∂W of the layer after an OTTTLIF is δ·traceᵀ in the wired
    model (δ·spikeᵀ in the model itself); the layers before it get the same gradient in both."""
    model = nn.Sequential(nn.Linear(3, 4), neurons.OTTTLIF(), nn.Linear(4, 2))
    wired = wire(model)
    xs = 2.0 * torch.rand(5, 1, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    params, states = model.init(torch.Generator().manual_seed(1), xs[0])
    params["0"]["weight"] = params["0"]["weight"].abs() + 0.5
    ones = torch.ones(2, 1, dtype=torch.float64)
    for x in xs:
        grads = torch.func.grad(lambda p, s, x: wired.apply(p, s, x)[0].sum())(params, states, x)
        plain = torch.func.grad(lambda p, s, x: model.apply(p, s, x)[0].sum())(params, states, x)
        spike, _ = model[1].apply(None, states["1"], model[0].apply(params["0"], None, x)[0])
        _, states = model.apply(params, states, x)
        trace = states["1"].trace
        torch.testing.assert_close(grads["2"]["weight"], ones @ trace, rtol=0, atol=1e-15)
        torch.testing.assert_close(plain["2"]["weight"], ones @ spike, rtol=0, atol=1e-15)
        assert tree.allclose(grads["0"], plain["0"], rtol=0, atol=1e-15)
    assert trace.max() > 1.0, "a trace above 1 tells trace and spike apart"


@pytest.mark.parametrize("build", [ottt_convnet, lambda: nn.Sequential(nn.Linear(6, 8), neurons.OTTTLIF(),
                                                                       nn.Linear(8, 3), neurons.OTTTLIF())],
                         ids=["conv-pool-dropout", "mlp"])
def test_model_apply_equals_the_wired_forward(build):
    """Evaluation needs no wiring: ``model.apply`` of an OTTTLIF model has the wired model's values and states."""
    model = build()
    wired = wire(model)
    shape = (2, 8, 8) if isinstance(model[0], nn.Conv2d) else (6,)
    (x, _), = sequences(1, 6, shape, (3,), torch.float64, 7)
    params, states = model.init(torch.Generator().manual_seed(7), x[0])
    params = tree.scale(params, 3.0)
    plain_states = wired_states = states
    outputs = []
    for x_t in x:
        y, plain_states = model.apply(params, plain_states, x_t)
        y_wired, wired_states = wired.apply(params, wired_states, x_t)
        assert torch.equal(y, y_wired)
        assert tree.allclose(plain_states, wired_states, rtol=0, atol=0)
        outputs.append(y)
    assert 0 < torch.stack(outputs).mean() < 1


def test_wire_is_idempotent_and_keeps_params_states_and_init():
    model = ottt_convnet()
    wired = wire(model)
    assert wired != model and wire(wired) == wired and hash(wire(wired)) == hash(wired)
    assert (wired.param_keys, wired.state_keys) == (model.param_keys, model.state_keys)
    x = torch.rand(3, 2, 8, 8, dtype=torch.float64)
    for a, b in ((model.init(torch.Generator().manual_seed(0), x), wired.init(torch.Generator().manual_seed(0), x)),
                 (model.init_states(x), wired.init_states(x)),
                 (model.init_states(x, torch.Generator().manual_seed(1)),
                  wired.init_states(x, torch.Generator().manual_seed(1)))):
        assert tree.structure(a) == tree.structure(b) and tree.allclose(a, b, rtol=0, atol=0)
    _, states = model.init(torch.Generator().manual_seed(0), x)
    assert tree.allclose(model.reset_states(states), wired.reset_states(states), rtol=0, atol=0)
    assert wired.inference() == wire(model.inference())


def test_a_model_where_no_ottt_lif_feeds_a_parametric_layer_is_its_own_wiring():
    """A neuron after an OTTTLIF (directly or through pooling) takes the spike: nothing to wire."""
    for model in (nn.Sequential(nn.Linear(6, 8), neurons.OTTTLIF(), nn.Flatten(), neurons.LIF()),
                  nn.Sequential(nn.Linear(6, 8), neurons.LIF()),
                  nn.Sequential(nn.Linear(6, 8), neurons.OTTTLIF(), neurons.OTTTLIF(), nn.Identity())):
        assert wire(model) is model


def test_learner_trains_the_wired_model_and_rebuilding_it_is_a_no_op():
    model = nn.Sequential(nn.Linear(6, 8), neurons.OTTTLIF(), nn.Linear(8, 3), neurons.LIF())
    learner = online.ottt(model, F.mse_loss, optim.sgd(lr=0.1))
    assert learner.model == wire(model)
    again = online.ottt(learner.model, F.mse_loss, optim.sgd(lr=0.1))
    assert again.model == learner.model
    x = torch.rand(2, 6)
    assert tree.allclose(learner.model.init(torch.Generator().manual_seed(0), x),
                         model.init(torch.Generator().manual_seed(0), x), rtol=0, atol=0)


def test_parametric_layer_with_state_fed_by_an_ottt_lif_is_refused_when_built():
    model = nn.Sequential(nn.Linear(6, 8), neurons.OTTTLIF(), nn.Recurrent(neurons.OTTTLIF(), 8, 3))
    with pytest.raises(TypeError, match=r"\(Recurrent\) has parameters and state and receives OTTTLIF \d+'s "
                                        r"spike\+trace; it cannot take OTTT's"):
        online.ottt(model, F.mse_loss, optim.sgd(lr=0.1))
