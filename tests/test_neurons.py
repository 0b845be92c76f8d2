"""Specification of ``purelearn.neurons``: SpikingJelly's neurons as pure step functions."""

from __future__ import annotations

import doctest
import math
import re
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, NamedTuple

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from purelearn import neurons, surrogate, tree
from purelearn.layer import Layer

STEPS = 30


class Case(NamedTuple):
    """One of our neuron layers and a builder of the SpikingJelly node it must reproduce."""

    ours: neurons.Neuron
    theirs: Callable[[SimpleNamespace], torch.nn.Module]


CASES: dict[str, Case] = {
    "IF": Case(neurons.IF(), lambda sj: sj.neuron.IFNode()),
    "LIF": Case(neurons.LIF(), lambda sj: sj.neuron.LIFNode()),
    "LIF-nondefault": Case(
        neurons.LIF(tau=3.5, decay_input=False, v_reset=None, detach_reset=True, v_threshold=0.5,
                    surrogate=surrogate.ATan()),
        lambda sj: sj.neuron.LIFNode(tau=3.5, decay_input=False, v_reset=None, detach_reset=True,
                                     v_threshold=0.5, surrogate_function=sj.surrogate.ATan()),
    ),
    "OTTTLIF": Case(neurons.OTTTLIF(), lambda sj: sj.neuron.OTTTLIFNode()),
    "SLTTLIF": Case(neurons.SLTTLIF(), lambda sj: sj.neuron.SLTTLIFNode()),
}


def inputs(steps: int, dtype: torch.dtype, shape: tuple[int, ...] = (4, 6), seed: int = 0) -> torch.Tensor:
    """Random input currents [T, N, ...] large enough for the neurons to fire now and then."""
    g = torch.Generator().manual_seed(seed)
    return 0.4 + 1.2 * torch.randn((steps, *shape), generator=g, dtype=dtype)


def spike_of(out: Any) -> torch.Tensor:
    """The spike tensor of a neuron output (SpikingJelly's OTTTLIFNode returns a list [spike, trace])."""
    if isinstance(out, (list, tuple)):
        return out[0]
    return out


def run_ours(neuron: neurons.Neuron, xs: torch.Tensor) -> tuple[list[Any], list[Any]]:
    """Step our neuron over ``xs`` from a fresh state: its outputs and states per step."""
    state = neuron.init_state(xs[0])
    outs, states = [], []
    for x in xs:
        out, state = neuron.apply(None, state, x)
        outs.append(out)
        states.append(state)
    return outs, states


def run_theirs(node: torch.nn.Module, xs: torch.Tensor) -> tuple[list[Any], list[torch.Tensor]]:
    """Step a SpikingJelly node (train mode) over ``xs``: its outputs and membrane potentials per step."""
    node.train()
    outs, vs = [], []
    for x in xs:
        outs.append(node(x))
        vs.append(node.v)
    return outs, vs


def test_module_docstring_examples_run() -> None:
    result = doctest.testmod(neurons, verbose=False)
    assert result.attempted > 0 and result.failed == 0


# --------------------------------------------------------------------------------------------------
# Agreement with SpikingJelly
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["IF", "LIF", "OTTTLIF", "SLTTLIF"])
def test_defaults_equal_spikingjelly_class_defaults(sj: SimpleNamespace, name: str) -> None:
    ours, theirs = CASES[name].ours, CASES[name].theirs(sj)
    fields = ["v_threshold", "v_reset", "detach_reset"] + ([] if name == "IF" else ["tau", "decay_input"])
    for field in fields:
        assert getattr(ours, field) == getattr(theirs, field), field
    assert type(ours.surrogate).__name__ == type(theirs.surrogate_function).__name__
    assert ours.surrogate.alpha == theirs.surrogate_function.alpha


