"""Property-based suite over every learner: random shapes, hyperparameters, dtypes and seeds.

Properties: purity (no input mutated, values and version counters), binary spikes and finite
state, no autograd history kept in the carry (nothing grows across steps), even from params, data
or a tensor lr that require grad, on the fused eager path and the torch.func path; a Python
hyperparameter accepted exactly when finite in float32 and in range; determinism within a
process and across processes, vmap equals the loop, and the SpikingJelly oracle where it exists
(sampled, see also the per-method suites). ``HYPOTHESIS_PROFILE=long`` runs many more examples.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from purelearn import neurons, nn, online, optim, sweep, tree

LEARNERS = ("fptt", "fptt_dual", "ottt_o", "ottt_a", "sltt", "sltt_k", "bptt", "fptt_window", "fptt_dual_window")
WINDOW = 2  # the *_window learners update once per 2 steps; their step takes a window [L <= 2, N, ...]
NEURON_FOR = {"ottt_o": neurons.OTTTLIF, "ottt_a": neurons.OTTTLIF, "sltt": neurons.SLTTLIF,
              "sltt_k": neurons.SLTTLIF}


def build(name: str, n_in: int, hidden: int, n_out: int, tau: float | torch.Tensor = 2.0,
          lr: float | torch.Tensor = 0.05, alpha: float | torch.Tensor = 0.1):
    neuron = NEURON_FOR.get(name, neurons.LIF)
    model = nn.Sequential(nn.Linear(n_in, hidden), neuron(tau=tau), nn.Linear(hidden, n_out), neuron(tau=tau))
    opt = optim.sgd(lr=lr, momentum=0.5)
    learner = {
        "fptt": lambda: online.fptt(model, F.mse_loss, opt, alpha=alpha),
        "fptt_dual": lambda: online.fptt_dual(model, F.mse_loss, opt, alpha=alpha),
        "fptt_window": lambda: online.fptt(model, F.mse_loss, opt, alpha=alpha, window=WINDOW),
        "fptt_dual_window": lambda: online.fptt_dual(model, F.mse_loss, opt, alpha=alpha, window=WINDOW),
        "ottt_o": lambda: online.ottt(model, F.mse_loss, opt, online=True),
        "ottt_a": lambda: online.ottt(model, F.mse_loss, opt, online=False),
        "sltt": lambda: online.sltt(model, F.mse_loss, opt),
        "sltt_k": lambda: online.sltt(model, F.mse_loss, opt, k=1, seed=3),
        "bptt": lambda: online.bptt(model, F.mse_loss, opt),
    }[name]()
    return model, learner


shapes = st.fixed_dictionaries({
    "n_in": st.integers(1, 6), "hidden": st.integers(1, 8), "n_out": st.integers(1, 4),
    "batch": st.integers(1, 4), "T": st.integers(1, 4), "seed": st.integers(0, 2**16),
    "dtype": st.sampled_from([torch.float32, torch.float64]),
})


def data(s: dict, scale: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(s["seed"])
    x = torch.rand(s["T"], s["batch"], s["n_in"], generator=g, dtype=s["dtype"]) * scale
    y = torch.rand(s["T"], s["batch"], s["n_out"], generator=g, dtype=s["dtype"])
    return x, y


def snapshot(*trees):
    return [(leaf.clone(), leaf._version) for t in trees for leaf in tree.leaves(t)]


def assert_unchanged(before, *trees) -> None:
    after = [leaf for t in trees for leaf in tree.leaves(t)]
    assert len(before) == len(after)
    for (value, version), leaf in zip(before, after, strict=True):
        assert leaf._version == version
        assert torch.equal(value, leaf)


@pytest.mark.parametrize("name", LEARNERS)
@given(s=shapes)
def test_run_is_pure_and_keeps_no_graph(name: str, s: dict) -> None:
    model, learner = build(name, s["n_in"], s["hidden"], s["n_out"])
    x, y = data(s)
    params, states = model.init(torch.Generator().manual_seed(s["seed"]), x[0])
    carry = learner.init(params, states)
    before = snapshot(carry, x, y)
    new_carry, outs = learner.run(carry, x, y)
    assert_unchanged(before, carry, x, y)
    # nothing in the new carry or the outputs holds an autograd graph (nothing can grow across steps)
    for leaf in tree.leaves((new_carry, outs)):
        assert leaf.grad_fn is None and not leaf.requires_grad
    assert outs.loss.shape == (s["T"],) and outs.y.shape == (s["T"], s["batch"], s["n_out"])
    assert all(torch.isfinite(leaf).all() for leaf in tree.leaves(new_carry) if leaf.is_floating_point())


def autograd_nodes(*trees) -> int:
    """The autograd graph nodes reachable from the tensor leaves of ``trees`` (0: no graph at all)."""
    seen, todo = set(), [leaf.grad_fn for leaf in tree.leaves(trees) if leaf.grad_fn is not None]
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(nxt for nxt, _ in node.next_functions if nxt is not None)
    return len(seen)


def _requiring_grad(params):
    """``params`` as ``torch.nn.Parameter``s (they require grad), as taken from a ``torch.nn`` module."""
    return tree.map(lambda p: torch.nn.Parameter(p.detach().clone()), params)


@pytest.mark.parametrize("fast", [True, False], ids=["fused_path", "torch_func_path"])
@pytest.mark.parametrize("name", (*LEARNERS, "forward"))
@given(s=shapes, x_grad=st.booleans(), lr_grad=st.booleans())
@settings(max_examples=6)
def test_inputs_that_require_grad_leave_no_graph_in_any_carry_or_output(name: str, fast: bool, s: dict,
                                                                        x_grad: bool, lr_grad: bool) -> None:
    """Params from a torch.nn module (requiring grad), data and a tensor lr that require grad: after every
    run and step, no leaf of the carry or the outputs has a grad_fn or requires grad, and the autograd
    graph reachable from them stays empty over sequences (nothing grows). ``fast=False`` forces the
    torch.func path (``torch.func.grad``, ``tree.map``) where the eager shortcuts would apply."""
    from purelearn.online import _fused, _grad

    lr = torch.tensor(0.05, dtype=s["dtype"], requires_grad=True) if lr_grad else 0.05
    if name == "forward":
        model, _ = build("fptt", s["n_in"], s["hidden"], s["n_out"])
        learner = online.forward(model, F.mse_loss)
    else:
        model, learner = build(name, s["n_in"], s["hidden"], s["n_out"], lr=lr)
    x, y = data(s)
    if x_grad:
        x = x.clone().requires_grad_()
    params, states = model.init(torch.Generator().manual_seed(s["seed"]), x[0].detach())
    with pytest.MonkeyPatch.context() as patch:
        if not fast:
            patch.setattr(_grad, "eager_applies", lambda *trees: False)
            patch.setattr(_fused, "eager_applies", lambda *trees: False)
        carry = learner.init(_requiring_grad(params), states)
        assert autograd_nodes(carry) == 0 and not any(leaf.requires_grad for leaf in tree.leaves(carry))
        for _ in range(3):
            carry, outs = learner.run(carry, x, y)
            assert autograd_nodes(carry, outs) == 0
            assert not any(leaf.requires_grad for leaf in tree.leaves((carry, outs)))
        # a step on a carry whose params require grad again (a hand-made carry): nothing recorded either
        one = slice(0, 1) if name.endswith("_window") or name == "bptt" else 0
        carry, out = learner.step(carry._replace(params=_requiring_grad(carry.params)), x[one], y[one])
        assert autograd_nodes(carry, out) == 0
        assert not any(leaf.requires_grad for leaf in tree.leaves(out))


#: Python-number hyperparameters with their rule: (build with one value, lowest accepted, bound open, divides).
HYPERPARAMETER_RULES = {
    "sgd lr": (lambda v: optim.sgd(lr=v), 0.0, False, False),
    "adam eps": (lambda v: optim.adam(eps=v), 0.0, False, False),
    "clip max_norm": (lambda v: optim.clip_by_global_norm(v), 0.0, True, False),
    "LIF v_threshold": (lambda v: neurons.LIF(v_threshold=v), None, False, False),
    "LIF tau": (lambda v: neurons.LIF(tau=v), 1.0, True, False),
    "fptt alpha": (lambda v: online.fptt(build("fptt", 2, 2, 2)[0], F.mse_loss, optim.sgd(0.1), alpha=v), 0.0, True,
                   True),
    "fptt_dual rho": (lambda v: online.fptt_dual(build("fptt", 2, 2, 2)[0], F.mse_loss, optim.sgd(0.1), rho=v), None,
                      False, False),
}


@pytest.mark.parametrize("owner", sorted(HYPERPARAMETER_RULES))
@given(value=st.one_of(st.floats(), st.floats(-1e40, 1e40), st.floats(-1e-36, 1e-36),
                       st.sampled_from([1e-300, 5e-324, 3.5e38, -3.5e38, 1e300])))
def test_a_python_hyperparameter_is_accepted_exactly_when_finite_in_float32_and_in_range(owner: str,
                                                                                         value: float) -> None:
    import math

    from purelearn import validate

    build, low, low_open, divides = HYPERPARAMETER_RULES[owner]
    ok = math.isfinite(value) and abs(value) <= validate.FLOAT32_MAX and (
        low is None or (value > low if low_open else value >= low)) and not (
        divides and value != 0 and abs(value) < validate.FLOAT32_TINY)
    if ok:
        build(value)
    else:
        with pytest.raises(ValueError, match=r"`\w+` must be a finite number"):
            build(value)


@pytest.mark.parametrize("name", [n for n in LEARNERS if n != "bptt"])
@given(s=shapes)
def test_step_is_pure(name: str, s: dict) -> None:
    model, learner = build(name, s["n_in"], s["hidden"], s["n_out"])
    x, y = data(s)
    carry = learner.init(*model.init(torch.Generator().manual_seed(s["seed"]), x[0]))
    first, last = (slice(0, 1), slice(-1, None)) if name.endswith("_window") else (0, -1)  # windows of 1 step
    carry, _ = learner.step(carry, x[first], y[first])   # full-shaped states from here on
    before = snapshot(carry, x, y)
    learner.step(carry, x[last], y[last], last=True)
    assert_unchanged(before, carry, x, y)


@given(s=shapes, tau=st.floats(1.05, 20.0), threshold=st.floats(0.05, 2.0), scale=st.floats(0.0, 50.0))
def test_spikes_are_binary_and_state_finite_for_finite_input(s: dict, tau: float, threshold: float,
                                                             scale: float) -> None:
    x, _ = data(s, scale)
    x = x - scale / 2                                    # negative inputs too
    for neuron in (neurons.LIF(tau=tau, v_threshold=threshold), neurons.LIF(tau=tau, v_reset=None),
                   neurons.IF(v_threshold=threshold), neurons.OTTTLIF(tau=tau), neurons.SLTTLIF(tau=tau),
                   neurons.ALIF(v_threshold=threshold)):
        state = neuron.init_state(x[0])
        for t in range(s["T"]):
            spike, state = neuron.apply(None, state, x[t])
            assert spike.dtype == x.dtype
            assert ((spike == 0) | (spike == 1)).all()
            assert all(torch.isfinite(leaf).all() for leaf in tree.leaves(state))


@pytest.mark.parametrize("name", LEARNERS)
@given(s=shapes)
def test_same_seed_gives_bit_identical_results(name: str, s: dict) -> None:
    def once():
        model, learner = build(name, s["n_in"], s["hidden"], s["n_out"])
        x, y = data(s)
        carry = learner.init(*model.init(torch.Generator().manual_seed(s["seed"]), x[0]))
        for _ in range(2):
            carry, outs = learner.run(carry, x, y)
        return carry, outs

    a, b = once(), once()
    for u, v in zip(tree.leaves(a), tree.leaves(b), strict=True):
        assert torch.equal(u, v)


@pytest.mark.parametrize("name", LEARNERS)
@given(s=shapes, lrs=st.lists(st.floats(0.0, 0.5), min_size=2, max_size=3),
       taus=st.lists(st.floats(1.1, 8.0), min_size=3, max_size=3))
def test_vmap_over_lr_and_tau_equals_the_loop(name: str, s: dict, lrs: list[float], taus: list[float]) -> None:
    s = {**s, "dtype": torch.float64}
    x, y = data(s)
    model, _ = build(name, s["n_in"], s["hidden"], s["n_out"])
    params, states = model.init(torch.Generator().manual_seed(s["seed"]), x[0])

    def train(lr, tau):
        _, learner = build(name, s["n_in"], s["hidden"], s["n_out"], tau=tau, lr=lr)
        carry, _ = learner.run(learner.init(params, states), x, y)
        return carry.params

    k = len(lrs)
    taus = taus[:k]
    configs = sweep.zip_configs(lr=torch.tensor(lrs, dtype=torch.float64),
                                tau=torch.tensor(taus, dtype=torch.float64))
    swept = sweep.vmap_configs(train, configs)
    loop = tree.stack([train(lr, tau) for lr, tau in zip(lrs, taus, strict=True)])
    assert tree.max_abs_diff(swept, loop) <= 1e-12


SUBPROCESS = textwrap.dedent("""
    import json, sys, torch
    sys.path.insert(0, {tests!r})
    from test_properties import build, data
    from purelearn import tree
    s = dict(n_in=5, hidden=7, n_out=3, batch=4, T=6, seed=11, dtype=torch.float32)
    out = {{}}
    for name in {names!r}:
        model, learner = build(name, 5, 7, 3)
        x, y = data(s)
        carry = learner.init(*model.init(torch.Generator().manual_seed(11), x[0]))
        for _ in range(3):
            carry, outs = learner.run(carry, x, y)
        out[name] = [leaf.double().flatten().tolist() for leaf in tree.leaves(carry.params)]
    print(json.dumps(out))
