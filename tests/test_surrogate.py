"""Specification of ``purelearn.surrogate``: exact Heaviside forward, SpikingJelly's derivatives backward."""

from __future__ import annotations

import doctest
import math
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from purelearn import surrogate

NAMES = ["Sigmoid", "ATan", "PiecewiseQuadratic", "Rect"]
ALPHAS = [0.5, 1.0, 2.0, 4.0, 7.3]


def probe_points(alpha: float, dtype: torch.dtype) -> torch.Tensor:
    """Margins covering the bump, its edges for ``alpha`` (window ends of Rect / triangle) and zeros."""
    edges = [0.5 / alpha, 1.0 / alpha]
    return torch.cat([
        torch.linspace(-3.0, 3.0, 601, dtype=dtype),
        torch.tensor([0.0, -0.0, *edges, *(-e for e in edges)], dtype=dtype),
    ])


def test_module_docstring_examples_run() -> None:
    result = doctest.testmod(surrogate, verbose=False)
    assert result.attempted > 0 and result.failed == 0


# --------------------------------------------------------------------------------------------------
# Forward: an exact Heaviside step
# --------------------------------------------------------------------------------------------------


@given(
    data=st.data(),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    name=st.sampled_from(NAMES),
    alpha=st.floats(0.1, 20.0),
    requires_grad=st.booleans(),
)
def test_forward_is_exactly_0_or_1_in_the_input_dtype(data: st.DataObject, dtype: torch.dtype, name: str,
                                                      alpha: float, requires_grad: bool) -> None:
    width = 32 if dtype == torch.float32 else 64
    values = data.draw(st.lists(
        st.one_of(st.just(0.0), st.just(-0.0), st.floats(allow_nan=False, allow_infinity=False, width=width)),
        min_size=1, max_size=50,
    ))
    x = torch.tensor(values, dtype=dtype, requires_grad=requires_grad)
    spike = getattr(surrogate, name)(alpha=alpha)(x)
    assert spike.dtype == dtype
    assert torch.equal(spike.detach(), (x.detach() >= 0).to(dtype))


def test_heaviside_at_zero_is_one() -> None:
    """SpikingJelly's convention: a margin of exactly 0 fires (including -0.0)."""
    x = torch.tensor([-1e-30, -0.0, 0.0, 1e-30])
    assert surrogate.heaviside(x).tolist() == [0.0, 1.0, 1.0, 1.0]
    assert surrogate.Sigmoid()(x.requires_grad_()).tolist() == [0.0, 1.0, 1.0, 1.0]


def test_forward_without_grad_mode_builds_no_graph() -> None:
    x = torch.randn(5, requires_grad=True)
    with torch.no_grad():
        spike = surrogate.Sigmoid()(x)
    assert spike.grad_fn is None and not spike.requires_grad


# --------------------------------------------------------------------------------------------------
# Backward: SpikingJelly's surrogate derivatives
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_default_alpha_equals_spikingjelly(sj: SimpleNamespace, name: str) -> None:
    assert getattr(surrogate, name)().alpha == getattr(sj.surrogate, name)().alpha


