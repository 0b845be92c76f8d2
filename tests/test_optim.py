"""Specification of ``purelearn.optim``: torch.optim numerics, purity, vmap/compile, validation."""

from __future__ import annotations

import doctest
import re
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest
import torch
import torch.utils._pytree as torch_pytree
from hypothesis import given, settings
from hypothesis import strategies as st

from purelearn import optim, tree

STEPS = 50
TOL = {torch.float32: 1e-6, torch.float64: 1e-12}
DTYPES = [torch.float32, torch.float64]


# --------------------------------------------------------------------------------------------------
# A small random problem and a driver running purelearn and torch.optim side by side
# --------------------------------------------------------------------------------------------------


class Problem(NamedTuple):
    params: dict[str, Any]
    grad_fn: Callable[[Any], Any]


def make_problem(dtype: torch.dtype = torch.float32, seed: int = 0, sign: float = 1.0) -> Problem:
    """Nested-dict params of different shapes and the gradient of a fixed non-quadratic loss.

    ``loss(p) = sum(h/2 (p - t)^2 + cos(3 p) / 3)``; with ``sign=-1`` the gradient of ``-loss`` is
    returned (for ``maximize=True``, which then still minimises ``loss``).
    """
    g = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=g, dtype=dtype)

    params = {"layer": {"w": randn(3, 4), "b": randn(4)}, "scale": randn()}
    target = tree.map(lambda p: randn(*p.shape), params)
    curvature = tree.map(lambda p: 3 * torch.rand(p.shape, generator=g, dtype=dtype), params)

    def grad_fn(p: Any) -> Any:
        return tree.map(lambda x, t, h: sign * (h * (x - t) - torch.sin(3 * x)), p, target, curvature)

    return Problem(params, grad_fn)


class Case(NamedTuple):
    ours: Callable[[], optim.GradientTransformation]
    theirs: Callable[[list[torch.Tensor]], torch.optim.Optimizer]
    maximize: bool = False
    clip: float | None = None
    # purelearn state field -> torch.optim state key, compared at the end of the run
    state_keys: tuple[tuple[str, str], ...] = ()


SGD_BUF = (("momentum_buffer", "momentum_buffer"),)
ADAM_KEYS = (("mu", "exp_avg"), ("nu", "exp_avg_sq"))

CASES = {
    "sgd": Case(lambda: optim.sgd(0.05), lambda p: torch.optim.SGD(p, lr=0.05, foreach=False)),
    "sgd_momentum": Case(
        lambda: optim.sgd(0.05, momentum=0.9),
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, foreach=False),
        state_keys=SGD_BUF,
    ),
    "sgd_dampening": Case(
        lambda: optim.sgd(0.05, momentum=0.9, dampening=0.3),
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, dampening=0.3, foreach=False),
        state_keys=SGD_BUF,
    ),
    "sgd_nesterov": Case(
        lambda: optim.sgd(0.05, momentum=0.9, nesterov=True),
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, foreach=False),
        state_keys=SGD_BUF,
    ),
    "sgd_weight_decay": Case(
        lambda: optim.sgd(0.05, momentum=0.5, weight_decay=0.1),
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.5, weight_decay=0.1, foreach=False),
        state_keys=SGD_BUF,
    ),
    "sgd_plain_weight_decay": Case(
        lambda: optim.sgd(0.05, weight_decay=0.1),
        lambda p: torch.optim.SGD(p, lr=0.05, weight_decay=0.1, foreach=False),
    ),
    "sgd_maximize": Case(
        lambda: optim.sgd(0.05, momentum=0.5, weight_decay=0.1, maximize=True),
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.5, weight_decay=0.1, maximize=True, foreach=False),
        maximize=True,
        state_keys=SGD_BUF,
    ),
    "adam": Case(
        lambda: optim.adam(0.01),
        lambda p: torch.optim.Adam(p, lr=0.01, foreach=False),
        state_keys=ADAM_KEYS,
    ),
    "adam_weight_decay": Case(
        lambda: optim.adam(0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
        lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1, foreach=False),
        state_keys=ADAM_KEYS,
    ),
    "adam_amsgrad": Case(
        lambda: optim.adam(0.01, amsgrad=True),
        lambda p: torch.optim.Adam(p, lr=0.01, amsgrad=True, foreach=False),
        state_keys=ADAM_KEYS + (("nu_max", "max_exp_avg_sq"),),
    ),
    "adam_maximize": Case(
        lambda: optim.adam(0.01, maximize=True),
        lambda p: torch.optim.Adam(p, lr=0.01, maximize=True, foreach=False),
        maximize=True,
        state_keys=ADAM_KEYS,
    ),
    "adamw": Case(
        lambda: optim.adamw(0.01),
        lambda p: torch.optim.AdamW(p, lr=0.01, foreach=False),
        state_keys=ADAM_KEYS,
    ),
    "adamw_strong_decay_amsgrad": Case(
        lambda: optim.adamw(0.05, weight_decay=2.0, amsgrad=True),
        lambda p: torch.optim.AdamW(p, lr=0.05, weight_decay=2.0, amsgrad=True, foreach=False),
        state_keys=ADAM_KEYS + (("nu_max", "max_exp_avg_sq"),),
    ),
    "adamax": Case(
        lambda: optim.adamax(0.01),
        lambda p: torch.optim.Adamax(p, lr=0.01, foreach=False),
        state_keys=(("mu", "exp_avg"), ("u", "exp_inf")),
    ),
    "adamax_weight_decay_maximize": Case(
        lambda: optim.adamax(0.02, betas=(0.7, 0.9), weight_decay=0.1, maximize=True),
        lambda p: torch.optim.Adamax(
            p, lr=0.02, betas=(0.7, 0.9), weight_decay=0.1, maximize=True, foreach=False
        ),
        maximize=True,
        state_keys=(("mu", "exp_avg"), ("u", "exp_inf")),
    ),
    "clip_then_sgd": Case(
        lambda: optim.chain(optim.clip_by_global_norm(1.0), optim.sgd(0.05, momentum=0.9)),
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, foreach=False),
        clip=1.0,
    ),
    "clip_inactive_then_adam": Case(
        lambda: optim.chain(optim.clip_by_global_norm(1e3), optim.adam(0.01)),
        lambda p: torch.optim.Adam(p, lr=0.01, foreach=False),
        clip=1e3,
    ),
}