@pytest.mark.parametrize("name", list(CASES))
def test_spikes_and_v_match_spikingjelly_over_30_steps(sj: SimpleNamespace, name: str, dtype: torch.dtype,
                                                        tol: float) -> None:
    case = CASES[name]
    xs = inputs(STEPS, dtype)
    our_outs, our_states = run_ours(case.ours, xs)
    their_outs, their_vs = run_theirs(case.theirs(sj).to(dtype), xs)
    spikes = torch.stack([spike_of(o) for o in our_outs])
    assert 0.05 < spikes.mean() < 0.95, "the inputs must exercise both firing and silence"
    for t in range(STEPS):
        assert torch.equal(spike_of(our_outs[t]), spike_of(their_outs[t])), f"spikes differ at step {t}"
        assert our_states[t].v.dtype == dtype
        torch.testing.assert_close(our_states[t].v, their_vs[t], rtol=0, atol=tol, msg=f"v at step {t}")


def test_trace_matches_ottt_lif_node(sj: SimpleNamespace, dtype: torch.dtype, tol: float) -> None:
    xs = inputs(STEPS, dtype)
    our_outs, our_states = run_ours(neurons.OTTTLIF(), xs)
    node = sj.neuron.OTTTLIFNode().to(dtype)
    their_outs, _ = run_theirs(node, xs)
    for t in range(STEPS):
        assert isinstance(their_outs[t], list) and len(their_outs[t]) == 2
        assert isinstance(our_outs[t], torch.Tensor), "an OTTTLIF emits its spike; the trace is in its state"
        torch.testing.assert_close(our_states[t].trace, their_outs[t][1], rtol=0, atol=tol)
    torch.testing.assert_close(our_states[-1].trace, node.trace, rtol=0, atol=tol)


def test_trace_follows_its_recursion_without_gradient() -> None:
    """trace_t = (1 − 1/tau)·trace_{t−1} + spike_t, from zeros, carrying no autograd history."""
    neuron = neurons.OTTTLIF(tau=4.0)
    xs = inputs(8, torch.float64).requires_grad_()
    spikes, states = run_ours(neuron, xs)
    expected = torch.zeros((), dtype=torch.float64)
    for spike, state in zip(spikes, states, strict=True):
        expected = 0.75 * expected + spike.detach()
        torch.testing.assert_close(state.trace, expected, rtol=0, atol=1e-15)
        assert not state.trace.requires_grad and spike.requires_grad


@pytest.mark.parametrize("name", list(CASES))
def test_input_gradient_of_summed_outputs_matches_spikingjelly(sj: SimpleNamespace, name: str,
                                                               dtype: torch.dtype, tol: float) -> None:
    """BPTT through LIFNode / IFNode; for SLTTLIF and OTTTLIF the temporal path is detached in both."""
    case = CASES[name]
    steps = 6
    xs = inputs(steps, dtype, seed=1)
    weights = torch.rand(xs.shape, generator=torch.Generator().manual_seed(2), dtype=dtype)

    ours_x = xs.clone().requires_grad_()
    our_outs, our_states = run_ours(case.ours, ours_x)
    our_loss = sum((spike_of(o) * w).sum() + s.v.sum() for o, s, w in zip(our_outs, our_states, weights, strict=True))
    (our_grad,) = torch.autograd.grad(our_loss, ours_x)

    theirs_x = xs.clone().requires_grad_()
    their_outs, their_vs = run_theirs(case.theirs(sj).to(dtype), theirs_x)
    their_loss = sum((spike_of(o) * w).sum() + v.sum() for o, v, w in zip(their_outs, their_vs, weights, strict=True))
    their_loss.backward()

    assert our_grad.abs().sum() > 0
    torch.testing.assert_close(our_grad, theirs_x.grad, rtol=0, atol=tol)


def test_sltt_gradient_has_no_temporal_terms() -> None:
    """SLTT: the output at step t depends (in autograd) on x_t only."""
    xs = inputs(5, torch.float64).requires_grad_()
    outs, _ = run_ours(neurons.SLTTLIF(), xs)
    (grad,) = torch.autograd.grad(outs[-1].sum(), xs)
    assert torch.all(grad[:-1] == 0) and grad[-1].abs().sum() > 0
    outs, _ = run_ours(neurons.LIF(detach_reset=True), xs)
    (grad,) = torch.autograd.grad(outs[-1].sum(), xs)
    assert grad[:-1].abs().sum() > 0, "plain LIF must keep the temporal path (control)"


