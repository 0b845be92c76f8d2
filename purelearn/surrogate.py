"""Surrogate spike functions: Heaviside forward, smooth derivative backward.

A surrogate ``sg`` maps a membrane margin ``x = h - v_threshold`` to spikes::

    forward:   sg(x)  = Θ(x) = 1 if x >= 0 else 0        (exactly 0 or 1, in x's dtype)
    backward:  ∂sg/∂x = sg.derivative(x)                  (a smooth bump around 0)

Implementation: ``Θ(x) + (x - x.detach()) * derivative(x).detach()``. The second term is exactly 0
in value and carries the surrogate derivative in autograd, so it needs no custom
``autograd.Function``: ``torch.func.grad``, ``vmap`` (also over a batched ``alpha``) and
``torch.compile`` all see through it, and the derivative is multiplied into the incoming
gradient last (``g * sg'``), the order of SpikingJelly's float32 CPU kernel.

The derivatives equal ``spikingjelly.activation_based.surrogate``:

============================  =============================================  ==============
class                         derivative                                      default alpha
============================  =============================================  ==============
``Sigmoid``                   α·σ(αx)·(1 − σ(αx))                             4.0
``ATan``                      (α/2) / (1 + (π/2·α·x)²)                        2.0
``PiecewiseQuadratic``        max(0, α − α²·|x|)  (the "triangle")           1.0
``Rect``                      α · 1[|x| < 1/(2α)]                             1.0
============================  =============================================  ==============

Example::

    >>> import torch
    >>> from purelearn import surrogate
    >>> sg = surrogate.Sigmoid(alpha=4.0)
    >>> x = torch.tensor([-0.5, 0.0, 0.3], requires_grad=True)
    >>> sg(x)
    tensor([0., 1., 1.], grad_fn=<AddBackward0>)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from . import validate

__all__ = [
    "Surrogate",
    "Sigmoid",
    "ATan",
    "PiecewiseQuadratic",
    "Rect",
    "heaviside",
    "get",
    "NAMES",
]

Alpha = float | torch.Tensor


def heaviside(x: torch.Tensor) -> torch.Tensor:
    """Θ(x): 1 where ``x >= 0``, else 0, in ``x``'s dtype (no gradient)."""
    return (x >= 0).to(x.dtype)


def _check_alpha(cls_name: str, alpha: Alpha) -> None:
    validate.number(cls_name, "alpha", alpha, low=0.0, low_open=True)


@dataclass(frozen=True)
class Surrogate:
    """Base class: subclasses define :meth:`derivative`. Calling the object gives spikes."""

    alpha: Alpha = 1.0

    def __post_init__(self) -> None:
        _check_alpha(type(self).__name__, self.alpha)

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        """The surrogate derivative ∂Θ/∂x used in the backward pass (same shape as ``x``)."""
        raise NotImplementedError

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Spikes Θ(x), differentiable with :meth:`derivative` as their gradient."""
        spike = heaviside(x)
        if not torch.is_grad_enabled():
            return spike
        return spike + (x - x.detach()) * self.derivative(x.detach())

    def with_alpha(self, alpha: Alpha) -> Surrogate:
        """The same surrogate with another slope (``alpha`` may be a batched tensor)."""
        return type(self)(alpha=alpha)


@dataclass(frozen=True)
class Sigmoid(Surrogate):
    """SpikingJelly's default: derivative ``α·σ(αx)·(1 − σ(αx))``, computed as ``(1 − s)·s·α``."""

    alpha: Alpha = 4.0

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(x * self.alpha)
        return (1.0 - s) * s * self.alpha


@dataclass(frozen=True)
class ATan(Surrogate):
    """Derivative ``(α/2) / (1 + (π/2·α·x)²)``."""

    alpha: Alpha = 2.0

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        a = self.alpha / 2
        ax = math.pi * a * x
        return a / (1 + ax * ax)


@dataclass(frozen=True)
class PiecewiseQuadratic(Surrogate):
    """Derivative ``α − α²·|x|`` for ``|x| <= 1/α``, else 0."""

    alpha: Alpha = 1.0

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        x_abs = x.abs()
        grad = -(self.alpha**2) * x_abs + self.alpha
        return torch.where(x_abs > 1 / self.alpha, torch.zeros_like(grad), grad)


@dataclass(frozen=True)
class Rect(Surrogate):
    """Rectangular (straight-through) window: derivative ``α`` for ``|x| < 1/(2α)``, else 0."""

    alpha: Alpha = 1.0

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return self.alpha * (x.abs() < 0.5 / self.alpha).to(x.dtype)


NAMES: dict[str, type[Surrogate]] = {
    "sigmoid": Sigmoid,
    "atan": ATan,
    "piecewise_quadratic": PiecewiseQuadratic,
    "rect": Rect,
    # The triangle "pseudo-derivative" of Bellec et al. / Esser et al., α·max(0, 1 − α|x|), is
    # exactly PiecewiseQuadratic's derivative; the name is kept for readers of that literature.
    "triangle": PiecewiseQuadratic,
}


def get(spec: str | Surrogate, alpha: Alpha | None = None) -> Surrogate:
    """Resolve a surrogate by name (``"sigmoid"``, ``"atan"``, ...) or pass an instance through.

    ``alpha`` (optional) overrides the slope. Unknown names raise ``ValueError`` listing the known ones.
    """
    if isinstance(spec, Surrogate):
        return spec if alpha is None else spec.with_alpha(alpha)
    if isinstance(spec, str):
        key = spec.lower().replace("-", "_")
        if key not in NAMES:
            raise ValueError(f"unknown surrogate {spec!r}; expected one of {sorted(NAMES)}")
        cls = NAMES[key]
        return cls() if alpha is None else cls(alpha=alpha)
    raise TypeError(f"`surrogate` must be a name or a purelearn.surrogate.Surrogate, got {type(spec).__name__}")
