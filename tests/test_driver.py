"""Specification of the one time-loop driver (``purelearn.online.driver``), the forward-only learner,
and the shared eager fast path (``map_elementwise``, plain autograd) against the functional form."""

from __future__ import annotations

import operator
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from purelearn import neurons, nn, online, optim, tree
from purelearn.online import _fused, _grad
from purelearn.online.driver import Call

T = 5


def build(name: str) -> tuple[Any, nn.Sequential]:
    """``(learner, model)`` for a learner name; T = 5 with windows of 2 leaves a last window of 1."""
    neuron = {"ottt": neurons.OTTTLIF, "ottt_a": neurons.OTTTLIF, "sltt": neurons.SLTTLIF,
              "sltt_online": neurons.SLTTLIF, "sltt_k": neurons.SLTTLIF, "sltt_k_online": neurons.SLTTLIF}
    first = neuron.get(name, neurons.LIF)()
    second = neurons.SLTTLIF() if name.startswith("sltt") else neurons.LIF()
    model = nn.Sequential(nn.Linear(3, 4), first, nn.Linear(4, 2), second)
    opt = optim.sgd(lr=0.1, momentum=0.9)
    learner = {
        "fptt": lambda: online.fptt(model, F.mse_loss, opt),
        "fptt_window": lambda: online.fptt(model, F.mse_loss, opt, window=2),
        "fptt_dual": lambda: online.fptt_dual(model, F.mse_loss, opt),
        "fptt_dual_window": lambda: online.fptt_dual(model, F.mse_loss, opt, window=3),
        "ottt": lambda: online.ottt(model, F.mse_loss, opt, online=True),
        "ottt_a": lambda: online.ottt(model, F.mse_loss, opt, online=False),
        "sltt": lambda: online.sltt(model, F.mse_loss, opt),
        "sltt_online": lambda: online.sltt(model, F.mse_loss, opt, online=True),
        "sltt_k": lambda: online.sltt(model, F.mse_loss, opt, k=2, seed=3),
        "sltt_k_online": lambda: online.sltt(model, F.mse_loss, opt, online=True, k=2, seed=3),
        "bptt": lambda: online.bptt(model, F.mse_loss, opt),
    }[name]()
    return learner, model


NAMES = ["fptt", "fptt_window", "fptt_dual", "fptt_dual_window", "ottt", "ottt_a", "sltt", "sltt_online", "sltt_k",
         "sltt_k_online", "bptt"]
#: optimizer updates in one sequence of T = 5 steps
UPDATES = {"fptt": 5, "fptt_window": 3, "fptt_dual": 5, "fptt_dual_window": 2, "ottt": 5, "ottt_a": 1, "sltt": 1,
           "sltt_online": 5, "sltt_k": 1, "sltt_k_online": 2, "bptt": 1}