def run_side_by_side(case: Case, dtype: torch.dtype, steps: int = STEPS) -> tuple[float, Any, Any]:
    """Run both optimizers on the same gradients; return the worst param gap and both final states.

    The gradients are evaluated at torch's current parameters and fed to both, so a gap measures the
    optimizers only and is not amplified by the problem.
    """
    problem = make_problem(dtype, sign=-1.0 if case.maximize else 1.0)
    spec = tree.structure(problem.params)
    torch_params = [x.clone().requires_grad_(True) for x in tree.leaves(problem.params)]
    torch_opt = case.theirs(torch_params)
    opt = case.ours()
    params, state = problem.params, opt.init(problem.params)
    worst = 0.0
    for _ in range(steps):
        grads = problem.grad_fn(spec.unflatten([x.detach() for x in torch_params]))
        for x, g in zip(torch_params, tree.leaves(grads), strict=True):
            x.grad = g.clone()
        if case.clip is not None:
            torch.nn.utils.clip_grad_norm_(torch_params, case.clip, foreach=False)
        torch_opt.step()
        updates, state = opt.update(grads, state, params)
        params = optim.apply_updates(params, updates)
        worst = max(worst, tree.max_abs_diff(params, spec.unflatten([x.detach() for x in torch_params])))
    torch_state = [torch_opt.state[x] for x in torch_params]
    return worst, state, (spec, torch_state)


# --------------------------------------------------------------------------------------------------
# Numerics against torch.optim
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", list(CASES))
def test_matches_torch_optim_over_50_steps(name: str, dtype: torch.dtype) -> None:
    case = CASES[name]
    worst, state, (spec, torch_state) = run_side_by_side(case, dtype)
    assert worst <= TOL[dtype], f"{name}: params differ from torch.optim by {worst:.3g}"
    for field, key in case.state_keys:
        expected = spec.unflatten([s[key] for s in torch_state])
        gap = tree.max_abs_diff(getattr(state, field), expected)
        assert gap <= TOL[dtype], f"{name}: state.{field} differs from torch's {key} by {gap:.3g}"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("max_norm", [0.1, 1.0, 100.0])
