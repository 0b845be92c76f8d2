"""Specification of ``purelearn.nn``: pure init/apply models that reproduce torch / SpikingJelly networks."""

from __future__ import annotations

import doctest
import math
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, NamedTuple

import pytest
import torch
import torch.nn.functional as F

import purelearn
from purelearn import neurons, nn, surrogate, tree
from purelearn.online.ottt import wire

# --------------------------------------------------------------------------------------------------
# Networks and inputs shared by the tests
# --------------------------------------------------------------------------------------------------


def sj_mlp(sj: SimpleNamespace) -> torch.nn.Sequential:
    """Linear → LIFNode → Linear → IFNode; input [N, 5]."""
    return torch.nn.Sequential(torch.nn.Linear(5, 8), sj.neuron.LIFNode(), torch.nn.Linear(8, 3),
                               sj.neuron.IFNode())


def sj_convnet(sj: SimpleNamespace) -> torch.nn.Sequential:
    """Conv2d → LIFNode → AvgPool2d → Flatten → Linear → LIFNode; input [N, 2, 6, 6]."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, padding=1), sj.neuron.LIFNode(), torch.nn.AvgPool2d(2), torch.nn.Flatten(),
        torch.nn.Linear(4 * 3 * 3, 3), sj.neuron.LIFNode(),
    )


def sj_ottt_mlp(sj: SimpleNamespace) -> torch.nn.Sequential:
    """OTTTSequential: Linear → OTTTLIFNode → Linear → LIFNode; input [N, 5]."""
    return sj.layer.OTTTSequential(torch.nn.Linear(5, 8), sj.neuron.OTTTLIFNode(), torch.nn.Linear(8, 3),
                                   sj.neuron.LIFNode())


def sj_ottt_convnet(sj: SimpleNamespace) -> torch.nn.Sequential:
    """OTTTSequential: Conv2d → OTTTLIFNode → AvgPool2d → Flatten → Linear → LIFNode; input [N, 2, 6, 6]."""
    return sj.layer.OTTTSequential(
        torch.nn.Conv2d(2, 4, 3, padding=1), sj.neuron.OTTTLIFNode(), torch.nn.AvgPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(4 * 3 * 3, 3), sj.neuron.LIFNode(),
    )


class Net(NamedTuple):
    """A SpikingJelly network builder, its input shape, and how to scale it so that its neurons fire."""

    build: Callable[[SimpleNamespace], torch.nn.Sequential]
    input_shape: tuple[int, ...]
    gain: float  # factor on every parameter
    drive: float  # added to the bias of the last Linear


NETS: dict[str, Net] = {
    "mlp": Net(sj_mlp, (4, 5), 3.0, 0.0),
    "convnet": Net(sj_convnet, (4, 2, 6, 6), 4.0, 1.5),
    "ottt-mlp": Net(sj_ottt_mlp, (4, 5), 4.0, 0.8),
    "ottt-convnet": Net(sj_ottt_convnet, (4, 2, 6, 6), 4.0, 1.5),
}


def build(sj: SimpleNamespace, name: str, dtype: torch.dtype, seed: int = 0) -> torch.nn.Sequential:
    """SpikingJelly network ``name`` with torch's init from ``seed``, scaled so that every layer fires."""
    spec = NETS[name]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = spec.build(sj)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(spec.gain)
        [m for m in net if isinstance(m, torch.nn.Linear)][-1].bias.add_(spec.drive)
    return net.to(dtype).train()


def sequence(name: str, steps: int, dtype: torch.dtype, seed: int = 1) -> torch.Tensor:
    """Input currents [T, *shape] for network ``name``."""
    g = torch.Generator().manual_seed(seed)
    return 0.5 + torch.randn((steps, *NETS[name].input_shape), generator=g, dtype=dtype)


