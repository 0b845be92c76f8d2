"""Specification of ``purelearn.nn.normalization``: BatchNorm with its running statistics in the
state (SpikingJelly's single-step ``layer.BatchNorm1d/2d``, train and eval), weight standardisation
(the OTTT authors' definition and SpikingJelly's ``WSConv2d`` / ``WSLinear``), their conversion and
``state_dict``s, and training by every learner as SpikingJelly does it (FPTT's second forward,
OTTT's trace through ``WSConv2d``/``Scale`` and a conv before BatchNorm)."""

from __future__ import annotations

import doctest
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, NamedTuple

import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as F
from _learner_helpers import (
    OPTIMIZERS,
    TOL,
    LossRecorder,
    assert_untouched,
    list_diff,
    params_diff,
    sequences,
    sj_online,
    snapshot,
    state_dict_diff,
)

from purelearn import compile, neurons, nn, online, optim, sweep, tree
from purelearn.online.ottt import wire

F64 = torch.float64
LAYOUTS = {"1d": (nn.BatchNorm1d, (5, 4)), "1d-length": (nn.BatchNorm1d, (3, 4, 6)),
           "2d": (nn.BatchNorm2d, (2, 4, 3, 3))}


def torch_batch_norm(kind: str, momentum: float | None, affine: bool, sj: SimpleNamespace | None = None) -> tnn.Module:
    """SpikingJelly's single-step layer (or torch's, for momentum=None), random affine params, float64."""
    cls = {"1d": "BatchNorm1d", "1d-length": "BatchNorm1d", "2d": "BatchNorm2d"}[kind]
    module = getattr(sj.layer if sj is not None else tnn, cls)(4, momentum=momentum, affine=affine).double()
    if affine:
        with torch.no_grad():
            module.weight.uniform_(0.5, 1.5)
            module.bias.uniform_(-0.5, 0.5)
    return module


def converted(module: tnn.Module, x: torch.Tensor) -> tuple[Any, Any, Any]:
    model, params, states = nn.from_torch(tnn.Sequential(module), x)
    return model[0], params.get("0"), states["0"]


def test_module_docstring_example_runs():
    result = doctest.testmod(nn.normalization, verbose=False)
    assert result.attempted > 0 and result.failed == 0


# --------------------------------------------------------------------------------------------------
# BatchNorm: SpikingJelly's numbers, train and eval
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
@pytest.mark.parametrize("momentum", [0.1, 0.3, None], ids=["m0.1", "m0.3", "cumulative"])
@pytest.mark.parametrize("kind", list(LAYOUTS))
def test_batch_norm_equals_spikingjelly_over_steps_in_train_and_eval_float64(sj, kind, momentum, affine):
    torch.manual_seed(0)
    theirs = torch_batch_norm(kind, momentum, affine, sj)
    shape = LAYOUTS[kind][1]
    layer, params, state = converted(theirs, torch.zeros(shape, dtype=F64))
    assert isinstance(layer, LAYOUTS[kind][0]) and layer.training and layer.momentum == momentum
    for t in range(5):
        x = 3.0 * torch.randn(shape, dtype=F64) + t
        y, state = layer.apply(params, state, x)
        torch.testing.assert_close(y, theirs(x), rtol=0, atol=1e-10)
        torch.testing.assert_close(state.running_mean, theirs.running_mean, rtol=0, atol=1e-10)
        torch.testing.assert_close(state.running_var, theirs.running_var, rtol=0, atol=1e-10)
        assert state.num_batches_tracked.item() == theirs.num_batches_tracked.item() == t + 1
    theirs.eval()
    evaluating = layer.inference()
    assert not evaluating.training
    for _ in range(2):
        x = torch.randn(shape, dtype=F64)
        y, after = evaluating.apply(params, state, x)
        torch.testing.assert_close(y, theirs(x), rtol=0, atol=1e-10)
        assert after is state