def test_clip_by_global_norm_matches_clip_grad_norm(max_norm: float, dtype: torch.dtype) -> None:
    problem = make_problem(dtype)
    grads = problem.grad_fn(problem.params)
    clip = optim.clip_by_global_norm(max_norm)
    clipped, _ = clip.update(grads, clip.init(problem.params))
    torch_grads = [g.clone() for g in tree.leaves(grads)]
    holders = [torch.zeros_like(g, requires_grad=True) for g in torch_grads]
    for h, g in zip(holders, torch_grads, strict=True):
        h.grad = g
    torch.nn.utils.clip_grad_norm_(holders, max_norm, foreach=False)
    expected = tree.structure(grads).unflatten([h.grad for h in holders])
    assert tree.max_abs_diff(clipped, expected) <= TOL[dtype]
    assert float(tree.global_norm(clipped)) <= max_norm * (1 + 1e-6)


def test_adam_first_step_is_minus_lr_times_sign() -> None:
    opt = optim.adam(lr=0.01)
    grads = {"w": torch.tensor([2.0, -3.0, 1e-3])}
    updates, _ = opt.update(grads, opt.init(grads))
    torch.testing.assert_close(updates["w"], -0.01 * torch.sign(grads["w"]), rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------------------------------
# Purity, pytrees, dtypes
# --------------------------------------------------------------------------------------------------

FACTORIES = {
    "sgd": lambda: optim.sgd(0.1),
    "sgd_nesterov_decay": lambda: optim.sgd(0.1, momentum=0.9, nesterov=True, weight_decay=0.1),
    "sgd_maximize": lambda: optim.sgd(0.1, momentum=0.9, dampening=0.5, maximize=True),
    "adam_amsgrad_decay": lambda: optim.adam(0.01, weight_decay=0.1, amsgrad=True),
    "adamw": lambda: optim.adamw(0.01, weight_decay=0.1),
    "adamax": lambda: optim.adamax(0.01, weight_decay=0.1, maximize=True),
    "clip": lambda: optim.clip_by_global_norm(0.5),
    "chain": lambda: optim.chain(optim.clip_by_global_norm(0.5), optim.adamw(0.01)),
    "tensor_hyperparameters": lambda: optim.adam(
        torch.tensor(0.01), betas=(torch.tensor(0.9), torch.tensor(0.99)), weight_decay=torch.tensor(0.1)
    ),
}


def _snapshot(*trees: Any) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    return [(x, x.clone(), x._version) for t in trees for x in tree.leaves(t)]


@pytest.mark.parametrize("name", list(FACTORIES))
def test_update_does_not_mutate_inputs(name: str) -> None:
    problem = make_problem()
    opt = FACTORIES[name]()
    state = opt.init(problem.params)
    # one step first, so that momentum buffers and moments are non-zero
    _, state = opt.update(problem.grad_fn(problem.params), state, problem.params)
    params = tree.clone(problem.params)
    grads = problem.grad_fn(params)
    before = _snapshot(grads, state, params)
    updates, new_state = opt.update(grads, state, params)
    new_params = optim.apply_updates(params, updates)
    for x, copy, version in before:
        assert x._version == version, f"{name}: an input was modified in place"
        assert torch.equal(x, copy)
    inputs = {id(x) for x, _, _ in before}
    assert not any(id(x) in inputs for x in tree.leaves(new_params))
    assert tree.max_abs_diff(new_params, params) > 0


@pytest.mark.parametrize("name", list(FACTORIES))
def test_state_flattens_to_tensors_under_torch_pytree(name: str) -> None:
    problem = make_problem()
    opt = FACTORIES[name]()
    state = opt.init(problem.params)
    for s in (state, opt.update(problem.grad_fn(problem.params), state, problem.params)[1]):
        leaves, spec = torch_pytree.tree_flatten(s)
        assert all(isinstance(x, torch.Tensor) for x in leaves), [type(x) for x in leaves]
        assert len(leaves) == len(tree.leaves(s))
        rebuilt = torch_pytree.tree_unflatten(leaves, spec)
        assert type(rebuilt) is type(s)
        assert tree.structure(rebuilt) == tree.structure(s)


@pytest.mark.parametrize("opt_name", ["sgd", "adam", "adamax"])
def test_step_count_is_an_int64_tensor_that_increments(opt_name: str) -> None:
    opt = {"sgd": optim.sgd(0.1, momentum=0.9), "adam": optim.adam(), "adamax": optim.adamax()}[opt_name]
    params = {"w": torch.ones(3)}
    state = opt.init(params)
    assert state.count.dtype == torch.int64 and state.count.shape == ()
    for expected in (1, 2, 3):
        _, state = opt.update(params, state, params)
        assert int(state.count) == expected


@pytest.mark.parametrize("name", ["sgd_nesterov_decay", "adam_amsgrad_decay", "adamax", "chain"])
def test_state_and_updates_follow_param_dtype(name: str) -> None:
    problem = make_problem(torch.float64)
    opt = FACTORIES[name]()
    state = opt.init(problem.params)
    updates, state = opt.update(problem.grad_fn(problem.params), state, problem.params)
    assert all(u.dtype == torch.float64 for u in tree.leaves(updates))
    assert all(x.dtype in (torch.float64, torch.int64) for x in tree.leaves(state))


def test_float64_tensor_hyperparameters_keep_float32_params_float32() -> None:
    """A 0-d float32 parameter must not be promoted by 0-d float64 hyperparameter tensors."""
    h = lambda v: torch.tensor(v, dtype=torch.float64)
    params = {"s": torch.tensor(1.5), "w": torch.ones(2)}
    for opt in (
        optim.sgd(h(0.1), momentum=h(0.9), dampening=h(0.1), weight_decay=h(0.1)),
        optim.adam(h(0.1), betas=(h(0.9), h(0.99)), eps=h(1e-8), weight_decay=h(0.1)),
        optim.adamw(h(0.1), weight_decay=h(0.1)),
        optim.adamax(h(0.1), betas=(h(0.9), h(0.99)), eps=h(1e-8), weight_decay=h(0.1)),
        optim.clip_by_global_norm(h(0.5)),
    ):
        state = opt.init(params)
        for _ in range(2):
            updates, state = opt.update(params, state, params)
            assert all(u.dtype == torch.float32 for u in tree.leaves(updates))
            assert all(x.dtype in (torch.float32, torch.int64) for x in tree.leaves(state))


def test_tensor_zero_momentum_equals_plain_sgd() -> None:
    """A tensor momentum keeps a buffer; with value 0 it must still reduce to plain SGD."""
    problem = make_problem()
    results = []
    for momentum in (0.0, torch.tensor(0.0)):
        opt = optim.sgd(0.1, momentum=momentum)
        params, state = problem.params, opt.init(problem.params)
        for _ in range(5):
            updates, state = opt.update(problem.grad_fn(params), state, params)
            params = optim.apply_updates(params, updates)
        results.append(params)
    assert tree.max_abs_diff(*results) <= 1e-7


def test_empty_tree_is_fine() -> None:
    for opt in (optim.sgd(0.1, momentum=0.9), optim.adam(), optim.chain(optim.clip_by_global_norm(1.0))):
        updates, _ = opt.update({}, opt.init({}), {})
        assert updates == {}


def test_chain_of_nothing_is_identity() -> None:
    opt = optim.chain()
    grads = {"w": torch.ones(2)}
    updates, state = opt.update(grads, opt.init(grads))
    assert state == () and torch.equal(updates["w"], grads["w"])


def test_apply_updates_keeps_param_dtype_and_returns_new_tensors() -> None:
    params = {"a": torch.ones(2, dtype=torch.float64), "b": (torch.zeros(3),)}
    updates = {"a": torch.full((2,), 0.5, dtype=torch.float64), "b": (torch.ones(3),)}
    new = optim.apply_updates(params, updates)
    assert new["a"].dtype == torch.float64 and torch.equal(
        new["a"], torch.full((2,), 1.5, dtype=torch.float64)
    )
    assert torch.equal(new["b"][0], torch.ones(3)) and torch.equal(params["b"][0], torch.zeros(3))


def test_module_docstring_examples_run() -> None:
    result = doctest.testmod(optim, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


# --------------------------------------------------------------------------------------------------
# torch.func.vmap over hyperparameters, torch.compile
# --------------------------------------------------------------------------------------------------

VMAP_STEPS = 5

VMAP_CASES = {
    "sgd_lr": (torch.tensor([0.0, 0.01, 0.1]), lambda v: optim.sgd(v, momentum=0.9)),
    "sgd_momentum": (torch.tensor([0.0, 0.5, 0.9]), lambda v: optim.sgd(0.05, momentum=v)),
    "sgd_momentum_dampening": (
        torch.tensor([0.5, 0.9]),
        lambda v: optim.sgd(0.05, momentum=v, dampening=0.1),
    ),
    "sgd_nesterov_momentum": (
        torch.tensor([0.3, 0.9]),
        lambda v: optim.sgd(0.05, momentum=v, nesterov=True),
    ),
    "sgd_weight_decay": (torch.tensor([0.0, 0.1, 1.0]), lambda v: optim.sgd(0.05, weight_decay=v)),
    "adam_lr": (torch.tensor([1e-3, 1e-2]), lambda v: optim.adam(v, weight_decay=0.1)),
    "adam_betas": (
        torch.tensor([[0.9, 0.999], [0.5, 0.9], [0.0, 0.0]]),
        lambda v: optim.adam(0.01, betas=(v[0], v[1]), amsgrad=True),
    ),
    "adam_eps": (torch.tensor([1e-8, 1e-1]), lambda v: optim.adam(0.01, eps=v)),
    "adamw_weight_decay": (torch.tensor([0.0, 0.01, 1.0]), lambda v: optim.adamw(0.05, weight_decay=v)),
    "adamax_betas": (
        torch.tensor([[0.9, 0.999], [0.5, 0.5]]),
        lambda v: optim.adamax(0.01, betas=(v[0], v[1])),
    ),
    "clip_max_norm": (
        torch.tensor([0.1, 1.0, 50.0]),
        lambda v: optim.chain(optim.clip_by_global_norm(v), optim.sgd(0.05)),
    ),
}


def _python_numbers(v: torch.Tensor) -> Any:
    return v.item() if v.dim() == 0 else [x.item() for x in v]


@pytest.mark.parametrize("name", list(VMAP_CASES))
def test_vmap_over_hyperparameter_equals_loop_of_python_number_runs(name: str) -> None:
    values, build = VMAP_CASES[name]
    problem = make_problem()

    def train(v: Any) -> Any:
        opt = build(v)
        params, state = problem.params, opt.init(problem.params)
        for _ in range(VMAP_STEPS):
            updates, state = opt.update(problem.grad_fn(params), state, params)
            params = optim.apply_updates(params, updates)
        return params

    batched = torch.func.vmap(train)(values)
    looped = tree.stack([train(_python_numbers(v)) for v in values])
    assert tree.max_abs_diff(batched, looped) <= 1e-6


def test_vmap_over_stacked_params_and_states_equals_loop() -> None:
    """Per-example params and states (ensembles): vmap over update with in_dims=0 everywhere."""
    opt = optim.adamw(0.01, weight_decay=0.1)
    problems = [make_problem(seed=s) for s in range(3)]
    params = tree.stack([p.params for p in problems])
    grads = tree.stack([p.grad_fn(p.params) for p in problems])
    state = torch.func.vmap(opt.init)(params)
    updates, new_state = torch.func.vmap(opt.update)(grads, state, params)
    for i, p in enumerate(problems):
        u, s = opt.update(p.grad_fn(p.params), opt.init(p.params), p.params)
        assert tree.max_abs_diff(tree.unstack(updates)[i], u) <= 1e-7
        assert tree.max_abs_diff(tree.unstack(new_state.mu)[i], s.mu) <= 1e-7


@pytest.mark.slow
def test_compiled_step_equals_eager() -> None:
    opt = optim.chain(optim.clip_by_global_norm(1.0), optim.adamw(0.01, weight_decay=0.1, amsgrad=True))
    problem = make_problem()

    def step(params: Any, state: Any) -> tuple[Any, Any]:
        updates, state = opt.update(problem.grad_fn(params), state, params)
        return optim.apply_updates(params, updates), state

    compiled = torch.compile(step, backend="aot_eager", fullgraph=True)
    eager_params, eager_state = problem.params, opt.init(problem.params)
    comp_params, comp_state = problem.params, opt.init(problem.params)
    for _ in range(3):
        eager_params, eager_state = step(eager_params, eager_state)
        comp_params, comp_state = compiled(comp_params, comp_state)
    assert tree.max_abs_diff(eager_params, comp_params) <= 1e-6
    assert tree.max_abs_diff(eager_state, comp_state) <= 1e-6


# --------------------------------------------------------------------------------------------------
# Property: sgd matches torch.optim.SGD for random hyperparameters and shapes
# --------------------------------------------------------------------------------------------------

shapes = st.lists(st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple), min_size=1, max_size=4)


@settings(max_examples=20, deadline=None)
@given(
    shapes=shapes,
    lr=st.floats(0.0, 1.0),
    momentum=st.one_of(st.just(0.0), st.floats(0.0, 0.99)),
    dampening=st.one_of(st.just(0.0), st.floats(0.0, 1.0)),
    nesterov=st.booleans(),
    weight_decay=st.one_of(st.just(0.0), st.floats(0.0, 0.5)),
    maximize=st.booleans(),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**16),
)
def test_sgd_matches_torch_for_random_hyperparameters(
    shapes: list[tuple[int, ...]],
    lr: float,
    momentum: float,
    dampening: float,
    nesterov: bool,
    weight_decay: float,
    maximize: bool,
    dtype: torch.dtype,
    seed: int,
) -> None:
    nesterov = nesterov and momentum > 0 and dampening == 0
    kwargs = dict(lr=lr, momentum=momentum, dampening=dampening, nesterov=nesterov, weight_decay=weight_decay)
    g = torch.Generator().manual_seed(seed)
    params = tuple(torch.randn(s, generator=g, dtype=dtype) for s in shapes)
    torch_params = [x.clone().requires_grad_(True) for x in params]
    torch_opt = torch.optim.SGD(torch_params, maximize=maximize, foreach=False, **kwargs)
    opt = optim.sgd(maximize=maximize, **kwargs)
    state = opt.init(params)
    for _ in range(4):
        grads = tuple(torch.randn(s, generator=g, dtype=dtype) for s in shapes)
        for x, gr in zip(torch_params, grads, strict=True):
            x.grad = gr.clone()
        torch_opt.step()
        updates, state = opt.update(grads, state, params)
        params = optim.apply_updates(params, updates)
    # Our step rounds twice (update, then add) where torch's fused add_ rounds once, and a nesterov
    # buffer once more: in float32 up to ~2 ulps of each value per step, so the bound is relative to
    # the magnitude (values reach ~15 here, where one ulp is ~1e-6): 4 steps × 2 ulps (ulp <= eps·|x|).
    rtol = {torch.float32: 8 * torch.finfo(torch.float32).eps, torch.float64: 0.0}[dtype]
    for ours, theirs in zip(params, torch_params, strict=True):
        torch.testing.assert_close(ours, theirs.detach(), rtol=rtol, atol=TOL[dtype])


