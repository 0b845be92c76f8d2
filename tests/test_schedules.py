"""Specification of ``purelearn.schedules`` and of schedules as optimizer hyperparameters.

A schedule is ``f(count) -> value`` with ``count`` the optimizer's count of updates already applied;
values follow the formulas written out below in Python floats, and an optimizer given a schedule
equals, update by update, the optimizer given the schedule's value at that count.
"""

from __future__ import annotations

import doctest
import math
import re
from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from purelearn import optim, schedules, tree

ULP = 2.0**-52  # relative rounding of one float64 operation, about 2.2e-16


def values(f: schedules.Schedule, counts: range | list[int]) -> list[float]:
    return [float(f(torch.tensor(c))) for c in counts]


def assert_close_to_formula(got: list[float], want: list[float], ulps: float = 4) -> None:
    for c, (g, w) in enumerate(zip(got, want, strict=True)):
        assert math.isclose(g, w, rel_tol=ulps * ULP, abs_tol=1e-300), f"count {c}: {g!r} != {w!r}"


# --------------------------------------------------------------------------------------------------
# The formulas, in Python floats
# --------------------------------------------------------------------------------------------------


def cosine_formula(count: int, init: float, decay_steps: int, alpha: float = 0.0, every: int = 1) -> float:
    s = min(count // every, decay_steps)
    return init * ((1 - alpha) * 0.5 * (1 + math.cos(math.pi * s / decay_steps)) + alpha)


def linear_formula(count: int, init: float, end: float, steps: int, every: int = 1) -> float:
    s = min(count // every, steps)
    return init + (end - init) * s / steps


def warmup_cosine_formula(count: int, peak: float, warmup: int, decay: int, init: float = 0.0,
                          end: float = 0.0, every: int = 1) -> float:
    s = count // every
    if s < warmup:
        return init + (peak - init) * s / warmup
    return end + (peak - end) * 0.5 * (1 + math.cos(math.pi * min(s - warmup, decay - warmup) / (decay - warmup)))


# --------------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------------


def test_module_docstring_examples_run() -> None:
    result = doctest.testmod(schedules, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_constant_returns_its_value_unchanged() -> None:
    assert schedules.constant(0.1)(torch.tensor(5)) == 0.1
    assert schedules.constant(3)(torch.tensor(0)) == 3.0
    v = torch.tensor([0.25], dtype=torch.float64)
    got = schedules.constant(v)(torch.tensor(9))
    assert got.shape == () and torch.equal(got, v.reshape(()))


@pytest.mark.parametrize("alpha", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("every", [1, 3])
def test_cosine_decay_follows_its_formula(alpha: float, every: int) -> None:
    f = schedules.cosine_decay(0.05, decay_steps=7, alpha=alpha, every=every)
    counts = range(every * 9 + 2)  # past the end: constant alpha * init
    assert_close_to_formula(values(f, counts), [cosine_formula(c, 0.05, 7, alpha, every) for c in counts])


@pytest.mark.parametrize("epochs, updates_per_epoch", [(1, 1), (7, 5), (90, 3)])
def test_cosine_decay_per_epoch_gives_the_cli_factor_of_math_cos(epochs: int, updates_per_epoch: int) -> None:
    """``cosine_decay(lr, decay_steps=E, every=B)`` gives ``lr · ½(1 + cos(π e / E))`` during epoch e."""
    factor = schedules.cosine_decay(1.0, decay_steps=epochs, every=updates_per_epoch)
    lr = schedules.cosine_decay(0.05, decay_steps=epochs, every=updates_per_epoch)
    for e in range(epochs):
        want = 0.5 * (1 + math.cos(math.pi * e / epochs))
        for c in (e * updates_per_epoch, (e + 1) * updates_per_epoch - 1):  # first and last update of epoch e
            got = float(factor(torch.tensor(c)))
            assert got == want or abs(got - want) <= ULP, (e, c, got, want)
            assert math.isclose(float(lr(torch.tensor(c))), 0.05 * want, rel_tol=2 * ULP, abs_tol=1e-300)


def test_staircase_holds_each_value_for_every_updates() -> None:
    for f, g in [
        (schedules.cosine_decay(1.0, 5, every=4), schedules.cosine_decay(1.0, 5)),
        (schedules.linear(1.0, 0.2, 5, every=4), schedules.linear(1.0, 0.2, 5)),
        (schedules.warmup_cosine_decay(1.0, 2, 5, every=4), schedules.warmup_cosine_decay(1.0, 2, 5)),
    ]:
        staircase = values(f, range(24))
        assert staircase == [v for v in values(g, range(6)) for _ in range(4)]


def test_linear_follows_its_formula_and_hits_both_ends() -> None:
    f = schedules.linear(0.1, 0.3, transition_steps=6)
    assert_close_to_formula(values(f, range(9)), [linear_formula(c, 0.1, 0.3, 6) for c in range(9)])
    warm = schedules.linear(0.0, 0.7, transition_steps=3, every=2)
    assert values(warm, [0, 1, 6, 7, 100]) == [0.0, 0.0, 0.7, 0.7, 0.7]


@pytest.mark.parametrize("init, end, every", [(0.0, 0.0, 1), (0.01, 1e-4, 1), (0.0, 0.0, 3)])
def test_warmup_cosine_decay_follows_its_formula(init: float, end: float, every: int) -> None:
    f = schedules.warmup_cosine_decay(0.1, warmup_steps=3, decay_steps=10, init_value=init, end_value=end, every=every)
    counts = range(every * 12)
    want = [warmup_cosine_formula(c, 0.1, 3, 10, init, end, every) for c in counts]
    assert_close_to_formula(values(f, counts), want)
    assert values(f, [0, 3 * every, 10 * every]) == [init, 0.1, end]


def test_warmup_cosine_decay_equals_optax_composition_of_linear_and_cosine_decay() -> None:
    """optax builds it as join_schedules([linear, cosine_decay(alpha=end/peak)], [warmup])."""
    peak, end, warmup, decay = 0.1, 0.02, 4, 11
    f = schedules.warmup_cosine_decay(peak, warmup, decay, init_value=0.01, end_value=end)
    g = schedules.join(
        [schedules.linear(0.01, peak, warmup), schedules.cosine_decay(peak, decay - warmup, alpha=end / peak)],
        boundaries=[warmup],
    )
    assert_close_to_formula(values(f, range(15)), values(g, range(15)), ulps=8)


def test_warmup_of_zero_steps_is_the_cosine_alone() -> None:
    f = schedules.warmup_cosine_decay(0.1, warmup_steps=0, decay_steps=5, end_value=0.01)
    assert_close_to_formula(values(f, range(7)), [warmup_cosine_formula(c, 0.1, 0, 5, end=0.01) for c in range(7)])


def test_join_switches_at_the_boundaries_and_restarts_the_count() -> None:
    seen: list[int] = []

    def spy(count: torch.Tensor) -> torch.Tensor:
        seen.append(int(count))
        return 10.0 + count.double()

    f = schedules.join([schedules.constant(1.0), spy, schedules.linear(5.0, 0.0, 5)], boundaries=[3, 5])
    assert values(f, range(8)) == [1.0, 1.0, 1.0, 10.0, 11.0, 5.0, 4.0, 3.0]
    assert min(seen) >= 0  # a later schedule never sees a negative count
    assert f(torch.tensor(0)).dtype == torch.float64  # numbers are not rounded to float32 by torch.where


# --------------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(
    init=st.floats(0.0, 10.0),
    decay_steps=st.integers(1, 1000),
    alpha=st.floats(0.0, 1.0),
    every=st.integers(1, 50),
    counts=st.lists(st.integers(0, 100_000), min_size=2, max_size=10),
)
def test_cosine_decay_stays_between_alpha_init_and_init_and_never_increases(
    init: float, decay_steps: int, alpha: float, every: int, counts: list[int]
) -> None:
    f = schedules.cosine_decay(init, decay_steps, alpha=alpha, every=every)
    counts = sorted(counts)
    got = values(f, counts)
    slack = 4 * ULP * init
    assert all(alpha * init - slack <= v <= init + slack for v in got), got
    assert all(a >= b - slack for a, b in zip(got, got[1:], strict=False)), got
    assert math.isclose(float(f(torch.tensor(decay_steps * every))), alpha * init, rel_tol=4 * ULP, abs_tol=1e-300)


@settings(max_examples=50, deadline=None)
@given(
    peak=st.floats(1e-6, 1.0),
    warmup=st.integers(0, 50),
    extra=st.integers(1, 200),
    init_frac=st.floats(0.0, 1.0),
    end_frac=st.floats(0.0, 1.0),
)
def test_warmup_cosine_decay_rises_to_peak_then_falls_to_end(
    peak: float, warmup: int, extra: int, init_frac: float, end_frac: float
) -> None:
    init, end, decay = init_frac * peak, end_frac * peak, warmup + extra
    f = schedules.warmup_cosine_decay(peak, warmup, decay, init_value=init, end_value=end)
    got = values(f, range(decay + 2))
    slack = 4 * ULP * peak
    rising, falling = got[: warmup + 1], got[warmup:]
    assert all(a <= b + slack for a, b in zip(rising, rising[1:], strict=False))
    assert all(a >= b - slack for a, b in zip(falling, falling[1:], strict=False))
    assert got[warmup] == peak and got[-1] == end and max(got) <= peak + slack


# --------------------------------------------------------------------------------------------------
# vmap over batched arguments and counts
# --------------------------------------------------------------------------------------------------

BATCHED: dict[str, Callable[[torch.Tensor | float], schedules.Schedule]] = {
    "constant": lambda v: schedules.constant(v),
    "cosine_decay": lambda v: schedules.cosine_decay(v, 6, alpha=0.1, every=2),
    "cosine_decay_alpha": lambda v: schedules.cosine_decay(0.3, 6, alpha=v),
    "linear": lambda v: schedules.linear(v, 0.01, 5),
    "linear_end": lambda v: schedules.linear(0.5, v, 5),
    "warmup_cosine_decay": lambda v: schedules.warmup_cosine_decay(v, 2, 8, init_value=0.01, end_value=0.001),
    "warmup_cosine_decay_end": lambda v: schedules.warmup_cosine_decay(0.9, 2, 8, end_value=v),
    "join": lambda v: schedules.join([schedules.linear(0.0, v, 3), schedules.cosine_decay(v, 4)], [3]),
}


@pytest.mark.parametrize("name", list(BATCHED))
def test_vmap_over_a_batched_argument_equals_the_loop(name: str) -> None:
    build = BATCHED[name]
    batch = torch.tensor([0.05, 0.2, 0.7])
    for c in (0, 1, 3, 5, 9, 30):
        count = torch.tensor(c)
        got = torch.func.vmap(lambda v, count=count: torch.as_tensor(build(v)(count), dtype=torch.float64))(batch)
        looped = torch.tensor([float(build(v.item())(count)) for v in batch], dtype=torch.float64)
        assert torch.allclose(got, looped, rtol=4 * ULP, atol=0), (c, got, looped)


@pytest.mark.parametrize("name", [n for n in BATCHED if n != "constant"])
def test_vmap_over_counts_equals_the_loop(name: str) -> None:
    f = BATCHED[name](0.3)
    counts = torch.arange(20)
    assert torch.equal(torch.func.vmap(f)(counts), torch.stack([f(c) for c in counts]))


# --------------------------------------------------------------------------------------------------
# Schedules as optimizer hyperparameters
# --------------------------------------------------------------------------------------------------


def make_problem(dtype: torch.dtype = torch.float64, seed: int = 0) -> tuple[dict[str, Any], Callable[[Any], Any]]:
    """Nested params and the gradient of ``sum(h/2 (p - t)^2 + cos(3 p) / 3)`` (as in test_optim)."""
    g = torch.Generator().manual_seed(seed)
    params = {"layer": {"w": torch.randn(3, 4, generator=g, dtype=dtype)},
              "b": torch.randn(4, generator=g, dtype=dtype)}
    target = tree.map(lambda p: torch.randn(p.shape, generator=g, dtype=dtype), params)
    curvature = tree.map(lambda p: 3 * torch.rand(p.shape, generator=g, dtype=dtype), params)
    return params, lambda p: tree.map(lambda x, t, h: h * (x - t) - torch.sin(3 * x), p, target, curvature)


def run(opt: optim.GradientTransformation, steps: int, dtype: torch.dtype = torch.float64) -> tuple[Any, Any]:
    params, grad_fn = make_problem(dtype)
    state = opt.init(params)
    for _ in range(steps):
        updates, state = opt.update(grad_fn(params), state, params)
        params = optim.apply_updates(params, updates)
    return params, state


def clip_count_as_empty(state: Any) -> Any:
    """A chain's state with a scheduled clip's ``ClipState(count)`` read as the ``EmptyState()`` of a plain clip."""
    if isinstance(state, tuple) and state and isinstance(state[0], optim.ClipState):
        return (optim.EmptyState(), *state[1:])
    return state


def assert_bitwise_equal(a: Any, b: Any) -> None:
    la, lb = tree.leaves(a), tree.leaves(b)
    assert tree.structure(a) == tree.structure(b)
    assert all(torch.equal(x, y) for x, y in zip(la, lb, strict=True))


# Every hyperparameter of every optimizer, given as h(value) for h = plain, a tensor, or a schedule.
OPTIMIZERS: dict[str, Callable[[Callable[[float], Any]], optim.GradientTransformation]] = {
    "sgd": lambda h: optim.sgd(h(0.05), momentum=h(0.9), dampening=h(0.1), weight_decay=h(0.01)),
    "sgd_nesterov": lambda h: optim.sgd(h(0.05), momentum=h(0.9), nesterov=True, weight_decay=h(0.01)),
    "adam": lambda h: optim.adam(h(0.01), betas=(h(0.8), h(0.99)), eps=h(1e-6), weight_decay=h(0.1), amsgrad=True),
    "adamw": lambda h: optim.adamw(h(0.01), betas=(h(0.8), h(0.99)), eps=h(1e-6), weight_decay=h(0.5)),
    "adamax": lambda h: optim.adamax(h(0.02), betas=(h(0.7), h(0.9)), eps=h(1e-6), weight_decay=h(0.1)),
    "clip_sgd": lambda h: optim.chain(optim.clip_by_global_norm(h(0.5)), optim.sgd(h(0.05), momentum=h(0.9))),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_constant_schedules_equal_numbers_and_tensors_bit_for_bit(name: str, dtype: torch.dtype) -> None:
    build = OPTIMIZERS[name]

    def run_without_clip_count(h: Callable[[float], Any]) -> tuple[Any, Any]:
        """Params and state after 10 updates; a scheduled clip's ClipState(count) read as EmptyState()."""
        params, state = run(build(h), 10, dtype)
        return params, clip_count_as_empty(state)

    as_number = run_without_clip_count(lambda v: v)
    assert_bitwise_equal(run_without_clip_count(schedules.constant), as_number)
    assert_bitwise_equal(run_without_clip_count(lambda v: (lambda count: v)), as_number)  # any f returning a number
    as_tensor = run_without_clip_count(torch.tensor)
    assert_bitwise_equal(run_without_clip_count(lambda v: schedules.constant(torch.tensor(v))), as_tensor)


def _wiggle(v: float) -> schedules.Schedule:
    """A non-constant schedule around ``v``: ``v · (1 - 0.3 · ½(1 - cos(count)))``, in [0.7 v, v]."""
    return lambda count: v * (1 - 0.15 * (1 - torch.cos(count.double())))


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_a_schedule_equals_rebuilding_the_optimizer_with_its_value_at_each_count(name: str) -> None:
    """Every hyperparameter scheduled at once: update k uses every schedule at count k, nothing else."""
    build = OPTIMIZERS[name]
    params, grad_fn = make_problem()
    scheduled = build(_wiggle)
    state = scheduled.init(params)
    want_params, want_state = params, build(torch.tensor).init(params)
    for k in range(8):
        updates, state = scheduled.update(grad_fn(params), state, params)
        params = optim.apply_updates(params, updates)
        at_k = build(lambda v, k=k: _wiggle(v)(torch.tensor(k)))  # the tensor value of each schedule at k
        updates, want_state = at_k.update(grad_fn(want_params), want_state, want_params)
        want_params = optim.apply_updates(want_params, updates)
        assert_bitwise_equal(params, want_params)
        assert_bitwise_equal(clip_count_as_empty(state), want_state)


LAMBDA_LR_CASES = {
    "sgd_momentum": (
        lambda lr: optim.sgd(lr, momentum=0.9, weight_decay=0.01),
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=0.01, foreach=False),
        0.05,
    ),
    "sgd_nesterov": (
        lambda lr: optim.sgd(lr, momentum=0.9, nesterov=True),
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, foreach=False),
        0.05,
    ),
    "adam": (
        lambda lr: optim.adam(lr, betas=(0.8, 0.99)),
        lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.99), foreach=False),
        0.01,
    ),
    "adamw": (
        lambda lr: optim.adamw(lr, weight_decay=0.5),
        lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.5, foreach=False),
        0.01,
    ),
}