def test_batch_norm_gradients_equal_torch_in_training_float64():
    torch.manual_seed(1)
    theirs = torch_batch_norm("2d", 0.1, True)
    x = torch.randn(3, 4, 2, 2, dtype=F64, requires_grad=True)
    layer, params, state = converted(theirs, x.detach())
    weights = torch.randn(3, 4, 2, 2, dtype=F64)
    (theirs(x) * weights).sum().backward()
    grads = torch.func.grad(lambda p, x: (layer.apply(p, state, x)[0] * weights).sum(), argnums=(0, 1))(
        params, x.detach())
    torch.testing.assert_close(grads[0]["weight"], theirs.weight.grad, rtol=0, atol=1e-12)
    torch.testing.assert_close(grads[0]["bias"], theirs.bias.grad, rtol=0, atol=1e-12)
    torch.testing.assert_close(grads[1], x.grad, rtol=0, atol=1e-12)


def bn_model() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), neurons.LIF(), nn.Flatten(),
                         nn.Linear(4 * 16, 3), nn.BatchNorm1d(3))


def test_statistics_persist_across_sequences_and_init_states_starts_fresh():
    model = bn_model()
    x = torch.rand(3, 2, 4, 4, dtype=F64)
    params, states = model.init(torch.Generator().manual_seed(0), x)
    for _ in range(3):
        _, states = model.apply(params, states, x)
    kept = model.reset_states(states)
    assert kept["1"] is states["1"] and kept["5"] is states["5"]
    assert kept["2"].v.dim() == 0, "neuron memories start afresh"
    assert kept["1"].num_batches_tracked.item() == 3
    fresh = model.init_states(x)
    assert fresh["1"].num_batches_tracked.item() == 0 and fresh["1"].num_batches_tracked.dtype == torch.int64
    assert torch.equal(fresh["1"].running_mean, torch.zeros(4, dtype=F64))
    assert torch.equal(fresh["1"].running_var, torch.ones(4, dtype=F64))


def test_apply_is_pure_and_its_statistics_carry_no_gradient():
    model = bn_model()
    x = torch.rand(3, 2, 4, 4, dtype=F64)
    params, states = model.init(torch.Generator().manual_seed(0), x)
    _, states = model.apply(params, states, x)
    snap = snapshot(params, states, x)
    _, new = torch.func.grad(lambda p: (lambda y, s: (y.sum(), s))(*model.apply(p, states, x)), has_aux=True)(params)
    assert_untouched(snap)
    assert new["1"].num_batches_tracked.item() == 2 and not new["1"].running_mean.requires_grad


def test_inference_model_leaves_statistics_unchanged_and_takes_a_single_sample():
    model = bn_model()
    x = torch.rand(3, 2, 4, 4, dtype=F64)
    params, states = model.init(torch.Generator().manual_seed(0), x)
    _, states = model.apply(params, states, x)
    evaluating = model.inference()
    assert [m.training for m in evaluating.layers if isinstance(m, nn.normalization.BatchNorm)] == [False, False]
    states = model.reset_states(states)
    _, after = evaluating.apply(params, states, x[:1])  # one sample: no batch statistics needed
    assert after["1"] is states["1"] and after["5"] is states["5"]
    with pytest.raises(ValueError, match=r"BatchNorm1d\(3\): training needs more than one value per channel"):
        model.apply(params, states, x[:1])


# --------------------------------------------------------------------------------------------------
# Conversion and state_dicts
# --------------------------------------------------------------------------------------------------


def test_from_torch_copies_running_statistics_into_states_and_to_state_dict_writes_them_back(sj):
    torch.manual_seed(2)
    net = tnn.Sequential(tnn.Conv2d(2, 4, 3, padding=1), sj.layer.BatchNorm2d(4), sj.neuron.LIFNode(),
                         tnn.Flatten(), tnn.Linear(4 * 16, 3), tnn.BatchNorm1d(3, momentum=None)).double()
    x = torch.rand(3, 2, 4, 4, dtype=F64)
    for _ in range(3):
        net(x)
    sj.functional.reset_net(net)
    model, params, states = nn.from_torch(net, x)
    assert (model[1], model[5]) == (nn.BatchNorm2d(4), nn.BatchNorm1d(3, momentum=None))
    assert state_dict_diff(nn.to_state_dict(params, states), net.state_dict()) == 0
    assert sorted(nn.to_state_dict(params)) == sorted(k for k, _ in net.named_parameters())  # params only, as before

    for _ in range(2):
        _, states = model.apply(params, states, x)
    trained = tree.map(lambda p: 2.0 * p + 1.0, params)
    net.load_state_dict(nn.to_state_dict(trained, states), strict=True)
    assert net[1].num_batches_tracked.item() == 5
    _, reloaded, restored = nn.from_torch(net, x)
    assert tree.allclose(reloaded, trained, rtol=0, atol=0)
    assert tree.allclose(restored["1"], states["1"], rtol=0, atol=0)
    back_params, back_states = nn.from_state_dict(net.state_dict(), params, model.init_states(x))
    assert tree.allclose((back_params, back_states["5"]), (trained, states["5"]), rtol=0, atol=0)