# --------------------------------------------------------------------------------------------------
# tau as a tensor, vmap
# --------------------------------------------------------------------------------------------------


def test_tensor_tau_equals_number_tau() -> None:
    xs = inputs(10, torch.float64)
    number_outs, number_states = run_ours(neurons.LIF(tau=3.0), xs)
    tensor_outs, tensor_states = run_ours(neurons.LIF(tau=torch.tensor(3.0, dtype=torch.float64)), xs)
    assert tree.allclose(number_outs, tensor_outs, rtol=0, atol=0)
    assert tree.allclose(number_states, tensor_states, rtol=0, atol=1e-15)


@pytest.mark.parametrize("cls", [neurons.LIF, neurons.OTTTLIF, neurons.SLTTLIF])
def test_vmap_over_tau_equals_loop(cls: type[neurons.LIF]) -> None:
    xs = inputs(8, torch.float64)
    weights = torch.rand(xs.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)

    def run(tau: torch.Tensor | float, xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        neuron = cls(tau=tau)

        def loss(xs: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
            state = neuron.init_state(xs[0])
            spikes, vs = [], []
            for x in xs:
                out, state = neuron.apply(None, state, x)
                spikes.append(spike_of(out))
                vs.append(state.v)
            spikes_t, vs_t = torch.stack(spikes), torch.stack(vs)
            return (spikes_t * weights).sum() + vs_t.sum(), (spikes_t, vs_t)

        grad, (spikes, vs) = torch.func.grad(loss, has_aux=True)(xs)
        return spikes, vs, grad

    taus = torch.tensor([1.5, 2.0, 5.0, 20.0], dtype=torch.float64)
    batched = torch.func.vmap(run, in_dims=(0, None))(taus, xs)
    for i, tau in enumerate(taus.tolist()):
        looped = run(tau, xs)
        for b, lp in zip(batched, looped, strict=True):
            torch.testing.assert_close(b[i], lp, rtol=0, atol=1e-12)
    assert not torch.equal(batched[0][0], batched[0][-1]), "tau must matter"


# --------------------------------------------------------------------------------------------------
# States: fresh, broadcasting, validated
# --------------------------------------------------------------------------------------------------

ALL_NEURONS = {**{k: c.ours for k, c in CASES.items()}, "ALIF": neurons.ALIF()}


@pytest.mark.parametrize("name", list(ALL_NEURONS))
def test_fresh_state_is_0d_and_broadcasts_to_any_batch(name: str, device: torch.device,
                                                       dtype: torch.dtype) -> None:
    neuron = ALL_NEURONS[name]
    state = neuron.init_state(torch.zeros(3, 5, dtype=dtype, device=device))
    for leaf in state:
        assert leaf.shape == () and leaf.dtype == dtype and leaf.device.type == device.type
    for batch in (2, 7):
        x = torch.ones(batch, 5, dtype=dtype, device=device)
        out, new_state = neuron.apply(None, state, x)
        assert spike_of(out).shape == x.shape
        assert all(leaf.shape == x.shape for leaf in new_state), "after one step a state has x's shape"
    assert all(leaf.shape == () for leaf in neuron.reset_state(new_state))
    assert all(leaf.dtype == dtype for leaf in neuron.reset_state(new_state))


def test_fresh_state_holds_v_reset_for_hard_reset_and_zero_for_soft() -> None:
    x = torch.zeros(2)
    assert neurons.LIF(v_reset=-0.5).init_state(x).v.item() == -0.5
    assert neurons.IF(v_reset=0.25).init_state(x).v.item() == 0.25
    assert neurons.LIF(v_reset=None).init_state(x).v.item() == 0.0


@pytest.mark.parametrize(
    ("neuron", "state", "field"),
    [
        (neurons.LIF(), neurons.LIFState(v=torch.zeros(3, 5)), "v"),
        (neurons.IF(), neurons.IFState(v=torch.zeros(3, 5)), "v"),
        (neurons.SLTTLIF(), neurons.LIFState(v=torch.zeros(3, 5)), "v"),
        (neurons.OTTTLIF(), neurons.OTTTLIFState(v=torch.zeros(3, 5), trace=torch.zeros(())), "v"),
        (neurons.OTTTLIF(), neurons.OTTTLIFState(v=torch.zeros(()), trace=torch.zeros(3, 5)), "trace"),
        (neurons.ALIF(), neurons.ALIFState(v=torch.zeros(()), b=torch.zeros(3, 5), s=torch.zeros(())), "b"),
        (neurons.ALIF(), neurons.ALIFState(v=torch.zeros(()), b=torch.zeros(()), s=torch.zeros(3, 5)), "s"),
    ],
    ids=["LIF", "IF", "SLTTLIF", "OTTTLIF-v", "OTTTLIF-trace", "ALIF-b", "ALIF-s"],
)
def test_state_with_another_batch_raises_value_error_naming_the_state(neuron: neurons.Neuron, state: Any,
                                                                      field: str) -> None:
    with pytest.raises(ValueError, match=f"state `{field}`"):
        neuron.apply(None, state, torch.zeros(4, 5))


@pytest.mark.parametrize("tau", [1.0, 0.5, 0.0, -2.0])
@pytest.mark.parametrize("cls", [neurons.LIF, neurons.OTTTLIF, neurons.SLTTLIF])
def test_tau_not_above_one_raises_value_error_naming_tau(cls: type, tau: float) -> None:
    with pytest.raises(ValueError, match="`tau`"):
        cls(tau=tau)


@pytest.mark.parametrize(
    ("build", "name"),
    [
        (lambda: neurons.LIF(tau=math.inf), "tau"),
        (lambda: neurons.LIF(v_threshold=math.nan), "v_threshold"),
        (lambda: neurons.IF(v_reset=math.inf), "v_reset"),
        (lambda: neurons.ALIF(tau_m=0.0), "tau_m"),
        (lambda: neurons.ALIF(tau_adp=-1.0), "tau_adp"),
    ],
)
def test_invalid_hyperparameter_raises_value_error_naming_it(build: Callable[[], Any], name: str) -> None:
    with pytest.raises(ValueError, match=f"`{name}`"):
        build()


#: Every Python-number hyperparameter of every neuron: (build with one value, its name).
NEURON_NUMBERS: list[tuple[Callable[[Any], Any], str]] = [
    *[(lambda v, c=c: c(v_threshold=v), "v_threshold")
      for c in (neurons.IF, neurons.LIF, neurons.OTTTLIF, neurons.SLTTLIF, neurons.ALIF)],
    *[(lambda v, c=c: c(v_reset=v), "v_reset") for c in (neurons.IF, neurons.LIF, neurons.OTTTLIF, neurons.SLTTLIF)],
    *[(lambda v, c=c: c(tau=v), "tau") for c in (neurons.LIF, neurons.OTTTLIF, neurons.SLTTLIF, neurons.LI)],
    (lambda v: neurons.ALIF(tau_m=v), "tau_m"),
    (lambda v: neurons.ALIF(tau_adp=v), "tau_adp"),
    (lambda v: neurons.ALIF(beta=v), "beta"),
    (lambda v: neurons.LIF(surrogate=surrogate.Sigmoid(alpha=v)), "alpha"),
]


@pytest.mark.parametrize("build, name", NEURON_NUMBERS)
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, 1e300])
def test_non_finite_hyperparameter_is_refused_when_built(build: Callable[[Any], Any], name: str, value: float) -> None:
    """inf, NaN and numbers beyond float32's range (infinite in float32 arithmetic), with the name."""
    with pytest.raises(ValueError, match=rf"^\w+: `{name}` must be a finite number.*got {re.escape(repr(value))}$"):
        build(value)


