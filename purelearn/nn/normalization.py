r"""Normalisation: :class:`BatchNorm1d` / :class:`BatchNorm2d` with their running statistics in the
state, and the scaled weight standardisation of OTTT's VGG (:class:`WSConv2d`, :class:`WSLinear`,
:class:`Scale`).

**BatchNorm** (SpikingJelly's single-step ``layer.BatchNorm1d/2d``, i.e. ``torch.nn.BatchNorm``
applied at every time step). Per channel c, over the batch and spatial positions (n values)::

    training:  μ = mean(x),  σ² = mean((x − μ)²)                       (biased, for normalising)
               y = (x − μ) / √(σ² + eps) · weight + bias
               m = momentum, or 1 / num_batches_tracked (momentum=None: cumulative average)
               num_batches_tracked ← num_batches_tracked + 1            (before m is read)
               running_mean ← (1 − m)·running_mean + m·μ
               running_var  ← (1 − m)·running_var  + m·σ²·n/(n − 1)     (unbiased, for the estimate)
    inference: y = (x − running_mean) / √(running_var + eps) · weight + bias;   state unchanged

``weight`` / ``bias`` are params (``affine=True``); ``running_mean``, ``running_var`` and
``num_batches_tracked`` are the state (:class:`BatchNormState`), returned anew (never written in
place) and detached. The statistics persist across sequences: ``reset_state`` keeps them and
``init_state`` gives fresh ones (zeros, ones, 0). The switch is the ``training`` field:
``layer.inference()`` / ``model.inference()`` give the evaluation layer.

**Scaled weight standardisation** (Qiao et al. 2019; Brock et al. 2021; OTTT's VGG, Xiao et al. 2022)::

    Ŵ = gain · (W − mean(W)) / √(var(W) · fan_in + eps)      per output unit, var unbiased
    y = conv(x, Ŵ) + b   (WSConv2d),      y = x Ŵᵀ + b   (WSLinear)

``gain`` (ones, shape [out, 1, 1, 1] / [out, 1]) is a parameter unless ``gain=False``; eps 1e-4 —
the OTTT authors' ``ScaledWSConv2d`` and SpikingJelly's ``layer.WSConv2d`` / ``WSLinear``. The fixed
scale of their VGG is a separate layer after every neuron, ``Scale(2.74)``:
``[WSConv2d, OTTTLIF, Scale(2.74), ...]``.

Example::

    >>> import torch
    >>> from purelearn import nn, neurons
    >>> model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), neurons.LIF())
    >>> params, states = model.init(torch.Generator().manual_seed(0), torch.rand(3, 2, 6, 6))
    >>> _, states = model.apply(params, states, torch.rand(3, 2, 6, 6))
    >>> states["1"].num_batches_tracked.item(), model.reset_states(states)["1"] is states["1"]
    (1, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar, NamedTuple

import torch

from .. import validate
from ..layer import Layer, Params, check_params, positive_int, tensor_input
from .linear import Conv2d, Linear

__all__ = ["BatchNormState", "BatchNorm", "BatchNorm1d", "BatchNorm2d", "WSConv2d", "WSLinear", "Scale",
           "standardize_weight"]


def _positive_eps(eps: Any, owner: str) -> None:
    validate.number(owner, "eps", eps, low=0.0, low_open=True, tensors=False, kinds="a Python number")


# ----------------------------------------------------------------------------- BatchNorm


class BatchNormState(NamedTuple):
    """BatchNorm's state: ``running_mean`` and ``running_var`` [C] (the data's dtype), and
    ``num_batches_tracked`` (int64, 0-d) — torch's buffers of the same names."""

    running_mean: torch.Tensor
    running_var: torch.Tensor
    num_batches_tracked: torch.Tensor