""")


@pytest.mark.slow
def test_same_seed_gives_bit_identical_results_across_processes() -> None:
    import os

    tests_dir = os.path.dirname(os.path.abspath(__file__))
    code = SUBPROCESS.format(tests=tests_dir, names=list(LEARNERS))
    runs = [
        json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"}).stdout.splitlines()[-1])
        for _ in range(2)
    ]
    assert runs[0] == runs[1]
    assert set(runs[0]) == set(LEARNERS)


oracle_shapes = st.fixed_dictionaries({
    "n_in": st.integers(1, 6), "hidden": st.integers(1, 8), "n_out": st.integers(1, 4),
    "batch": st.integers(1, 4), "T": st.integers(1, 4), "seed": st.integers(0, 2**16),
    "lr": st.floats(0.01, 1.0), "alpha": st.floats(0.05, 1.0), "tau": st.floats(1.1, 5.0),
})


@given(s=oracle_shapes)
@settings(max_examples=10)
def test_fptt_and_ottt_equal_spikingjelly_on_random_problems(sj, s: dict) -> None:
    from spikingjelly.activation_based.learning.online_learning import (
        fptt_online_training,
        fptt_online_training_init_w_ra,
        ottt_online_training,
    )

    g = torch.Generator().manual_seed(s["seed"])
    x = torch.rand(s["T"], s["batch"], s["n_in"], generator=g, dtype=torch.float64) * 3
    y = torch.rand(s["T"], s["batch"], s["n_out"], generator=g, dtype=torch.float64)
    torch.manual_seed(s["seed"])
    for method in ("fptt", "ottt"):
        if method == "fptt":
            net = torch.nn.Sequential(torch.nn.Linear(s["n_in"], s["hidden"]), sj.neuron.LIFNode(tau=s["tau"]),
                                      torch.nn.Linear(s["hidden"], s["n_out"]), sj.neuron.LIFNode(tau=s["tau"]))
        else:
            net = sj.layer.OTTTSequential(torch.nn.Linear(s["n_in"], s["hidden"]), sj.neuron.OTTTLIFNode(tau=s["tau"]),
                                          torch.nn.Linear(s["hidden"], s["n_out"]), sj.neuron.LIFNode(tau=s["tau"]))
        net = net.double()
        model, params, states = nn.from_torch(net, x[0])
        torch_opt = torch.optim.SGD(net.parameters(), lr=s["lr"], momentum=0.9)
        if method == "fptt":
            learner = online.fptt(model, F.mse_loss, optim.sgd(lr=s["lr"], momentum=0.9), alpha=s["alpha"])
            w_ra = fptt_online_training_init_w_ra(torch_opt)
        else:
            learner = online.ottt(model, F.mse_loss, optim.sgd(lr=s["lr"], momentum=0.9), online=True)
        carry = learner.init(params, states)
        for _ in range(2):
            if method == "fptt":
                fptt_online_training(net, torch_opt, x, y, F.mse_loss, s["alpha"], w_ra)
            else:
                ottt_online_training(net, torch_opt, x.transpose(0, 1), y.transpose(0, 1), F.mse_loss, True)
            sj.functional.reset_net(net)
            carry, _ = learner.run(carry, x, y)
        ours = nn.to_state_dict(carry.params)
        for key, value in net.state_dict().items():
            assert (ours[key] - value).abs().max() <= 1e-10, (method, key)


@pytest.mark.slow
@given(s=shapes, name=st.sampled_from(["fptt", "ottt_o", "sltt"]))
@settings(max_examples=3)
def test_compiled_step_equals_eager_on_random_problems(s: dict, name: str, compile_backend: str) -> None:
    from purelearn import compile as plc

    model, learner = build(name, s["n_in"], s["hidden"], s["n_out"])
    x, y = data(s)
    carry = learner.init(*model.init(torch.Generator().manual_seed(s["seed"]), x[0]))
    compiled = plc.step(learner, backend=compile_backend)
    eager_carry, compiled_carry = carry, carry
    for t in range(s["T"]):
        eager_carry, eager_out = learner.step(eager_carry, x[t], y[t], last=t == s["T"] - 1)
        compiled_carry, compiled_out = compiled(compiled_carry, x[t], y[t], last=t == s["T"] - 1)
    tol = 1e-5 if s["dtype"] == torch.float32 else 1e-10
    assert tree.max_abs_diff(eager_carry.params, compiled_carry.params) <= tol
    assert torch.allclose(eager_out.y, compiled_out.y)