@pytest.mark.parametrize("build, name", [
    *[(lambda v, c=c: c(detach_reset=v), "detach_reset")
      for c in (neurons.IF, neurons.LIF, neurons.OTTTLIF, neurons.SLTTLIF)],
    *[(lambda v, c=c: c(decay_input=v), "decay_input") for c in (neurons.LIF, neurons.OTTTLIF, neurons.SLTTLIF)],
    (lambda v: neurons.ALIF(learn_tau=v), "learn_tau"),
    (lambda v: neurons.LI(learn_tau=v), "learn_tau"),
])
@pytest.mark.parametrize("value", ["False", 0, None])
def test_flag_that_is_not_a_bool_is_refused(build: Callable[[Any], Any], name: str, value: Any) -> None:
    with pytest.raises(TypeError, match=rf"`{name}` must be a bool \(True or False\), got {re.escape(repr(value))}"):
        build(value)


def test_unknown_surrogate_name_raises_value_error() -> None:
    with pytest.raises(ValueError, match="unknown surrogate"):
        neurons.LIF(surrogate="nope")


def test_surrogate_given_by_name_is_resolved() -> None:
    assert neurons.LIF(surrogate="atan").surrogate == surrogate.ATan()


# --------------------------------------------------------------------------------------------------
# Spikes and purity
# --------------------------------------------------------------------------------------------------