@dataclass(frozen=True)
class BatchNorm(Layer):
    """Batch normalisation per time step (see the module docstring); subclasses fix the input ranks."""

    num_features: int
    eps: float = 1e-5
    momentum: float | None = 0.1
    affine: bool = True
    training: bool = True
    has_state = True
    ranks: ClassVar[tuple[int, ...]] = ()  # the input ranks, set by each subclass
    layout: ClassVar[str] = ""

    def __post_init__(self) -> None:
        owner = type(self).__name__
        positive_int(self.num_features, "num_features", owner)
        _positive_eps(self.eps, owner)
        if self.momentum is not None:
            validate.number(owner, "momentum", self.momentum, low=0.0, high=1.0, tensors=False,
                            kinds="a Python number in [0, 1] or None (the cumulative average)", alternative="or None")
        for name in ("affine", "training"):
            validate.flag(owner, name, getattr(self, name))

    @property
    def has_params(self) -> bool:  # type: ignore[override]
        return self.affine

    def describe(self) -> str:
        return f"{type(self).__name__}({self.num_features})"

    def param_shapes(self) -> dict[str, tuple[int, ...]] | None:
        return {"weight": (self.num_features,), "bias": (self.num_features,)} if self.affine else None

    def _check_x(self, x: Any) -> torch.Tensor:
        x = tensor_input(x, type(self).__name__)
        if x.dim() not in self.ranks or x.shape[1] != self.num_features:
            raise ValueError(f"{self.describe()}: input `x` must have shape {self.layout.format(C=self.num_features)}, "
                             f"got {tuple(x.shape)}")
        return x

    def init(self, generator: torch.Generator | None, x: torch.Tensor) -> tuple[Params | None, BatchNormState]:
        """``weight`` ones and ``bias`` zeros (torch's init; ``generator`` is not used), fresh statistics."""
        x = self._check_x(x)
        params = None
        if self.affine:
            params = {"weight": x.new_ones(self.num_features), "bias": x.new_zeros(self.num_features)}
        return params, self.init_state(x)

    def init_state(self, x: torch.Tensor) -> BatchNormState:
        """Fresh statistics (``running_mean`` 0, ``running_var`` 1, none tracked) in ``x``'s dtype and device."""
        x = tensor_input(x, type(self).__name__)
        return BatchNormState(x.new_zeros(self.num_features), x.new_ones(self.num_features),
                              torch.zeros((), dtype=torch.int64, device=x.device))

    def restore_state(self, saved: BatchNormState, state: BatchNormState) -> BatchNormState:
        """The replay's statistics: they are not a memory of the sequence (SpikingJelly's FPTT keeps
        the BatchNorm buffers its second forward updated)."""
        return state

    def inference(self) -> BatchNorm:
        """This layer normalising with the running statistics, which it leaves unchanged."""
        return replace(self, training=False)

    def _check_state(self, state: Any, x: torch.Tensor) -> BatchNormState:
        if not isinstance(state, BatchNormState):
            raise TypeError(f"{self.describe()}: `state` must be a BatchNormState, got {type(state).__name__}")
        for name in ("running_mean", "running_var"):
            leaf = getattr(state, name)
            if tuple(leaf.shape) != (self.num_features,):
                raise ValueError(f"{self.describe()}: state `{name}` must have shape ({self.num_features},), "
                                 f"got {tuple(leaf.shape)}")
            if leaf.dtype != x.dtype or leaf.device != x.device:
                raise TypeError(f"{self.describe()}: state `{name}` is {leaf.dtype} on {leaf.device} but the input "
                                f"x is {x.dtype} on {x.device}; states follow the data")
        return state

    def apply(self, params: Params | None, state: BatchNormState, x: torch.Tensor
              ) -> tuple[torch.Tensor, BatchNormState]:
        x = self._check_x(x)
        if self.affine:
            check_params(self, params, {"weight": (self.num_features,), "bias": (self.num_features,)}, x)
        state = self._check_state(state, x)
        dims = (0, *range(2, x.dim()))
        per_channel = (self.num_features, *([1] * (x.dim() - 2)))
        if self.training:
            n = x.numel() // self.num_features
            if n <= 1:
                raise ValueError(f"{self.describe()}: training needs more than one value per channel, got input "
                                 f"shape {tuple(x.shape)}; use a larger batch, or model.inference()")
            var, mean = torch.var_mean(x, dim=dims, correction=0)
            num_batches_tracked = state.num_batches_tracked + 1
            m = 1.0 / num_batches_tracked.to(x.dtype) if self.momentum is None else self.momentum
            running_mean = (1.0 - m) * state.running_mean + m * mean.detach()
            running_var = (1.0 - m) * state.running_var + m * (var.detach() * (n / (n - 1)))
            state = BatchNormState(running_mean, running_var, num_batches_tracked)
        else:
            mean, var = state.running_mean, state.running_var
        y = (x - mean.reshape(per_channel)) / torch.sqrt(var.reshape(per_channel) + self.eps)
        if self.affine:
            y = y * params["weight"].reshape(per_channel) + params["bias"].reshape(per_channel)
        return y, state