def test_init_and_from_torch_take_a_one_sample_example():
    """Initialisation only propagates shapes (through the inference layers): no batch statistics needed."""
    model, _, states = nn.from_torch(tnn.Sequential(tnn.Linear(3, 4), tnn.BatchNorm1d(4)), torch.zeros(1, 3))
    assert model[1].training and states["1"].num_batches_tracked.item() == 0


def test_from_torch_refuses_batch_norm_without_running_statistics():
    net = tnn.Sequential(tnn.Linear(3, 4), tnn.BatchNorm1d(4, track_running_stats=False))
    with pytest.raises(ValueError, match=r"layer 1 BatchNorm1d must track running statistics"):
        nn.from_torch(net, torch.rand(2, 3))


def test_from_state_dict_with_states_needs_the_statistics():
    model = bn_model()
    params, states = model.init(None, torch.rand(3, 2, 4, 4))
    with pytest.raises(ValueError, match=r"1\.running_mean"):
        nn.from_state_dict(nn.to_state_dict(params), params, states)


# --------------------------------------------------------------------------------------------------
# Weight standardisation
# --------------------------------------------------------------------------------------------------


def standardised_by_definition(w: torch.Tensor, gain: torch.Tensor | None, eps: float) -> torch.Tensor:
    """The OTTT authors' ScaledWS, written out: per output unit, W − mean over its fan-in, divided by
    √(unbiased variance · fan_in + eps), times gain."""
    rows = w.reshape(w.shape[0], -1)
    fan_in = rows.shape[1]
    centred = rows - rows.sum(1, keepdim=True) / fan_in
    var = (centred ** 2).sum(1, keepdim=True) / (fan_in - 1)
    w_hat = (centred / torch.sqrt(var * fan_in + eps)).reshape(w.shape)
    return w_hat if gain is None else w_hat * gain


@pytest.mark.parametrize("gain", [True, False], ids=["gain", "no-gain"])
@pytest.mark.parametrize("kind", ["conv", "linear"])
def test_ws_layers_equal_the_authors_definition_float64(kind, gain):
    g = torch.Generator().manual_seed(3)
    if kind == "conv":
        layer, x = nn.WSConv2d(3, 5, (3, 2), stride=2, padding=1, gain=gain), torch.randn(2, 3, 7, 7, dtype=F64)
        op = lambda w, b: F.conv2d(x, w, b, stride=2, padding=1)
    else:
        layer, x = nn.WSLinear(6, 4, gain=gain, eps=1e-3), torch.randn(2, 6, dtype=F64)
        op = lambda w, b: F.linear(x, w, b)
    params, _ = layer.init(g, x)
    if gain:
        assert torch.equal(params["gain"], torch.ones_like(params["gain"]))
        params["gain"] = torch.rand(params["gain"].shape, generator=g, dtype=F64) + 0.5
    y, _ = layer.apply(params, None, x)
    expected = op(standardised_by_definition(params["weight"], params.get("gain"), layer.eps), params["bias"])
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-12)


def test_ws_output_ignores_shifting_and_scaling_each_filter():
    layer = nn.WSConv2d(2, 3, 3, eps=1e-12)  # eps makes the scale matter slightly (1e-4: ~1e-4 relative)
    x = torch.randn(2, 2, 5, 5, dtype=F64)
    params, _ = layer.init(torch.Generator().manual_seed(4), x)
    moved = {**params, "weight": 3.0 * params["weight"] + torch.arange(3.0, dtype=F64).reshape(3, 1, 1, 1)}
    torch.testing.assert_close(layer.apply(moved, None, x)[0], layer.apply(params, None, x)[0], rtol=0, atol=1e-9)