@given(
    seed=st.integers(0, 2**16),
    scale=st.sampled_from([0.1, 1.0, 10.0, 1e6]),
    name=st.sampled_from(list(ALL_NEURONS)),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    with_grad=st.booleans(),
)
def test_spikes_are_exactly_binary(seed: int, scale: float, name: str, dtype: torch.dtype,
                                   with_grad: bool) -> None:
    neuron = ALL_NEURONS[name]
    g = torch.Generator().manual_seed(seed)
    xs = scale * torch.randn(5, 3, 4, generator=g, dtype=dtype)
    xs[:, 0, 0] = 0.0
    xs.requires_grad_(with_grad)
    outs, _ = run_ours(neuron, xs)
    for out in outs:
        spike = spike_of(out).detach()
        assert spike.dtype == dtype
        assert torch.all((spike == 0) | (spike == 1))


def _snapshot(*trees: Any) -> list[tuple[torch.Tensor, int]]:
    return [(x.detach().clone(), x._version) for x in tree.leaves(trees)]


@pytest.mark.parametrize("name", list(ALL_NEURONS))
@pytest.mark.parametrize("requires_grad", [False, True])
def test_apply_does_not_mutate_inputs(name: str, requires_grad: bool) -> None:
    neuron = ALL_NEURONS[name]
    xs = inputs(3, torch.float64)
    _, states = run_ours(neuron, xs[:2])
    state = tree.map(lambda s: s.detach().clone().requires_grad_(requires_grad), states[-1])
    x = xs[2].clone().requires_grad_(requires_grad)
    before = _snapshot(state, x)
    neuron.apply(None, state, x)
    after = _snapshot(state, x)
    for (value_before, version_before), (value_after, version_after) in zip(before, after, strict=True):
        assert version_after == version_before
        assert torch.equal(value_after, value_before)


@pytest.mark.parametrize("name", list(ALL_NEURONS))
def test_neurons_are_stateful_layers_with_params_only_when_alif_learns_tau(name: str) -> None:
    neuron = ALL_NEURONS[name]
    assert isinstance(neuron, Layer) and neuron.has_state
    assert neuron.has_params is False
    assert neurons.ALIF(learn_tau=True).has_params is True


# --------------------------------------------------------------------------------------------------
# ALIF
# --------------------------------------------------------------------------------------------------