@dataclass(frozen=True)
class BatchNorm1d(BatchNorm):
    """BatchNorm over x [N, C] or [N, C, L] (statistics per channel C); ``torch.nn.BatchNorm1d``."""

    ranks = (2, 3)
    layout = "[N, {C}] or [N, {C}, L]"


@dataclass(frozen=True)
class BatchNorm2d(BatchNorm):
    """BatchNorm over x [N, C, H, W] (statistics per channel C); ``torch.nn.BatchNorm2d``."""

    ranks = (4,)
    layout = "[N, {C}, H, W]"


# ----------------------------------------------------------------------------- weight standardisation


def standardize_weight(weight: torch.Tensor, gain: torch.Tensor | None, eps: float) -> torch.Tensor:
    """``Ŵ = gain · (W − mean(W)) / √(var(W)·fan_in + eps)``, mean and unbiased var over each output
    unit's fan-in (every dimension but the first)."""
    dims = tuple(range(1, weight.dim()))
    fan_in = math.prod(weight.shape[1:])
    mean = torch.mean(weight, dim=dims, keepdim=True)
    var = torch.var(weight, dim=dims, keepdim=True)
    w_hat = (weight - mean) / ((var * fan_in + eps) ** 0.5)
    return w_hat if gain is None else w_hat * gain


class _Standardised:
    """What WSConv2d and WSLinear add to their plain layer (the next class in their MRO): the ``gain``
    parameter, eps, an init that draws weight and bias as the plain layer does, and ``Ŵ``."""

    gain: bool
    eps: float

    def __post_init__(self) -> None:
        super().__post_init__()  # type: ignore[misc]
        _positive_eps(self.eps, type(self).__name__)

    def _base(self) -> type:
        mro = type(self).__mro__
        return mro[mro.index(_Standardised) + 1]  # Conv2d for WSConv2d, Linear for WSLinear

    def describe(self) -> str:
        return f"WS{self._base().describe(self)}"

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = self._base().param_shapes(self)
        if self.gain:
            out, *rest = shapes["weight"]
            shapes["gain"] = (out, *(1 for _ in rest))
        return shapes

    def init(self, generator: torch.Generator | None, x: torch.Tensor) -> tuple[Params, None]:
        """``weight`` and ``bias`` as the plain layer draws them, ``gain`` ones."""
        base = self._base()
        params, _ = base(**{f.name: getattr(self, f.name) for f in fields(base)}).init(generator, x)
        if self.gain:
            params["gain"] = x.new_ones(self.param_shapes()["gain"])
        return params, None

    def effective_weight(self, params: Params) -> torch.Tensor:
        return standardize_weight(params["weight"], params.get("gain"), self.eps)


@dataclass(frozen=True)
class WSConv2d(_Standardised, Conv2d):
    """:class:`~purelearn.nn.Conv2d` with a scaled-standardised kernel (module docstring); params
    ``weight``, ``bias``, ``gain`` [out, 1, 1, 1]. The OTTT authors' ``ScaledWSConv2d``."""

    gain: bool = True
    eps: float = 1e-4


@dataclass(frozen=True)
class WSLinear(_Standardised, Linear):
    """:class:`~purelearn.nn.Linear` with a scaled-standardised weight (module docstring); params
    ``weight``, ``bias``, ``gain`` [out, 1]. The OTTT authors' ``ScaledWSLinear``."""

    gain: bool = True
    eps: float = 1e-4


@dataclass(frozen=True)
class Scale(Layer):
    """``y = scale · x``, parameter-free: the fixed scale after each neuron of OTTT's VGG (2.74).

    Between an OTTT neuron and the next parametric layer it scales the spike and the trace alike
    (as the authors' ``Scale`` scales their concatenated spike and rate)."""

    scale: float

    def __post_init__(self) -> None:
        validate.number("Scale", "scale", self.scale, tensors=False, kinds="a Python number")

    def apply(self, params: None, state: None, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return tensor_input(x, "Scale") * self.scale, None