SHAPES = {  # f with lr = base · f(step); our schedule is built with base inside
    "warmup_cosine": (lambda s: warmup_cosine_formula(s, 1.0, 4, 15),
                      lambda b: schedules.warmup_cosine_decay(b, 4, 15)),
    "cosine_per_epoch": (lambda s: cosine_formula(s, 1.0, 5, every=4),
                         lambda b: schedules.cosine_decay(b, 5, every=4)),
    "linear": (lambda s: linear_formula(s, 1.0, 0.1, 12), lambda b: schedules.linear(b, 0.1 * b, 12)),
}


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("name", list(LAMBDA_LR_CASES))
def test_scheduled_lr_matches_torch_lambda_lr_float64(name: str, shape: str) -> None:
    ours_fn, theirs_fn, base = LAMBDA_LR_CASES[name]
    factor, build_schedule = SHAPES[shape]
    params, grad_fn = make_problem(torch.float64)
    spec = tree.structure(params)
    torch_params = [x.clone().requires_grad_(True) for x in tree.leaves(params)]
    torch_opt = theirs_fn(torch_params)
    scheduler = torch.optim.lr_scheduler.LambdaLR(torch_opt, lr_lambda=factor)
    opt = ours_fn(build_schedule(base))
    state = opt.init(params)
    lrs = []
    for _ in range(20):
        grads = grad_fn(spec.unflatten([x.detach() for x in torch_params]))
        for x, g in zip(torch_params, tree.leaves(grads), strict=True):
            x.grad = g.clone()
        lrs.append(torch_opt.param_groups[0]["lr"])
        torch_opt.step()
        scheduler.step()
        updates, state = opt.update(grads, state, params)
        params = optim.apply_updates(params, updates)
        gap = tree.max_abs_diff(params, spec.unflatten([x.detach() for x in torch_params]))
        assert gap <= 1e-12, f"step {len(lrs)}: params differ from torch by {gap:.3g}"
    assert len(set(lrs)) > 3  # the learning rate did change