def test_ws_init_draws_weight_and_bias_as_the_plain_layer():
    x = torch.rand(2, 2, 5, 5)
    ws, _ = nn.WSConv2d(2, 3, 3).init(torch.Generator().manual_seed(5), x)
    plain, _ = nn.Conv2d(2, 3, 3).init(torch.Generator().manual_seed(5), x)
    assert torch.equal(ws["weight"], plain["weight"]) and torch.equal(ws["bias"], plain["bias"])


def test_ws_layers_and_scale_equal_spikingjelly_outputs_and_gradients_float64(sj):
    scale_cls = pytest.importorskip("spikingjelly.activation_based.model.spiking_vggws_ottt").Scale
    torch.manual_seed(6)
    net = tnn.Sequential(sj.layer.WSConv2d(2, 4, 3, padding=1), scale_cls(2.74), tnn.Flatten(),
                         sj.layer.WSLinear(4 * 16, 3, gain=False, eps=1e-3)).double()
    with torch.no_grad():
        net[0].gain.uniform_(0.5, 1.5)
    x = torch.rand(3, 2, 4, 4, dtype=F64)
    model, params, _ = nn.from_torch(net, x)
    assert (type(model[0]), model[1], model[3].gain, model[3].eps) == (nn.WSConv2d, nn.Scale(2.74), False, 1e-3)
    (net(x) ** 2).sum().backward()
    grads = torch.func.grad(lambda p: (model.apply(p, {}, x)[0] ** 2).sum())(params)
    torch.testing.assert_close(model.apply(params, {}, x)[0], net(x), rtol=0, atol=1e-12)
    assert state_dict_diff(nn.to_state_dict(grads), {k: p.grad for k, p in net.named_parameters()}) <= 1e-12


# --------------------------------------------------------------------------------------------------
# Learners on BatchNorm / WS nets, against SpikingJelly
# --------------------------------------------------------------------------------------------------


ALPHA = 0.1


def sj_bn_net(sj: SimpleNamespace, first: Any, last: Any, seed: int, ottt: bool = False) -> tnn.Module:
    """Conv → BatchNorm2d → neuron → pool → flatten → Linear → neuron, random BatchNorm affine, float64.

    The conv has no bias: BatchNorm removes it, so its gradient is rounding noise, which Adam would
    turn into steps of ±lr."""
    torch.manual_seed(seed)
    layers = [tnn.Conv2d(2, 4, 3, padding=1, bias=False), sj.layer.BatchNorm2d(4), first(), tnn.AvgPool2d(2),
              tnn.Flatten(), tnn.Linear(4 * 16, 3), last()]
    net = (sj.layer.OTTTSequential if ottt else tnn.Sequential)(*layers).double()
    with torch.no_grad():
        net[1].weight.uniform_(0.8, 1.6)
        net[1].bias.uniform_(0.0, 0.5)
    return net


def sj_ws_vgg_block(sj: SimpleNamespace) -> tnn.Module:
    """OTTT's VGG layout: ``WSConv2d → OTTTLIF → Scale(2.74) → pool → WSConv2d → OTTTLIF → Scale …``."""
    scale_cls = pytest.importorskip("spikingjelly.activation_based.model.spiking_vggws_ottt").Scale
    torch.manual_seed(14)
    return sj.layer.OTTTSequential(
        sj.layer.WSConv2d(2, 4, 3, padding=1), sj.neuron.OTTTLIFNode(), scale_cls(2.74), tnn.AvgPool2d(2),
        sj.layer.WSConv2d(4, 4, 3, padding=1), sj.neuron.OTTTLIFNode(), scale_cls(2.74), tnn.Flatten(),
        sj.layer.WSLinear(4 * 16, 3), sj.neuron.LIFNode()).double()