@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("name", NAMES)
def test_gradient_matches_spikingjelly(sj: SimpleNamespace, name: str, alpha: float, dtype: torch.dtype) -> None:
    x = probe_points(alpha, dtype)
    upstream = torch.rand(x.shape, generator=torch.Generator().manual_seed(0), dtype=dtype) + 0.5
    ours_x, theirs_x = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours = getattr(surrogate, name)(alpha=alpha)(ours_x)
    theirs = getattr(sj.surrogate, name)(alpha=alpha)(theirs_x)
    ours.backward(upstream)
    theirs.backward(upstream)
    assert torch.equal(ours.detach(), theirs.detach())
    torch.testing.assert_close(ours_x.grad, theirs_x.grad, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_derivative_method_is_the_autograd_gradient(name: str) -> None:
    sg = getattr(surrogate, name)(alpha=1.7)
    x = probe_points(1.7, torch.float64).requires_grad_()
    sg(x).sum().backward()
    assert torch.equal(x.grad, sg.derivative(x.detach()))


def test_derivative_formulas_at_zero() -> None:
    """The peak heights of the table in the module docstring, for alpha = 3."""
    zero = torch.zeros((), dtype=torch.float64)
    assert surrogate.Sigmoid(3.0).derivative(zero).item() == pytest.approx(3.0 / 4)
    assert surrogate.ATan(3.0).derivative(zero).item() == pytest.approx(3.0 / 2)
    assert surrogate.PiecewiseQuadratic(3.0).derivative(zero).item() == pytest.approx(3.0)
    assert surrogate.Rect(3.0).derivative(zero).item() == pytest.approx(3.0)


def test_triangle_is_piecewise_quadratic() -> None:
    assert surrogate.get("triangle", alpha=2.5) == surrogate.PiecewiseQuadratic(alpha=2.5)


# --------------------------------------------------------------------------------------------------
# torch.func transforms and torch.compile
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_torch_func_grad_equals_derivative(name: str) -> None:
    sg = getattr(surrogate, name)(alpha=2.0)
    x = probe_points(2.0, torch.float64)
    weight = torch.linspace(0.5, 1.5, x.numel(), dtype=torch.float64)
    got = torch.func.grad(lambda x: (sg(x) * weight).sum())(x)
    torch.testing.assert_close(got, weight * sg.derivative(x), rtol=0, atol=1e-15)


@pytest.mark.parametrize("name", NAMES)
def test_vmap_over_batched_alpha_equals_loop(name: str) -> None:
    cls = getattr(surrogate, name)
    alphas = torch.tensor([0.5, 1.0, 3.0, 8.0], dtype=torch.float64)
    x = probe_points(1.0, torch.float64)

    def spikes_and_grad(alpha: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
        sg = cls(alpha=alpha)
        return sg(x), torch.func.grad(lambda x: sg(x).sum())(x)

    batched_spikes, batched_grads = torch.func.vmap(spikes_and_grad)(alphas)
    for i, alpha in enumerate(alphas.tolist()):
        spikes, grads = spikes_and_grad(alpha)
        assert torch.equal(batched_spikes[i], spikes)
        torch.testing.assert_close(batched_grads[i], grads, rtol=0, atol=1e-15)


@pytest.mark.slow
def test_compiled_fullgraph_equals_eager(compile_backend: str) -> None:
    surrogates = [getattr(surrogate, name)(alpha=2.0) for name in NAMES]

    def f(x: torch.Tensor) -> torch.Tensor:
        return torch.stack([sg(x) for sg in surrogates]) * torch.arange(1.0, 5.0)[:, None]

    compiled = torch.compile(f, backend=compile_backend, fullgraph=True)
    x = probe_points(2.0, torch.float32)
    x_eager, x_compiled = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_compiled = compiled(x_compiled)
    y_compiled.sum().backward()
    y_eager = f(x_eager)
    y_eager.sum().backward()
    assert torch.equal(y_compiled.detach(), y_eager.detach())
    torch.testing.assert_close(x_compiled.grad, x_eager.grad, rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------------------------------
# Lookup by name and validation
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "cls"),
    [("sigmoid", surrogate.Sigmoid), ("ATan", surrogate.ATan),
     ("piecewise-quadratic", surrogate.PiecewiseQuadratic), ("rect", surrogate.Rect)],
)
def test_get_resolves_names_case_and_dash_insensitively(spec: str, cls: type) -> None:
    assert surrogate.get(spec) == cls()
    assert surrogate.get(spec, alpha=3.0) == cls(alpha=3.0)


def test_get_passes_instances_through_and_overrides_alpha() -> None:
    sg = surrogate.ATan(alpha=5.0)
    assert surrogate.get(sg) is sg
    assert surrogate.get(sg, alpha=1.5) == surrogate.ATan(alpha=1.5)


def test_get_unknown_name_raises_value_error_listing_the_names() -> None:
    with pytest.raises(ValueError, match="nope") as info:
        surrogate.get("nope")
    for name in surrogate.NAMES:
        assert name in str(info.value)


def test_get_non_string_raises_type_error() -> None:
    with pytest.raises(TypeError, match="surrogate"):
        surrogate.get(3)  # type: ignore[arg-type]


@pytest.mark.parametrize("alpha", [0.0, -1.0, -0.0, math.inf, math.nan])
@pytest.mark.parametrize("name", NAMES)
def test_alpha_not_positive_and_finite_raises_value_error_naming_alpha(name: str, alpha: float) -> None:
    with pytest.raises(ValueError, match="`alpha`"):
        getattr(surrogate, name)(alpha=alpha)
    with pytest.raises(ValueError, match="`alpha`"):
        surrogate.get(name.lower() if name != "PiecewiseQuadratic" else "piecewise_quadratic", alpha=alpha)


@pytest.mark.parametrize("alpha", [True, "2", None])
def test_alpha_of_wrong_type_raises_type_error_naming_alpha(alpha: object) -> None:
    with pytest.raises(TypeError, match="`alpha`"):
        surrogate.Sigmoid(alpha=alpha)  # type: ignore[arg-type]


def test_tensor_alpha_is_not_range_checked() -> None:
    """Tensors are left to the math (they may be batched under vmap)."""
    assert isinstance(surrogate.Sigmoid(alpha=torch.tensor(-1.0)).alpha, torch.Tensor)