def test_scheduled_max_norm_clips_as_clip_grad_norm_at_each_count() -> None:
    max_norm = schedules.linear(0.1, 2.0, transition_steps=4)
    clip = optim.clip_by_global_norm(max_norm)
    params, grad_fn = make_problem()
    state = clip.init(params)
    assert isinstance(state, optim.ClipState) and state.count.dtype == torch.int64 and int(state.count) == 0
    assert isinstance(optim.clip_by_global_norm(0.5).init(params), optim.EmptyState)  # unchanged without one
    for k in range(6):
        grads = grad_fn(params)
        clipped, state = clip.update(grads, state, params)
        holders = [torch.zeros_like(g, requires_grad=True) for g in tree.leaves(grads)]
        for h, g in zip(holders, tree.leaves(grads), strict=True):
            h.grad = g.clone()
        torch.nn.utils.clip_grad_norm_(holders, float(max_norm(torch.tensor(k))), foreach=False)
        assert tree.max_abs_diff(clipped, tree.structure(grads).unflatten([h.grad for h in holders])) <= 1e-12
        assert int(state.count) == k + 1
    with pytest.raises(TypeError, match=r"clip_by_global_norm: `state` must be the ClipState"):
        clip.update(grads, optim.EmptyState())
    chained = optim.chain(clip, optim.sgd(0.1))
    assert [type(s) for s in chained.init(params)] == [optim.ClipState, optim.SGDState]