def hand_bptt(net: tnn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ_t mse(net(x_t), y_t) backpropagated through the sequence; one optimizer step."""
    opt.zero_grad()
    ys = [net(x_t) for x_t in x]
    losses = torch.stack([F.mse_loss(y_hat, y_t) for y_hat, y_t in zip(ys, y, strict=True)])
    losses.sum().backward()
    opt.step()
    return losses.detach(), torch.stack(ys).detach()


class Reference(NamedTuple):
    """A SpikingJelly net, its training on one sequence ``run(net, opt, x, y) -> (losses, y [T, ...])``,
    our learner's factory ``learner(model, optimizer)``, and FPTT's ``w_ra`` list (filled on the first run)."""

    net: tnn.Module
    run: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    learner: Callable[..., Any]
    w_ra: list[torch.Tensor]


def reference(sj: SimpleNamespace, name: str) -> Reference:
    ol = sj_online()
    lif, w_ra = sj.neuron.LIFNode, []

    def run_fptt(net, opt, x, y):
        rec = LossRecorder()
        w_ra.extend([] if w_ra else ol.fptt_online_training_init_w_ra(opt))
        ol.fptt_online_training(net, opt, x, y, rec, ALPHA, w_ra)
        return torch.stack(rec.losses[0::2]), torch.stack(rec.ys[0::2])

    def run_ottt(net, opt, x, y):  # SpikingJelly's OTTT loop serves SLTT too (online=False: per sequence)
        loss, y_all = ol.ottt_online_training(net, opt, x.transpose(0, 1), y.transpose(0, 1), F.mse_loss,
                                              name != "sltt")
        return loss, y_all.transpose(0, 1)

    if name == "fptt":
        return Reference(sj_bn_net(sj, lif, lif, 10), run_fptt,
                         lambda m, o: online.fptt(m, F.mse_loss, o, alpha=ALPHA), w_ra)
    if name == "bptt":
        return Reference(sj_bn_net(sj, lif, lif, 11), hand_bptt, lambda m, o: online.bptt(m, F.mse_loss, o), w_ra)
    if name.startswith("ottt"):
        net = sj_ws_vgg_block(sj) if name == "ottt-ws" else sj_bn_net(sj, sj.neuron.OTTTLIFNode, lif, 12, ottt=True)
        return Reference(net, run_ottt, lambda m, o: online.ottt(m, F.mse_loss, o, online=True), w_ra)
    sltt_lif = sj.neuron.SLTTLIFNode
    return Reference(sj_bn_net(sj, sltt_lif, sltt_lif, 13), run_ottt, lambda m, o: online.sltt(m, F.mse_loss, o),
                     w_ra)


@pytest.mark.parametrize("name", ["ottt", "ottt-ws", "sltt", "fptt", "bptt"])
def test_learner_trains_a_normalised_conv_net_as_spikingjelly_float64(sj, name):
    """Outputs, losses, params and BatchNorm's running statistics equal SpikingJelly's (or, for BPTT,
    torch autograd's) over three sequences; then the inference model on the trained statistics
    equals the reference net in eval mode. FPTT's second forward updates the statistics too.

    ``ottt-ws`` is OTTT's VGG layout (no BatchNorm): ``Scale`` scales spike and trace, and the WS conv
    takes its weight gradient from the trace through the standardisation."""
    ref = reference(sj, name)
    net = ref.net
    opt_pair = OPTIMIZERS["adam" if name == "ottt-ws" else "sgd_momentum"]
    data = sequences(3, 4, (2, 8, 8), (3,), F64, 20, batches=[3, 2, 3])
    model, params, states = nn.from_torch(net, data[0][0][0])
    initial = tree.clone(params)
    topt = opt_pair.torch(net.parameters())
    learner = ref.learner(model, opt_pair.ours())
    carry = learner.init(params, states)
    for x, y in data:
        net.train()
        losses, ys = ref.run(net, topt, x, y)
        sj.functional.reset_net(net)
        carry, outs = learner.run(carry, x, y)
        torch.testing.assert_close(outs.loss.sum(), losses.sum(), rtol=0, atol=TOL[F64])
        torch.testing.assert_close(outs.y, ys, rtol=0, atol=TOL[F64])
    assert state_dict_diff(nn.to_state_dict(carry.params, carry.states), net.state_dict()) <= TOL[F64]
    assert params_diff(initial, net) > 1e-4
    if name == "ottt-ws":
        wired = [type(m).__name__ for m in learner.model.layers[1:5]]
        assert wired == ["_EmitsTrace", "_BothPaths", "_BothPaths", "_GradFromTrace"]  # OTTTLIF, Scale, pool, WS
    else:
        twice = name == "fptt"  # the second forward of every step but the last
        assert carry.states["1"].num_batches_tracked.item() == 3 * (2 * 4 - 1 if twice else 4)
    if name == "fptt":
        assert list_diff(carry.w_ra, net, ref.w_ra) <= TOL[F64]

    x, y = data[0]
    net.eval()
    with torch.no_grad():
        expected = torch.stack([net(x_t) for x_t in x])
    sj.functional.reset_net(net)
    forward = online.forward(model.inference(), F.mse_loss)
    end, outs = forward.run(forward.init(carry.params, model.reset_states(carry.states)), x, y)
    torch.testing.assert_close(outs.y, expected, rtol=0, atol=TOL[F64])
    assert tree.allclose(nn.to_state_dict(end.params, end.states), nn.to_state_dict(carry.params, carry.states),
                         rtol=0, atol=0), "evaluation leaves the statistics"


@pytest.mark.parametrize(("second_forward", "window"), [("pre", 1), ("post", 2), ("pre", 2)])
def test_fptt_options_on_a_batch_norm_net_match_the_hand_written_loop_float64(sj, second_forward, window):
    """The loop by hand restores only the neurons' memories around the second forward ("pre": to the
    state before the step or window), so BatchNorm's statistics keep both forwards' updates, as here."""
    from test_fptt import hand_fptt

    net = sj_bn_net(sj, sj.neuron.LIFNode, sj.neuron.LIFNode, 15)
    data = sequences(2, 5, (2, 8, 8), (3,), F64, 22)
    model, params, states = nn.from_torch(net, data[0][0][0])
    topt = OPTIMIZERS["adam"].torch(net.parameters())
    w_ra = [p.detach().clone() for p in net.parameters()]
    learner = online.fptt(model, F.mse_loss, OPTIMIZERS["adam"].ours(), alpha=ALPHA, second_forward=second_forward,
                          window=window)
    carry = learner.init(params, states)
    for x, y in data:
        losses = hand_fptt(sj, net, topt, x, y, ALPHA, w_ra, reduction="mean", second_forward=second_forward,
                           window=window)
        carry, outs = learner.run(carry, x, y)
        torch.testing.assert_close(outs.loss, torch.stack(losses), rtol=0, atol=TOL[F64])
    assert state_dict_diff(nn.to_state_dict(carry.params, carry.states), net.state_dict()) <= TOL[F64]
    assert list_diff(carry.w_ra, net, w_ra) <= TOL[F64]


@pytest.mark.parametrize("layers", [
    lambda: [nn.Conv2d(2, 4, 3), neurons.OTTTLIF(), nn.BatchNorm2d(4), neurons.LIF()],
    lambda: [nn.Conv2d(2, 4, 3), neurons.OTTTLIF(), nn.BatchNorm2d(4, affine=False), nn.Conv2d(4, 2, 3),
             neurons.LIF()],
], ids=["batch-norm-with-params", "batch-norm-before-a-conv"])
def test_ottt_refuses_batch_norm_between_an_ottt_lif_and_its_parametric_layer(layers):
    with pytest.raises(TypeError, match=r"layer 2 \(BatchNorm2d\) receives OTTTLIF 1's spike\+trace.*Conv2d -> "
                                        r"BatchNorm2d -> OTTTLIF"):
        online.ottt(nn.Sequential(*layers()), F.mse_loss, optim.sgd(lr=0.1))


def test_batch_norm_after_the_last_ottt_lif_takes_the_spike_without_wiring():
    model = nn.Sequential(nn.Conv2d(2, 4, 3), neurons.OTTTLIF(), nn.BatchNorm2d(4, affine=False), neurons.LIF())
    assert wire(model) is model


# --------------------------------------------------------------------------------------------------
# Devices, vmap and compile
# --------------------------------------------------------------------------------------------------


def small_bn_learner(name: str) -> tuple[nn.Sequential, Any]:
    """A conv → BatchNorm2d → neuron … → Linear → BatchNorm1d → LIF net and its learner; ``ottt-ws``:
    OTTT's WS layout, ``WSConv2d → OTTTLIF → Scale → … → WSLinear → LIF``."""
    if name == "ottt-ws":
        model = nn.Sequential(nn.WSConv2d(2, 3, 3, padding=1), neurons.OTTTLIF(), nn.Scale(2.74), nn.AvgPool2d(2),
                              nn.Flatten(), nn.WSLinear(3 * 4, 2), neurons.LIF())
    else:
        neuron = neurons.OTTTLIF if name == "ottt" else neurons.LIF
        model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), neuron(), nn.AvgPool2d(2),
                              nn.Flatten(), nn.Linear(3 * 4, 2), nn.BatchNorm1d(2), neurons.LIF())
    opt = optim.sgd(lr=0.5, momentum=0.9)
    if name.startswith("ottt"):
        return model, online.ottt(model, F.mse_loss, opt)
    return model, online.fptt(model, F.mse_loss, opt, alpha=ALPHA)