def test_alif_matches_hand_computed_three_steps() -> None:
    """The equations of ``alif_step``'s docstring, evaluated by hand in Python floats."""
    tau_m, tau_adp, beta, v_threshold = 2.0, 4.0, 1.5, 0.3
    xs = [[1.0, 0.2], [3.0, 0.0], [0.5, 1.5]]
    alpha, rho = math.exp(-1 / tau_m), math.exp(-1 / tau_adp)

    expected_spikes, expected_v, expected_b = [], [], []
    v, b, s = [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]
    for x in xs:
        b = [rho * bi + (1 - rho) * si for bi, si in zip(b, s, strict=True)]
        theta = [v_threshold + beta * bi for bi in b]
        v = [alpha * vi + (1 - alpha) * xi - th * si for vi, xi, th, si in zip(v, x, theta, s, strict=True)]
        s = [1.0 if vi - th >= 0 else 0.0 for vi, th in zip(v, theta, strict=True)]
        expected_spikes.append(s)
        expected_v.append(v)
        expected_b.append(b)
    # The example exercises firing, the soft reset and the adaptation.
    assert expected_spikes == [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]
    assert expected_b[2][0] == pytest.approx(0.3934693402873666, abs=1e-15)  # (1 − rho)(1 + rho)
    assert expected_v[2][0] == pytest.approx(-0.21597176201199875, abs=1e-15)

    neuron = neurons.ALIF(tau_m=tau_m, tau_adp=tau_adp, beta=beta, v_threshold=v_threshold)
    x_seq = torch.tensor(xs, dtype=torch.float64)[:, None, :]
    outs, states = run_ours(neuron, x_seq)
    for t in range(3):
        assert outs[t][0].tolist() == expected_spikes[t]
        assert states[t].v[0].tolist() == pytest.approx(expected_v[t], abs=1e-15)
        assert states[t].b[0].tolist() == pytest.approx(expected_b[t], abs=1e-15)
        assert torch.equal(states[t].s, outs[t])


def test_alif_learn_tau_puts_time_constants_in_params_and_gradients_flow() -> None:
    features = 5
    neuron = neurons.ALIF(tau_m=10.0, tau_adp=50.0, v_threshold=0.05, learn_tau=True)
    xs = inputs(6, torch.float64, shape=(3, features))
    params, state = neuron.init(None, xs[0])
    assert set(params) == {"tau_m", "tau_adp"}
    assert params["tau_m"].shape == (features,) and params["tau_adp"].shape == (features,)
    assert torch.all(params["tau_m"] == 10.0) and torch.all(params["tau_adp"] == 50.0)
    assert params["tau_m"].dtype == torch.float64

    def loss(params: dict[str, torch.Tensor]) -> torch.Tensor:
        s, total = state, 0.0
        for x in xs:
            spike, s = neuron.apply(params, s, x)
            total = total + spike.sum() + s.v.sum()
        return total

    grads = torch.func.grad(loss)(params)
    for key in ("tau_m", "tau_adp"):
        assert grads[key].shape == (features,)
        assert torch.isfinite(grads[key]).all() and grads[key].abs().sum() > 0, key


def test_alif_without_learn_tau_has_no_params() -> None:
    params, state = neurons.ALIF().init(None, torch.zeros(2, 3))
    assert params is None and all(leaf.shape == () for leaf in state)


def test_li_is_a_leaky_average_whose_output_is_its_membrane() -> None:
    li = neurons.LI(tau=4.0)
    xs = torch.tensor([[1.0, -2.0], [0.0, 3.0], [5.0, 0.5]], dtype=torch.float64)
    alpha = math.exp(-1 / 4)
    state, v = li.init_state(xs[0]), [0.0, 0.0]
    for x in xs:
        y, state = li.apply(None, state, x[None])
        v = [alpha * vi + (1 - alpha) * xi for vi, xi in zip(v, x.tolist(), strict=True)]
        assert y[0].tolist() == pytest.approx(v, abs=1e-15) and torch.equal(y, state.v)
    params, fresh = li.init(None, xs[:1])
    assert params is None and fresh.v.shape == () and not li.has_params


def test_li_learn_tau_is_a_parameter_with_a_gradient() -> None:
    li = neurons.LI(tau=10.0, learn_tau=True)
    xs = inputs(5, torch.float64, shape=(2, 3))
    params, state = li.init(None, xs[0])
    assert li.has_params and set(params) == {"tau"} and torch.all(params["tau"] == 10.0)

    def loss(params: dict[str, torch.Tensor]) -> torch.Tensor:
        s, total = state, 0.0
        for x in xs:
            y, s = li.apply(params, s, x)
            total = total + y.sum()
        return total

    grad = torch.func.grad(loss)(params)["tau"]
    assert grad.shape == (3,) and torch.isfinite(grad).all() and grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"LI: `tau` must be a finite number > 0, got 0"):
        neurons.LI(tau=0)