# --------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: optim.sgd(-0.1), r"sgd: `lr` must be a finite number >= 0, got -0.1"),
        (lambda: optim.sgd(0.1, momentum=-0.5), r"`momentum` must be a finite number >= 0, got -0.5"),
        (lambda: optim.sgd(0.1, weight_decay=-1), r"`weight_decay` must be a finite number >= 0, got -1"),
        (lambda: optim.sgd(float("nan")), r"`lr` must be a finite number >= 0, got nan"),
        (lambda: optim.sgd(0.1, nesterov=True), r"`nesterov=True` requires `momentum` > 0"),
        (lambda: optim.sgd(0.1, momentum=0.9, dampening=0.1, nesterov=True), r"`dampening` == 0"),
        (lambda: optim.adam(-1e-3), r"adam: `lr` must be a finite number >= 0, got -0.001"),
        (lambda: optim.adam(betas=(1.0, 0.999)), r"`betas\[0\]` must be a finite number in \[0, 1\), got 1.0"),
        (lambda: optim.adam(betas=(0.9, -0.1)), r"`betas\[1\]` must be a finite number in \[0, 1\), got -0.1"),
        (lambda: optim.adam(eps=-1e-8), r"`eps` must be a finite number >= 0, got -1e-08"),
        (lambda: optim.adam(weight_decay=-0.1), r"adam: `weight_decay` must be a finite number >= 0"),
        (lambda: optim.adamw(lr=-1.0), r"adamw: `lr` must be a finite number >= 0, got -1.0"),
        (lambda: optim.adamw(betas=(0.9, 1.5)), r"adamw: `betas\[1\]` must be a finite number in \[0, 1\)"),
        (lambda: optim.adamax(weight_decay=-1.0), r"adamax: `weight_decay` must be a finite number >= 0, got -1.0"),
        (lambda: optim.adamax(eps=-1.0), r"adamax: `eps` must be a finite number >= 0"),
        (lambda: optim.clip_by_global_norm(0.0), r"`max_norm` must be a finite number > 0, got 0.0"),
        (lambda: optim.clip_by_global_norm(-1), r"`max_norm` must be a finite number > 0, got -1"),
        (lambda: optim.sgd(torch.tensor([0.1, 0.2])), r"`lr` must be a number or a one-element tensor"),
    ],
)
def test_invalid_hyperparameter_raises_value_error_naming_it(build: Callable[[], Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize(
    "build, name",
    [
        (lambda: optim.sgd("0.1"), "lr"),
        (lambda: optim.sgd(0.1, momentum=None), "momentum"),
        (lambda: optim.sgd(True), "lr"),
        (lambda: optim.sgd(0.1, momentum=0.9, nesterov=1), "nesterov"),
        (lambda: optim.adam(betas=0.9), "betas"),
        (lambda: optim.adam(amsgrad=torch.tensor(True)), "amsgrad"),
        (lambda: optim.adamax(maximize="yes"), "maximize"),
        (lambda: optim.chain(optim.sgd(0.1), "adam"), r"transforms\[1\]"),
    ],
)
def test_non_number_hyperparameter_raises_type_error(build: Callable[[], Any], name: str) -> None:
    with pytest.raises(TypeError, match=name):
        build()


#: Every Python-number hyperparameter of every optimizer: (build with one keyword, name in the message).
HYPERPARAMETERS: list[tuple[Callable[[Any], Any], str]] = [
    (lambda v: optim.sgd(lr=v), "lr"),
    (lambda v: optim.sgd(0.1, momentum=v), "momentum"),
    (lambda v: optim.sgd(0.1, dampening=v), "dampening"),
    (lambda v: optim.sgd(0.1, weight_decay=v), "weight_decay"),
    *[(lambda v, f=f: f(lr=v), "lr") for f in (optim.adam, optim.adamw, optim.adamax)],
    *[(lambda v, f=f: f(betas=(v, 0.999)), r"betas\[0\]") for f in (optim.adam, optim.adamw, optim.adamax)],
    *[(lambda v, f=f: f(betas=(0.9, v)), r"betas\[1\]") for f in (optim.adam, optim.adamw, optim.adamax)],
    *[(lambda v, f=f: f(eps=v), "eps") for f in (optim.adam, optim.adamw, optim.adamax)],
    *[(lambda v, f=f: f(weight_decay=v), "weight_decay") for f in (optim.adam, optim.adamw, optim.adamax)],
    (lambda v: optim.clip_by_global_norm(v), "max_norm"),
    (lambda v: optim.sgd(lambda count: v), r"lr\(count\)"),  # a schedule's value at count 0
]


@pytest.mark.parametrize("build, name", HYPERPARAMETERS)
@pytest.mark.parametrize("value", [float("inf"), -float("inf"), float("nan"), 1e300, -1e39])
def test_non_finite_python_hyperparameter_is_refused_when_built(build: Callable[[Any], Any], name: str,
                                                                value: float) -> None:
    """inf, NaN and numbers beyond float32's range (infinite in float32 arithmetic) never reach an update."""
    with pytest.raises(ValueError, match=rf"^\w+: `{name}` must be a finite number.*got {re.escape(repr(value))}$"):
        build(value)


@pytest.mark.parametrize("build, name", HYPERPARAMETERS)
def test_bool_hyperparameter_is_refused(build: Callable[[Any], Any], name: str) -> None:
    with pytest.raises(TypeError, match=rf"`{name}` must be a Python number or a torch.Tensor"):
        build(True)


@pytest.mark.parametrize("make", [optim.sgd, optim.adam, optim.adamw, optim.adamax])
def test_state_of_another_dtype_is_refused_before_anything_changes(make: Callable[..., Any]) -> None:
    opt = make(0.1, momentum=0.9) if make is optim.sgd else make(0.1)
    params = {"w": torch.ones(3), "b": torch.zeros(2)}
    half = opt.init(tree.map(lambda t: t.half(), params))
    before = [(leaf.clone(), leaf._version) for leaf in tree.leaves((half, params))]
    with pytest.raises(TypeError, match=r"`state\.\w+` leaf '\w' is torch.float16 on cpu, expected torch.float32 "
                                        r"on cpu \(as in `grads`\); an optimizer state has the dtype and device"):
        opt.update(tree.map(torch.ones_like, params), half, params)
    for (value, version), leaf in zip(before, tree.leaves((half, params)), strict=True):
        assert torch.equal(value, leaf) and version == leaf._version


@pytest.mark.parametrize("make, field", [(lambda: optim.adam(0.1), "nu"),
                                         (lambda: optim.adam(0.1, amsgrad=True), "nu_max"),
                                         (lambda: optim.adamax(0.1), "u")])
def test_every_moment_of_the_state_is_checked_not_only_the_first(make: Callable[[], Any], field: str) -> None:
    opt = make()
    params = {"w": torch.ones(3)}
    state = opt.init(params)
    state = state._replace(**{field: tree.map(lambda t: t.half(), getattr(state, field))})  # only this moment
    with pytest.raises(TypeError, match=rf"`state\.{field}` leaf 'w' is torch.float16 on cpu, expected torch.float32"):
        opt.update(tree.map(torch.ones_like, params), state, params)


def test_grads_of_another_dtype_than_params_are_refused() -> None:
    opt = optim.sgd(0.1, weight_decay=0.1)
    params = {"w": torch.ones(3)}
    with pytest.raises(TypeError, match=r"sgd: `params` leaf 'w' is torch.float32 on cpu, expected torch.float64"):
        opt.update({"w": torch.ones(3, dtype=torch.float64)}, opt.init(params), params)


def test_tensor_hyperparameters_are_not_range_checked() -> None:
    # they may be batched under vmap; their values are the caller's business
    optim.sgd(torch.tensor(-1.0), momentum=torch.tensor(-0.5), weight_decay=torch.tensor(-1.0))
    optim.adam(torch.tensor([1e-3]), betas=(torch.tensor(1.5), torch.tensor(0.9)), eps=torch.tensor(-1.0))
    optim.clip_by_global_norm(torch.tensor(0.0))


@pytest.mark.parametrize(
    "opt",
    [optim.sgd(0.1, momentum=0.9), optim.adam(), optim.adamw(), optim.adamax()],
    ids=["sgd", "adam", "adamw", "adamax"],
)
def test_grads_not_matching_state_raise_naming_both_structures(opt: optim.GradientTransformation) -> None:
    params = {"w": torch.ones(2), "b": torch.ones(())}
    state = opt.init(params)
    with pytest.raises(
        ValueError,
        match=r"`grads` has structure PyTreeSpec\(\{'w': \*\}\), expected PyTreeSpec\(\{'b': \*, 'w': \*\}\)",
    ) as info:
        opt.update({"w": torch.ones(2)}, state, params)
    assert "state." in str(info.value)
    with pytest.raises(ValueError, match=r"`grads` leaf 'w' has shape \(3,\), expected \(2,\)"):
        opt.update({"w": torch.ones(3), "b": torch.ones(())}, state, params)


def test_params_not_matching_grads_raise_naming_params() -> None:
    opt = optim.sgd(0.1)  # no state tree to compare with: params is the reference
    grads = {"w": torch.ones(2)}
    with pytest.raises(ValueError, match=r"sgd: `params` has structure"):
        opt.update(grads, opt.init(grads), {"v": torch.ones(2)})
    clip = optim.clip_by_global_norm(1.0)
    with pytest.raises(ValueError, match=r"clip_by_global_norm: `params`"):
        clip.update(grads, clip.init(grads), ({"w": torch.ones(2)},))
    with pytest.raises(ValueError, match=r"apply_updates: `updates` has structure"):
        optim.apply_updates(grads, [torch.ones(2)])


@pytest.mark.parametrize(
    "opt",
    [
        optim.sgd(0.1, weight_decay=0.1),
        optim.adam(weight_decay=0.1),
        optim.adamw(),
        optim.adamax(weight_decay=1.0),
    ],
    ids=["sgd", "adam", "adamw", "adamax"],
)
def test_weight_decay_without_params_raises(opt: optim.GradientTransformation) -> None:
    grads = {"w": torch.ones(2)}
    with pytest.raises(ValueError, match=r"`params` must be given"):
        opt.update(grads, opt.init(grads))


def test_no_weight_decay_needs_no_params() -> None:
    grads = {"w": torch.ones(2)}
    for opt in (optim.sgd(0.1, momentum=0.9), optim.adam(), optim.adamw(weight_decay=0), optim.adamax()):
        opt.update(grads, opt.init(grads))


def test_wrong_state_raises() -> None:
    grads = {"w": torch.ones(2)}
    with pytest.raises(TypeError, match=r"sgd: `state` must be the SGDState"):
        optim.sgd(0.1).update(grads, optim.adam().init(grads))
    opt = optim.chain(optim.clip_by_global_norm(1.0), optim.sgd(0.1))
    with pytest.raises(ValueError, match=r"chain: `state` must be a tuple of 2 states, got 1 states"):
        opt.update(grads, (optim.EmptyState(),))