BN_SEQS = sequences(2, 3, (2, 4, 4), (2,), F64, 30, batches=[3, 3])


def train_bn(name: str, params: Any) -> Any:
    model, learner = small_bn_learner(name)
    carry = learner.init(params, model.init_states(BN_SEQS[0][0][0]))
    for x, y in BN_SEQS:
        carry, outs = learner.run(carry, x, y)
    return carry.params, carry.states, outs.loss


@pytest.mark.parametrize("name", ["ottt", "fptt", "ottt-ws"])
def test_training_on_a_device_equals_cpu(device, name):
    """Params, statistics and states live on the data's device; the numbers are the CPU's."""
    model, learner = small_bn_learner(name)
    params, states = model.init(torch.Generator().manual_seed(0), BN_SEQS[0][0][0])
    moved = lambda tree_: tree.map(lambda t: t.to(device), tree_)
    carry = learner.init(moved(params), moved(states))
    want = learner.init(params, states)
    for x, y in BN_SEQS:
        carry, _ = learner.run(carry, x.to(device), y.to(device))
        want, _ = learner.run(want, x, y)
    assert {t.device.type for t in tree.leaves(carry)} == {device.type}
    tol = 1e-10 if device.type == "cpu" else 1e-8  # other kernels, other rounding
    assert tree.max_abs_diff(tree.map(lambda t: t.cpu(), carry), want) <= tol