def sj_grads(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The ``.grad`` of every parameter, keyed like ``state_dict``."""
    return {k: p.grad.detach().clone() for k, p in net.named_parameters()}


def small_model() -> nn.Sequential:
    return nn.Sequential(nn.Linear(5, 8), neurons.LIF(), nn.Dropout(0.3), nn.Linear(8, 3), neurons.LIF())


@pytest.mark.parametrize("module", [nn, purelearn.interop.torch, purelearn.random], ids=lambda m: m.__name__)
def test_module_docstring_examples_run(module: Any) -> None:
    result = doctest.testmod(module, verbose=False)
    assert result.attempted > 0 and result.failed == 0


def test_nn_is_split_by_concept_and_reexports_every_public_name() -> None:
    from purelearn.interop import from_state_dict, from_torch, to_state_dict
    from purelearn.layer import Layer

    assert (nn.Layer, nn.from_torch, nn.to_state_dict, nn.from_state_dict) == (
        Layer, from_torch, to_state_dict, from_state_dict)
    assert all(hasattr(nn, name) for name in nn.__all__)
    assert nn.Linear.__module__ == "purelearn.nn.linear" and nn.Sequential.__module__ == "purelearn.nn.sequential"
    assert issubclass(neurons.Neuron, nn.Layer)


# --------------------------------------------------------------------------------------------------
# from_torch: the same network, numerically
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mlp", "convnet"])
def test_from_torch_outputs_match_spikingjelly_over_10_steps(sj: SimpleNamespace, name: str,
                                                             dtype: torch.dtype, tol: float) -> None:
    net = build(sj, name, dtype)
    xs = sequence(name, 10, dtype)
    model, params, states = nn.from_torch(net, xs[0])
    sj.functional.reset_net(net)
    outputs = []
    with torch.no_grad():
        for x in xs:
            expected = net(x)
            y, states = model.apply(params, states, x)
            assert torch.equal(y, expected)
            outputs.append(y)
            for key, state in states.items():
                torch.testing.assert_close(state.v, net[int(key)].v, rtol=0, atol=tol)
    fired = torch.stack(outputs).mean()
    assert 0.0 < fired < 1.0, "the outputs must not be trivially silent or saturated"


@pytest.mark.parametrize("name", ["mlp", "convnet"])
def test_from_torch_param_gradients_of_2_step_loss_match_spikingjelly(sj: SimpleNamespace, name: str,
                                                                      dtype: torch.dtype, tol: float) -> None:
    net = build(sj, name, dtype)
    xs = sequence(name, 2, dtype)
    weights = torch.rand(2, xs.shape[1], 3, generator=torch.Generator().manual_seed(5), dtype=dtype)
    model, params, fresh = nn.from_torch(net, xs[0])

    def loss(params: dict[str, Any]) -> torch.Tensor:
        states, total = fresh, 0.0
        for x, w in zip(xs, weights, strict=True):
            y, states = model.apply(params, states, x)
            total = total + (y * w).sum()
        return total

    ours = nn.to_state_dict(torch.func.grad(loss)(params))

    sj.functional.reset_net(net)
    net.zero_grad()
    sum((net(x) * w).sum() for x, w in zip(xs, weights, strict=True)).backward()
    theirs = sj_grads(net)

    assert set(ours) == set(theirs)
    assert sum(g.abs().sum() for g in theirs.values()) > 0
    for key in theirs:
        torch.testing.assert_close(ours[key], theirs[key], rtol=tol, atol=tol, msg=key)


def test_from_torch_copies_weights_into_x_example_dtype(sj: SimpleNamespace) -> None:
    net = build(sj, "mlp", torch.float32)
    model, params, states = nn.from_torch(net, torch.zeros(2, 5, dtype=torch.float64))
    flat = nn.to_state_dict(params)
    assert set(flat) == set(net.state_dict())
    for key, value in net.state_dict().items():
        assert flat[key].dtype == torch.float64
        assert torch.equal(flat[key], value.double())
    assert all(s.v.dtype == torch.float64 and s.v.shape == () for s in states.values())


def test_from_torch_carries_neuron_hyperparameters(sj: SimpleNamespace) -> None:
    net = torch.nn.Sequential(
        torch.nn.Linear(3, 3),
        sj.neuron.LIFNode(tau=3.5, decay_input=False, v_threshold=0.5, v_reset=None, detach_reset=True,
                          surrogate_function=sj.surrogate.ATan(alpha=3.0)),
    )
    model, _, _ = nn.from_torch(net, torch.zeros(1, 3))
    assert model[1] == neurons.LIF(tau=3.5, decay_input=False, v_threshold=0.5, v_reset=None,
                                   detach_reset=True, surrogate=surrogate.ATan(alpha=3.0))


def test_to_state_dict_is_accepted_by_load_state_dict_and_round_trips(sj: SimpleNamespace) -> None:
    net = build(sj, "convnet", torch.float64)
    x = sequence("convnet", 1, torch.float64)[0]
    model, params, _ = nn.from_torch(net, x)
    trained = tree.map(lambda p: 2.0 * p + 1.0, params)
    net.load_state_dict(nn.to_state_dict(trained), strict=True)
    for key, value in net.state_dict().items():
        assert torch.equal(value, nn.to_state_dict(trained)[key])
    _, reloaded, _ = nn.from_torch(net, x)
    assert tree.allclose(reloaded, trained, rtol=0, atol=0)
    assert tree.allclose(nn.from_state_dict(nn.to_state_dict(trained), params), trained, rtol=0, atol=0)


def test_from_state_dict_rejects_missing_keys_and_wrong_shapes() -> None:
    params, _ = small_model().init(None, torch.zeros(2, 5))
    flat = nn.to_state_dict(params)
    with pytest.raises(ValueError, match="keys"):
        nn.from_state_dict({k: v for k, v in flat.items() if k != "0.bias"}, params)
    with pytest.raises(ValueError, match="'0.bias'"):
        nn.from_state_dict({**flat, "0.bias": torch.zeros(9)}, params)


def test_max_pool_and_dropout_convert_and_match_torch_in_eval(sj: SimpleNamespace) -> None:
    net = torch.nn.Sequential(
        torch.nn.Conv2d(2, 3, 3), torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Dropout(0.3),
        torch.nn.Linear(12, 4), sj.layer.Dropout(0.2), torch.nn.Identity(),
    ).double()
    x = sequence("convnet", 1, torch.float64)[0][..., :6, :6]
    model, params, states = nn.from_torch(net, x)
    assert [type(m) for m in model.layers] == [nn.Conv2d, nn.MaxPool2d, nn.Flatten, nn.Dropout, nn.Linear,
                                               nn.Dropout, nn.Identity]
    assert model[3].p == 0.3 and model[5].p == 0.2
    y, _ = model.inference().apply(params, states, x)
    with torch.no_grad():
        expected = net.eval()(x)
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("ours", "theirs"), [(nn.AvgPool2d, torch.nn.AvgPool2d), (nn.MaxPool2d, torch.nn.MaxPool2d)],
                         ids=["avg", "max"])
@pytest.mark.parametrize(("kernel_size", "stride", "padding"), [(2, None, 0), (3, 2, 1), ((2, 3), (1, 2), (1, 0))])
def test_pooling_equals_torch_with_the_same_arguments(ours: type, theirs: type, kernel_size: Any, stride: Any,
                                                      padding: Any) -> None:
    x = torch.randn(2, 3, 7, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    layer = ours(kernel_size, stride, padding)
    y, state = layer.apply(None, None, x)
    assert state is None and not layer.has_params and not layer.has_state
    assert torch.equal(y, theirs(kernel_size, stride, padding)(x))
    other = nn.MaxPool2d if ours is nn.AvgPool2d else nn.AvgPool2d
    assert layer == ours(kernel_size, stride, padding) and layer != other(kernel_size, stride, padding)


@pytest.mark.parametrize("pool", [nn.AvgPool2d, nn.MaxPool2d])
def test_pooling_refuses_input_without_four_dimensions_naming_itself(pool: type) -> None:
    with pytest.raises(ValueError, match=rf"{pool.__name__}: input `x` must have shape \[N, C, H, W\]"):
        pool(2).apply(None, None, torch.zeros(3, 4, 4))


@pytest.mark.parametrize(
    ("module", "name"),
    [(torch.nn.ReLU(), "ReLU"), (torch.nn.LSTM(4, 4), "LSTM"), (torch.nn.LayerNorm(4), "LayerNorm")],
)
def test_unsupported_module_raises_value_error_naming_it_and_listing_supported(module: torch.nn.Module,
                                                                               name: str) -> None:
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), module)
    with pytest.raises(ValueError, match=f"layer 1 is a {name}") as info:
        nn.from_torch(net, torch.zeros(2, 4))
    message = str(info.value)
    assert "supported" in message
    for supported in ("torch.nn.Linear", "torch.nn.Conv2d", "LIFNode", "OTTTLIFNode"):
        assert supported in message


def test_from_torch_rejects_a_module_that_is_not_sequential() -> None:
    with pytest.raises(TypeError, match="torch.nn.Sequential"):
        nn.from_torch(torch.nn.Linear(3, 3), torch.zeros(1, 3))


def test_from_torch_rejects_an_unsupported_surrogate(sj: SimpleNamespace) -> None:
    net = torch.nn.Sequential(torch.nn.Linear(3, 3),
                              sj.neuron.LIFNode(surrogate_function=sj.surrogate.SoftSign()))
    with pytest.raises(ValueError, match="SoftSign"):
        nn.from_torch(net, torch.zeros(1, 3))


# --------------------------------------------------------------------------------------------------
# OTTTSequential
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "layers",
    [
        lambda sj: [torch.nn.Linear(5, 8), sj.neuron.OTTTLIFNode(), sj.neuron.LIFNode()],
        lambda sj: [torch.nn.Conv2d(2, 4, 3, padding=1), sj.neuron.OTTTLIFNode(), torch.nn.AvgPool2d(2),
                    sj.neuron.LIFNode()],
        lambda sj: [torch.nn.Linear(5, 8), sj.neuron.OTTTLIFNode(), torch.nn.Dropout(0.1),
                    sj.neuron.SLTTLIFNode()],
    ],
    ids=["lif-after-ottt", "lif-after-pooling", "sltt-after-dropout"],
)
def test_ottt_sequential_with_a_plain_neuron_fed_spike_and_trace_is_refused(
        sj: SimpleNamespace, layers: Callable[[SimpleNamespace], list[torch.nn.Module]]) -> None:
    net = sj.layer.OTTTSequential(*layers(sj))
    x = torch.zeros(2, 5) if isinstance(net[0], torch.nn.Linear) else torch.zeros(2, 2, 6, 6)
    with pytest.raises(ValueError, match=r"OTTTLIF 1's spike\+trace.*twice"):
        nn.from_torch(net, x)


def test_plain_neuron_after_a_parametric_layer_in_ottt_sequential_is_accepted(sj: SimpleNamespace) -> None:
    model, _, _ = nn.from_torch(sj_ottt_mlp(sj), torch.zeros(2, 5))
    assert [type(m) for m in model.layers] == [nn.Linear, neurons.OTTTLIF, nn.Linear, neurons.LIF]


@pytest.mark.parametrize("name", ["ottt-mlp", "ottt-convnet"])
def test_ottt_outputs_and_per_step_weight_gradients_match_spikingjelly(sj: SimpleNamespace, name: str,
                                                                       dtype: torch.dtype, tol: float) -> None:
    """SpikingJelly's OTTT trainer: per step forward, loss.backward(), detach_net; the weight gradient of the
    layer after an OTTTLIF uses the presynaptic trace. Ours: torch.func.grad of one step from the carried
    states."""
    steps = 6
    net = build(sj, name, dtype)
    xs = sequence(name, steps, dtype)
    weights = torch.rand(steps, xs.shape[1], 3, generator=torch.Generator().manual_seed(5), dtype=dtype)
    model, params, states = nn.from_torch(net, xs[0])
    wired = wire(model)  # what online.ottt trains
    sj.functional.reset_net(net)

    def step_loss(params: Any, states: Any, x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, Any]:
        y, states = wired.apply(params, states, x)
        return (y * w).sum(), (y, states)

    grad_fn = torch.func.grad(step_loss, has_aux=True)
    total_spikes, plain_states = 0.0, states
    for t in range(steps):
        net.zero_grad()
        expected = net(xs[t])
        (expected * weights[t]).sum().backward()
        sj.functional.detach_net(net)
        theirs = sj_grads(net)

        grads, (y, states) = grad_fn(params, states, xs[t], weights[t])
        ours = nn.to_state_dict(grads)

        assert torch.equal(y, expected.detach()), f"outputs differ at step {t}"
        assert torch.equal(model.apply(params, plain_states, xs[t])[0], y), "the model itself has the same values"
        _, plain_states = model.apply(params, plain_states, xs[t])
        total_spikes += float(y.sum())
        for key in theirs:
            torch.testing.assert_close(ours[key], theirs[key], rtol=tol, atol=tol, msg=f"{key} at step {t}")
    assert total_spikes > 0


# --------------------------------------------------------------------------------------------------
# init
# --------------------------------------------------------------------------------------------------


def conv_model() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), neurons.LIF(), nn.AvgPool2d(2), nn.Flatten(),
                         nn.Linear(36, 3), neurons.LIF())


def test_init_is_reproducible_from_a_seeded_generator() -> None:
    x = torch.zeros(2, 2, 6, 6)
    first = conv_model().init(torch.Generator().manual_seed(0), x)
    again = conv_model().init(torch.Generator().manual_seed(0), x)
    other = conv_model().init(torch.Generator().manual_seed(1), x)
    assert tree.allclose(first, again, rtol=0, atol=0)
    assert not tree.allclose(first[0], other[0])


def test_init_params_take_x_dtype_and_device(device: torch.device, dtype: torch.dtype) -> None:
    x = torch.zeros(2, 2, 6, 6, dtype=dtype, device=device)
    params, states = conv_model().init(torch.Generator().manual_seed(0), x)
    for leaf in tree.leaves((params, states)):
        assert leaf.dtype == dtype and leaf.device.type == device.type


@pytest.mark.parametrize(("layer", "fan_in"), [(nn.Linear(200, 300), 200), (nn.Conv2d(6, 50, (3, 5)), 90)])
def test_init_is_uniform_within_one_over_sqrt_fan_in(layer: nn.Layer, fan_in: int) -> None:
    x = torch.zeros(1, 200) if isinstance(layer, nn.Linear) else torch.zeros(1, 6, 8, 8)
    params, _ = nn.Sequential(layer).init(torch.Generator().manual_seed(0), x)
    bound = 1.0 / math.sqrt(fan_in)
    for key in ("weight", "bias"):
        values = params["0"][key]
        assert values.abs().max() <= bound
        assert values.abs().max() > 0.9 * bound, "the whole interval is used"
    assert abs(float(params["0"]["weight"].mean())) < 0.05 * bound


def test_init_records_only_layers_with_params_and_state() -> None:
    params, states = conv_model().init(None, torch.zeros(2, 2, 6, 6))
    assert set(params) == {"0", "4"} and set(params["0"]) == {"weight", "bias"}
    assert set(states) == {"1", "5"}
    assert all(isinstance(s, neurons.LIFState) and s.v.shape == () for s in states.values())


# --------------------------------------------------------------------------------------------------
# apply: pure and validated
# --------------------------------------------------------------------------------------------------


def _snapshot(*trees: Any) -> list[tuple[torch.Tensor, int]]:
    return [(x.detach().clone(), x._version) for x in tree.leaves(trees)]


@pytest.mark.parametrize(
    "model",
    [
        small_model(),
        nn.Sequential(nn.Linear(5, 6), neurons.OTTTLIF(), nn.Dropout(0.2), nn.Linear(6, 3), neurons.LIF()),
        wire(nn.Sequential(nn.Linear(5, 6), neurons.OTTTLIF(), nn.Dropout(0.2), nn.Linear(6, 3), neurons.LIF())),
        nn.Sequential(nn.Recurrent(neurons.ALIF(learn_tau=True), 5, 4), nn.Linear(4, 2), neurons.IF()),
    ],
    ids=["lif-dropout", "ottt", "ottt-wired", "recurrent-alif"],
)
def test_apply_does_not_mutate_params_states_or_x(model: nn.Sequential) -> None:
    x = sequence("mlp", 1, torch.float64)[0]
    params, states = model.init(torch.Generator().manual_seed(0), x)
    _, states = model.apply(params, states, x)  # states with a batch, not fresh
    params = tree.map(lambda p: p.requires_grad_(), params)
    before = _snapshot(params, states, x)
    model.apply(params, states, x)
    after = _snapshot(params, states, x)
    for (value_before, version_before), (value_after, version_after) in zip(before, after, strict=True):
        assert version_after == version_before
        assert torch.equal(value_after, value_before)


def test_apply_with_wrong_feature_size_raises_naming_the_layer() -> None:
    model = small_model()
    params, states = model.init(None, torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"Linear\(5, 8\).*last dimension 5"):
        model.apply(params, states, torch.zeros(2, 6))


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda p: {k: v for k, v in p.items() if k != "3"},
        lambda p: {**p, "1": {"weight": torch.zeros(8, 8)}},
        lambda p: {**p, "0": {"weight": p["0"]["weight"]}},
        lambda p: {**p, "0": {**p["0"], "extra": torch.zeros(1)}},
        lambda p: {**p, "0": {**p["0"], "weight": p["0"]["weight"].T}},
        lambda p: [p["0"], p["3"]],
    ],
    ids=["missing-layer", "extra-layer", "missing-bias", "extra-leaf", "transposed-weight", "list"],
)
def test_apply_with_params_not_matching_the_model_raises(corrupt: Callable[[Any], Any]) -> None:
    model = small_model()
    params, states = model.init(None, torch.zeros(2, 5))
    with pytest.raises(ValueError, match="params"):
        model.apply(corrupt(params), states, torch.zeros(2, 5))


def test_apply_with_states_not_matching_the_model_raises() -> None:
    model = small_model()
    params, states = model.init(None, torch.zeros(2, 5))
    with pytest.raises(ValueError, match="`states`"):
        model.apply(params, {k: v for k, v in states.items() if k != "4"}, torch.zeros(2, 5))


def test_apply_with_states_of_another_batch_raises_naming_the_state() -> None:
    model = small_model()
    params, states = model.init(None, torch.zeros(4, 5))
    _, states = model.apply(params, states, torch.ones(4, 5))
    with pytest.raises(ValueError, match=r"state `v` has shape \(4, 8\)"):
        model.apply(params, states, torch.ones(3, 5))
    # A fresh state takes any batch.
    model.apply(params, model.reset_states(states), torch.ones(3, 5))


def test_sequential_refuses_torch_modules_and_empty_models() -> None:
    with pytest.raises(TypeError, match="from_torch"):
        nn.Sequential(torch.nn.Linear(2, 2))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one layer"):
        nn.Sequential()


# --------------------------------------------------------------------------------------------------
# vmap and compile
# --------------------------------------------------------------------------------------------------


def test_vmap_over_stacked_params_equals_loop() -> None:
    model = small_model()
    xs = 2.0 * sequence("mlp", 4, torch.float64)
    inits = [model.init(torch.Generator().manual_seed(seed), xs[0]) for seed in (0, 1, 2)]
    inits = [(tree.scale(p, 3.0), s) for p, s in inits]  # strong enough weights for the neurons to fire
    params = tree.stack([p for p, _ in inits])
    states = tree.stack([s for _, s in inits])
    batched_apply = torch.func.vmap(model.apply, in_dims=(0, 0, None))
    looped_states = [s for _, s in inits]
    outputs = []
    for x in xs:
        ys, states = batched_apply(params, states, x)
        for k, (p, _) in enumerate(inits):
            y, looped_states[k] = model.apply(p, looped_states[k], x)
            assert torch.equal(ys[k], y)
        assert tree.allclose(tree.unstack(states), looped_states, rtol=0, atol=1e-12)
        outputs.append(ys)
    outputs = torch.stack(outputs)
    assert 0 < outputs.mean() < 1
    assert not torch.equal(outputs[:, 0], outputs[:, 1]), "different seeds, different outputs"


COMPILED_MODELS = {
    "lif-dropout": small_model,
    "ottt-wired": lambda: wire(nn.Sequential(nn.Linear(5, 8), neurons.OTTTLIF(), nn.Linear(8, 3), neurons.LIF())),
    "recurrent-alif": lambda: nn.Sequential(nn.Recurrent(neurons.ALIF(learn_tau=True), 5, 4), nn.Linear(4, 3),
                                            neurons.IF()),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(COMPILED_MODELS))
def test_compiled_apply_and_its_gradient_equal_eager(name: str, compile_backend: str) -> None:
    torch._dynamo.reset()  # see test_compiled_apply_of_a_second_model_size_has_no_graph_break
    model = COMPILED_MODELS[name]()
    xs = 2.0 * sequence("mlp", 3, torch.float32)
    params, states = model.init(torch.Generator().manual_seed(0), xs[0])
    params = tree.scale(params, 3.0)

    def loss(params: Any, states: Any, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, Any]]:
        y, states = model.apply(params, states, x)
        return (y * torch.arange(1.0, 4.0)).sum(), (y, states)

    eager = torch.func.grad(loss, has_aux=True)
    compiled = torch.compile(eager, backend=compile_backend, fullgraph=True)
    eager_states = compiled_states = states
    for x in xs:
        eager_grads, (y_eager, eager_states) = eager(params, eager_states, x)
        compiled_grads, (y_compiled, compiled_states) = compiled(params, compiled_states, x)
        assert torch.equal(y_compiled, y_eager)
        assert tree.allclose(compiled_states, eager_states, rtol=1e-6, atol=1e-6)
        assert tree.allclose(compiled_grads, eager_grads, rtol=1e-6, atol=1e-6)


@pytest.mark.slow
def test_compiled_apply_of_a_second_model_size_has_no_graph_break(compile_backend: str) -> None:
    torch._dynamo.reset()
    for n_in in (5, 6):
        model = nn.Sequential(nn.Linear(n_in, 4), neurons.LIF())
        x = torch.ones(2, n_in)
        params, states = model.init(torch.Generator().manual_seed(0), x)
        compiled = torch.compile(model.apply, backend=compile_backend, fullgraph=True)
        y, _ = compiled(params, states, x)
        assert torch.equal(y, model.apply(params, states, x)[0])


# --------------------------------------------------------------------------------------------------
# Dropout
# --------------------------------------------------------------------------------------------------


def dropout_model(p: float = 0.5) -> nn.Sequential:
    return nn.Sequential(nn.Dropout(p))


def test_dropout_mask_is_the_same_at_every_step_of_a_sequence() -> None:
    model = dropout_model()
    xs = 1.0 + torch.rand(5, 8, 16, generator=torch.Generator().manual_seed(0))
    params, states = model.init(torch.Generator().manual_seed(0), xs[0])
    masks = []
    for x in xs:
        y, states = model.apply(params, states, x)
        masks.append(y / x)
    for mask in masks[1:]:
        assert torch.equal(mask, masks[0])
    assert set(masks[0].unique().tolist()) == {0.0, 2.0}


def test_dropout_mask_changes_after_reset_states() -> None:
    model = dropout_model()
    x = torch.ones(8, 16)
    params, states = model.init(torch.Generator().manual_seed(0), x)
    first, _ = model.apply(params, states, x)
    next_states = model.reset_states(states)
    second, _ = model.apply(params, next_states, x)
    assert not torch.equal(first, second)
    assert not torch.equal(model.reset_states(next_states)["0"].key, next_states["0"].key)


def test_dropout_is_reproducible_from_the_init_generator() -> None:
    x = torch.ones(8, 16)
    model = dropout_model()
    outs = []
    for seed in (0, 0, 1):
        params, states = model.init(torch.Generator().manual_seed(seed), x)
        outs.append(model.apply(params, states, x)[0])
    assert torch.equal(outs[0], outs[1])
    assert not torch.equal(outs[0], outs[2])


def test_dropout_inference_is_identity() -> None:
    model = nn.Sequential(nn.Linear(5, 8), nn.Dropout(0.7))
    x = sequence("mlp", 1, torch.float64)[0]
    params, states = model.init(torch.Generator().manual_seed(0), x)
    y, _ = model.inference().apply(params, states, x)
    torch.testing.assert_close(y, F.linear(x, params["0"]["weight"], params["0"]["bias"]), rtol=0, atol=0)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_keeps_a_fraction_1_minus_p_and_preserves_the_mean(p: float) -> None:
    model = dropout_model(p)
    x = torch.ones(400, 500, dtype=torch.float64)
    params, states = model.init(torch.Generator().manual_seed(0), x)
    y, _ = model.apply(params, states, x)
    kept = (y != 0).double().mean().item()
    assert kept == pytest.approx(1 - p, abs=0.005)
    assert y.mean().item() == pytest.approx(1.0, abs=0.02)
    assert torch.all((y == 0) | torch.isclose(y, torch.tensor(1 / (1 - p), dtype=y.dtype)))


@pytest.mark.parametrize("p", [1.0, -0.1, 1.5])
def test_dropout_p_outside_0_1_raises_naming_p(p: float) -> None:
    with pytest.raises(ValueError, match="`p`"):
        nn.Dropout(p)


@pytest.mark.parametrize("build, name", [
    (lambda v: nn.Dropout(v), "p"),
    (lambda v: nn.BatchNorm1d(3, momentum=v), "momentum"),
    (lambda v: nn.BatchNorm2d(3, eps=v), "eps"),
    (lambda v: nn.WSConv2d(2, 3, 3, eps=v), "eps"),
    (lambda v: nn.WSLinear(2, 3, eps=v), "eps"),
    (lambda v: nn.Scale(v), "scale"),
])
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, 1e300])
def test_layer_hyperparameter_that_is_not_finite_is_refused(build: Callable[[Any], Any], name: str,
                                                            value: float) -> None:
    with pytest.raises(ValueError, match=rf"^\w+: `{name}` must be a finite number"):
        build(value)


# --------------------------------------------------------------------------------------------------
# Recurrent
# --------------------------------------------------------------------------------------------------


def test_recurrent_feeds_back_the_previous_output() -> None:
    """i_t = [x_t, y_{t−1}] Wᵀ + b, y_t = LIF(i_t), y_{−1} = 0, against a hand-written loop."""
    model = nn.Sequential(nn.Recurrent(neurons.LIF(), 3, 4))
    xs = 2.0 * torch.rand(8, 2, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    params, states = model.init(torch.Generator().manual_seed(0), xs[0])
    assert params["0"]["rc"]["weight"].shape == (4, 3 + 4)
    params = tree.scale(params, 3.0)
    weight, bias = params["0"]["rc"]["weight"], params["0"]["rc"]["bias"]

    def hand_loop(feedback: float) -> list[torch.Tensor]:
        y_prev, v, ys = torch.zeros(2, 4, dtype=torch.float64), torch.zeros((), dtype=torch.float64), []
        for x in xs:
            y_prev, v = neurons.lif_step(F.linear(torch.cat([x, feedback * y_prev], dim=-1), weight, bias), v)
            ys.append(y_prev)
        return ys

    for x, expected in zip(xs, hand_loop(feedback=1.0), strict=True):
        y, states = model.apply(params, states, x)
        assert torch.equal(y, expected)
        assert torch.equal(states["0"].y, y)
    assert not all(map(torch.equal, hand_loop(feedback=1.0), hand_loop(feedback=0.0))), "feedback must matter"


def test_from_torch_linear_recurrent_container_matches_spikingjelly(sj: SimpleNamespace, dtype: torch.dtype,
                                                                    tol: float) -> None:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        try:
            container = sj.layer.LinearRecurrentContainer(sj.neuron.LIFNode(), 4, 4)
        except Exception as error:  # pragma: no cover - depends on the installed SpikingJelly
            pytest.skip(f"LinearRecurrentContainer is not constructible: {error}")
        net = torch.nn.Sequential(torch.nn.Linear(3, 4), container)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3.0)
        container.rc.bias.add_(2.5)  # drive: the recurrent layer must fire
    net = net.to(dtype)
    xs = 0.5 + torch.randn(8, 2, 3, generator=torch.Generator().manual_seed(1), dtype=dtype)
    model, params, states = nn.from_torch(net, xs[0])
    assert isinstance(model[1], nn.Recurrent) and model[1].neuron == neurons.LIF()
    sj.functional.reset_net(net)
    outputs = []
    with torch.no_grad():
        for x in xs:
            expected = net(x)
            y, states = model.apply(params, states, x)
            assert torch.equal(y, expected)
            torch.testing.assert_close(states["1"].neuron.v, container.sub_module.v, rtol=0, atol=tol)
            outputs.append(y)
    assert 0 < torch.stack(outputs).mean() < 1