def test_vmap_over_a_scheduled_lr_equals_the_loop_of_python_numbers() -> None:
    params, grad_fn = make_problem(torch.float32)

    def train(lr: Any) -> Any:
        opt = optim.chain(
            optim.clip_by_global_norm(schedules.linear(0.5, 5.0, 3)),
            optim.sgd(schedules.warmup_cosine_decay(lr, 2, 6), momentum=0.9),
        )
        p, state = params, opt.init(params)
        for _ in range(7):
            updates, state = opt.update(grad_fn(p), state, p)
            p = optim.apply_updates(p, updates)
        return p

    lrs = torch.tensor([0.01, 0.1, 0.3])
    batched = torch.func.vmap(train)(lrs)
    looped = tree.stack([train(v.item()) for v in lrs])
    assert tree.max_abs_diff(batched, looped) <= 1e-6


@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_compiled_update_with_schedules_equals_eager_and_never_recompiles(fresh_dynamo: None) -> None:
    opt = optim.chain(
        optim.clip_by_global_norm(schedules.join([schedules.constant(0.5), schedules.linear(0.5, 2.0, 4)], [3])),
        optim.adamw(schedules.warmup_cosine_decay(0.01, 3, 8, every=2), betas=(schedules.linear(0.5, 0.9, 5), 0.99),
                    weight_decay=0.1),
    )
    params, grad_fn = make_problem(torch.float32)

    def step(p: Any, state: Any) -> tuple[Any, Any]:
        updates, state = opt.update(grad_fn(p), state, p)
        return optim.apply_updates(p, updates), state

    compiled = torch.compile(step, backend="aot_eager", fullgraph=True)
    eager = (params, opt.init(params))
    got = (params, opt.init(params))
    with torch._dynamo.config.patch(error_on_recompile=True):
        for _ in range(20):  # through warm-up, decay and the constant end
            eager = step(*eager)
            got = compiled(*got)
            assert tree.max_abs_diff(got, eager) <= 1e-6
    assert int(got[1][1].count) == 20