def sequence(dtype: torch.dtype = torch.float64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(T, 2, 3, generator=g, dtype=dtype) * 3, torch.rand(T, 2, 2, generator=g, dtype=dtype)


def start(name: str, dtype: torch.dtype = torch.float64) -> tuple[Any, Any, torch.Tensor, torch.Tensor]:
    learner, model = build(name)
    x, y = sequence(dtype)
    params, states = model.init(torch.Generator().manual_seed(1), x[0])
    return learner, learner.init(params, states), x, y


def opt_count(carry: Any) -> int:
    return int(carry.opt_state.count)


# --------------------------------------------------------------------------------------------------
# Plans
# --------------------------------------------------------------------------------------------------


def test_steps_windows_and_the_whole_sequence_as_plans():
    assert online.driver.steps(3) == (Call(0, (("last", False),)), Call(1, (("last", False),)),
                                      Call(2, (("last", True),)))
    assert [c.t for c in online.driver.windows(7, 3)] == [slice(0, 3), slice(3, 6), slice(6, 7)]
    assert [dict(c.options)["last"] for c in online.driver.windows(7, 3)] == [False, False, True]
    assert online.driver.windows(4, 4) == (Call(slice(0, 4), (("last", True),)),)
    assert online.driver.windows(3, 8) == (Call(slice(0, 3), (("last", True),)),)
    marked = online.driver.steps(4, backward={1, 3})
    assert [dict(c.options) for c in marked] == [{"last": False, "backward": False}, {"last": False, "backward": True},
                                                 {"last": False, "backward": False}, {"last": True, "backward": True}]


@pytest.mark.parametrize("name", NAMES)
def test_run_is_the_driver_walking_the_plan_with_the_learners_step(name):
    """``learner.run`` calls ``step`` once per call of its plan, with that call's inputs and options,
    and returns the outputs of those calls stacked time-major."""
    learner, carry, x, y = start(name)
    plan = learner.plan(carry, T)
    seen, outs = [], []

    def recording_step(c: Any, x_in: torch.Tensor, y_in: torch.Tensor, **options: Any) -> Any:
        seen.append((tuple(x_in.shape), tuple(sorted(options.items()))))
        c, out = learner.step(c, x_in, y_in, **options)
        outs.append(out)
        return c, out

    walked, walked_outs = online.driver.run(learner, carry, x, y, step=recording_step)
    expected = [((call.stop - call.start, 2, 3) if isinstance(call.t, slice) else (2, 3), call.options)
                for call in plan]
    assert seen == expected
    ran, ran_outs = learner.run(carry, x, y)
    assert tree.max_abs_diff(walked.params, ran.params) == 0.0
    assert torch.equal(walked_outs.loss, ran_outs.loss) and torch.equal(walked_outs.y, ran_outs.y)
    assert ran_outs.loss.shape == (T,) and ran_outs.y.shape == (T, 2, 2)
    stacked = torch.cat([o.loss.reshape(-1) for o in outs])
    assert torch.equal(stacked, ran_outs.loss)


@pytest.mark.parametrize("name", NAMES)
def test_updates_per_sequence_is_what_the_optimizer_counts(name):
    learner, carry, x, y = start(name)
    after, _ = learner.run(carry, x, y)
    assert opt_count(after) - opt_count(carry) == learner.updates_per_sequence(T) == UPDATES[name]


def test_a_plan_that_misses_steps_is_refused_before_any_step():
    learner, carry, x, y = start("fptt")

    class Skipping:
        def plan(self, carry: Any, T: int) -> tuple[Call, ...]:
            return (Call(0), Call(2))

        def step(self, *args: Any, **kwargs: Any) -> Any:
            raise AssertionError("no step may run")

    with pytest.raises(ValueError, match=r"calls must cover the time steps 0..4 in order.*step 1"):
        online.driver.run(Skipping(), carry, x, y)


# --------------------------------------------------------------------------------------------------
# The forward-only learner (evaluation)
# --------------------------------------------------------------------------------------------------


def test_forward_is_the_model_applied_step_by_step_without_a_graph():
    _, model = build("fptt")
    x, y = sequence(torch.float32)
    params, states = model.init(torch.Generator().manual_seed(0), x[0])
    params = tree.map(lambda p: p.requires_grad_(), params)
    learner = online.forward(model, F.mse_loss)
    carry, outs = learner.run(learner.init(params, states), x, y)
    s, ys, losses = states, [], []
    for t in range(T):
        y_t, s = model.apply(params, s, x[t])
        ys.append(y_t.detach())
        losses.append(F.mse_loss(y_t, y[t]).detach())
    assert torch.equal(outs.y, torch.stack(ys)) and torch.equal(outs.loss, torch.stack(losses))
    assert not outs.y.requires_grad and not outs.loss.requires_grad
    # the params unchanged (the same storage), detached: the carry holds no graph
    for ours, theirs in zip(tree.leaves(carry.params), tree.leaves(params), strict=True):
        assert ours.data_ptr() == theirs.data_ptr() and torch.equal(ours, theirs) and not ours.requires_grad
    assert learner.updates_per_sequence(T) == 0
    assert all(leaf.dim() == 0 for leaf in tree.leaves(carry.states))  # fresh for the next sequence


def test_forward_refuses_a_model_that_is_not_sequential():
    with pytest.raises(TypeError, match=r"forward: `model` must be a purelearn.nn.Sequential"):
        online.forward(torch.nn.Linear(2, 2), F.mse_loss)


# --------------------------------------------------------------------------------------------------
# The eager fast path gives the functional form's numbers, bit for bit
# --------------------------------------------------------------------------------------------------

OPS = [operator.add, operator.sub, operator.mul, operator.truediv]


def expressions(depth: int) -> st.SearchStrategy:
    """Expression trees over arguments 0..2 (tensors), Python numbers and a 0-d tensor ('s')."""
    leaf = st.one_of(st.integers(0, 2), st.floats(0.25, 4.0), st.just("s"))
    if depth == 0:
        return leaf
    return st.one_of(leaf, st.tuples(st.sampled_from(OPS), expressions(depth - 1), expressions(depth - 1)))


def as_function(expr: Any, scalar: torch.Tensor) -> Any:
    def value(node: Any, args: tuple[Any, ...]) -> Any:
        if isinstance(node, tuple):
            return node[0](value(node[1], args), value(node[2], args))
        if node == "s":
            return scalar
        return args[node] if isinstance(node, int) else node

    def fn(*args: Any) -> Any:
        out = value(expr, args)
        return out + 0.0 * args[0]  # always a tensor of the arguments' shape

    return fn


@settings(max_examples=150, deadline=None)
@given(expr=expressions(4), dtype=st.sampled_from([torch.float32, torch.float64]),
       scalar_dtype=st.sampled_from([torch.float32, torch.float64]), seed=st.integers(0, 2**16))
def test_map_elementwise_in_place_equals_the_plain_expression_bit_for_bit(expr, dtype, scalar_dtype, seed):
    g = torch.Generator().manual_seed(seed)
    trees = [{"a": torch.randn(3, 4, generator=g, dtype=dtype), "b": torch.randn(5, generator=g, dtype=dtype)}
             for _ in range(3)]
    before = [tree.clone(t) for t in trees]
    fn = as_function(expr, torch.rand((), generator=g, dtype=scalar_dtype) + 0.5)
    fused = _fused.map_elementwise(fn, *trees)
    plain = tree.map(fn, *trees)
    for a, b in zip(tree.leaves(fused), tree.leaves(plain), strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert torch.equal(a, b) or (torch.isnan(a) == torch.isnan(b)).all() and torch.equal(
            torch.nan_to_num(a), torch.nan_to_num(b))
    for t, b in zip(trees, before, strict=True):  # inputs untouched
        assert tree.max_abs_diff(t, b) == 0.0


def test_map_elementwise_is_tree_map_under_a_transform():
    calls = []

    def fn(x: Any) -> Any:
        calls.append(type(x))
        return x * 2.0 + 1.0

    xs = {"w": torch.ones(3, 2)}
    torch.func.vmap(lambda w: _fused.map_elementwise(fn, {"w": w}))(xs["w"])
    _fused.map_elementwise(fn, xs)
    assert calls[0] is not _fused._Expr and calls[1] is _fused._Expr


@pytest.mark.parametrize("name", ["fptt", "fptt_window", "fptt_dual", "ottt", "sltt_k", "bptt"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
def test_eager_fast_path_equals_the_functional_form_bit_for_bit(name, dtype, monkeypatch):
    learner, carry, x, y = start(name, dtype)
    carry = tree.map(lambda a: a.clone(), carry)
    fast = carry
    for _ in range(2):
        fast, fast_outs = learner.run(fast, x, y)
    monkeypatch.setattr(_fused, "eager_applies", lambda *trees: False)
    monkeypatch.setattr(_grad, "eager_applies", lambda *trees: False)
    functional = carry
    for _ in range(2):
        functional, functional_outs = learner.run(functional, x, y)
    for a, b in zip(tree.leaves(fast), tree.leaves(functional), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(fast_outs.loss, functional_outs.loss) and torch.equal(fast_outs.y, functional_outs.y)