@pytest.mark.parametrize("name", ["ottt", "fptt"])
def test_vmap_over_two_seeds_equals_the_loop(name):
    model, _ = small_bn_learner(name)
    inits = [tree.scale(model.init(torch.Generator().manual_seed(s), BN_SEQS[0][0][0])[0], 2.0) for s in (0, 1)]
    swept = sweep.vmap_configs(lambda params: train_bn(name, params), {"params": tree.stack(inits)})
    ones = [train_bn(name, p) for p in inits]
    for i, one in enumerate(ones):
        assert tree.max_abs_diff(tree.unstack(swept)[i], one) <= 1e-10
    assert tree.max_abs_diff(ones[0][1]["1"], ones[1][1]["1"]) > 1e-4, "different seeds, different statistics"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ottt", "fptt", "ottt-ws"])
def test_compiled_run_equals_eager(name):
    torch._dynamo.reset()
    model, learner = small_bn_learner(name)
    params, states = model.init(torch.Generator().manual_seed(0), BN_SEQS[0][0][0])
    run = compile.run(learner, backend="aot_eager")
    got = want = learner.init(params, states)
    with torch._dynamo.config.patch(error_on_recompile=True):
        for x, y in BN_SEQS + BN_SEQS:
            got, got_outs = run(got, x, y)
            want, want_outs = learner.run(want, x, y)
            assert tree.max_abs_diff(tree.leaves((got, got_outs)), tree.leaves((want, want_outs))) <= 1e-10
    assert tree.max_abs_diff(want.params, params) > 1e-3, "training moved the weights"
    torch._dynamo.reset()