# --------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build, exc, message",
    [
        (lambda: schedules.cosine_decay(0.1, 0), ValueError, r"cosine_decay: `decay_steps` must be an int >= 1, got 0"),
        (lambda: schedules.cosine_decay(0.1, 10.0), TypeError, r"cosine_decay: `decay_steps` must be an int >= 1"),
        (lambda: schedules.cosine_decay(0.1, 10, alpha=1.5), ValueError,
         r"`alpha` must be a finite number in \[0, 1\], got 1.5"),
        (lambda: schedules.cosine_decay(0.1, 10, every=0), ValueError, r"cosine_decay: `every` must be an int >= 1"),
        (lambda: schedules.cosine_decay("0.1", 10), TypeError, r"cosine_decay: `init_value` must be a Python number"),
        (lambda: schedules.cosine_decay(torch.ones(2), 10), ValueError, r"`init_value` must be a number or a one-elem"),
        (lambda: schedules.cosine_decay(float("nan"), 10), ValueError, r"`init_value` must be a finite number, got na"),
        (lambda: schedules.linear(0.1, 0.0, 0), ValueError, r"linear: `transition_steps` must be an int >= 1, got 0"),
        (lambda: schedules.linear(0.1, None, 5), TypeError, r"linear: `end_value` must be a Python number"),
        (lambda: schedules.warmup_cosine_decay(0.1, -1, 10), ValueError, r"`warmup_steps` must be an int >= 0"),
        (lambda: schedules.warmup_cosine_decay(0.1, 10, 10), ValueError,
         r"`decay_steps` must exceed `warmup_steps`.*decay_steps=10, warmup_steps=10"),
        (lambda: schedules.constant(True), TypeError, r"constant: `value` must be a Python number"),
        (lambda: schedules.join([], []), ValueError, r"join: `schedules` must be a non-empty sequence"),
        (lambda: schedules.join([schedules.constant(1.0), 2.0], [3]), TypeError, r"`schedules\[1\]` must be a sched"),
        (lambda: schedules.join([schedules.constant(1.0)] * 2, []), ValueError, r"`boundaries` must be a sequence of"),
        (lambda: schedules.join([schedules.constant(1.0)] * 3, [5, 2]), ValueError, r"non-decreasing, got \[5, 2\]"),
        (lambda: optim.sgd(lambda: 0.1), TypeError, r"sgd: `lr` is callable, so it must be a schedule f\(count\)"),
        (lambda: optim.sgd(lambda c: -0.1), ValueError, r"sgd: `lr\(count\)` must be a finite number >= 0, got -0.1"),
        (lambda: optim.adam(betas=(0.9, lambda c: 1.0)), ValueError,
         r"`betas\[1\]\(count\)` must be a finite number in \[0, 1\)"),
        (lambda: optim.adamw(lambda c: torch.ones(2)), ValueError, r"adamw: `lr\(count\)` must be a number or a one-"),
        (lambda: optim.clip_by_global_norm(lambda c: "1"), TypeError, r"`max_norm\(count\)` must be a Python number"),
    ],
)
def test_bad_input_raises_naming_the_argument(build: Callable[[], Any], exc: type[Exception], message: str) -> None:
    with pytest.raises(exc, match=message):
        build()


#: Every Python-number argument of every schedule: (build with one value, the argument's name).
SCHEDULE_NUMBERS: list[tuple[Callable[[Any], Any], str]] = [
    (lambda v: schedules.constant(v), "value"),
    (lambda v: schedules.cosine_decay(v, 10), "init_value"),
    (lambda v: schedules.cosine_decay(0.1, 10, alpha=v), "alpha"),
    (lambda v: schedules.linear(v, 0.0, 10), "init_value"),
    (lambda v: schedules.linear(0.1, v, 10), "end_value"),
    (lambda v: schedules.warmup_cosine_decay(v, 2, 10), "peak_value"),
    (lambda v: schedules.warmup_cosine_decay(0.1, 2, 10, init_value=v), "init_value"),
    (lambda v: schedules.warmup_cosine_decay(0.1, 2, 10, end_value=v), "end_value"),
]
SCHEDULE_COUNTS: list[tuple[Callable[[Any], Any], str]] = [
    (lambda n: schedules.cosine_decay(0.1, n), "decay_steps"),
    (lambda n: schedules.cosine_decay(0.1, 10, every=n), "every"),
    (lambda n: schedules.linear(0.1, 0.0, n), "transition_steps"),
    (lambda n: schedules.warmup_cosine_decay(0.1, n, 2**63 - 1), "warmup_steps"),
    (lambda n: schedules.join([schedules.constant(1.0)] * 2, [n]), r"boundaries\[0\]"),
]


@pytest.mark.parametrize("build, name", SCHEDULE_NUMBERS)
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, 1e300])
def test_non_finite_python_number_is_refused_when_built(build: Callable[[Any], Any], name: str, value: float) -> None:
    with pytest.raises(ValueError, match=rf"^\w+: `{name}` must be a finite number.*got {re.escape(repr(value))}$"):
        build(value)


@pytest.mark.parametrize("build, name", SCHEDULE_COUNTS)
@pytest.mark.parametrize("value, exc", [(1.5, TypeError), (True, TypeError), (2**63, ValueError)])
def test_count_that_is_no_int64_is_refused_not_truncated(build: Callable[[Any], Any], name: str, value: Any,
                                                         exc: type[Exception]) -> None:
    with pytest.raises(exc, match=rf"^\w+: `{name}` must be an int"):
        build(value)


def test_tensor_arguments_are_not_range_checked() -> None:
    schedules.cosine_decay(torch.tensor(-1.0), torch.tensor(0), alpha=torch.tensor(2.0), every=torch.tensor(1))
    schedules.warmup_cosine_decay(0.1, torch.tensor(10), 10)
    optim.sgd(schedules.constant(torch.tensor(-1.0)))  # a schedule's tensor values, as tensors, are not checked


def test_a_scheduled_python_number_is_checked_at_every_update() -> None:
    opt = optim.sgd(lambda count: 0.1 if int(count) < 2 else -0.1)
    params = {"w": torch.ones(2)}
    state = opt.init(params)
    for _ in range(2):
        _, state = opt.update(params, state, params)
    with pytest.raises(ValueError, match=r"sgd: `lr\(count\)` must be a finite number >= 0, got -0.1"):
        opt.update(params, state, params)
