"""Layers with weights: :class:`Linear` and :class:`Conv2d` (``torch.nn`` semantics and init)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..layer import (
    Layer,
    Params,
    as_pair,
    check_params,
    fan_in_bound,
    features_input,
    positive_int,
    tensor_input,
    uniform,
)

__all__ = ["Linear", "Conv2d"]


@dataclass(frozen=True)
class Linear(Layer):
    """``y = x Wᵀ + b``. Params ``weight`` [out, in], ``bias`` [out]; x [..., in] -> y [..., out].

    Initialised like ``torch.nn.Linear``: U(−1/√in, 1/√in) for weight and bias.
    """

    in_features: int
    out_features: int
    bias: bool = True
    has_params = True

    def __post_init__(self) -> None:
        positive_int(self.in_features, "in_features", "Linear")
        positive_int(self.out_features, "out_features", "Linear")

    def describe(self) -> str:
        return f"Linear({self.in_features}, {self.out_features})"

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = {"weight": (self.out_features, self.in_features)}
        if self.bias:
            shapes["bias"] = (self.out_features,)
        return shapes

    def init(self, generator: torch.Generator | None, x: torch.Tensor) -> tuple[Params, None]:
        self._check_x(x)
        bound = fan_in_bound(self.in_features)
        return {k: uniform(generator, s, bound, x) for k, s in self.param_shapes().items()}, None

    def _check_x(self, x: Any) -> torch.Tensor:
        return features_input(x, self)

    def apply(self, params: Params, state: None, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        x = self._check_x(x)
        check_params(self, params, self.param_shapes(), x)
        return F.linear(x, self.effective_weight(params), params.get("bias")), None

    def effective_weight(self, params: Params) -> torch.Tensor:
        """The weight the layer applies: ``params["weight"]`` (standardised in ``WSLinear``)."""
        return params["weight"]


@dataclass(frozen=True)
class Conv2d(Layer):
    """2-d convolution, ``torch.nn.Conv2d`` semantics (zero padding). x [N, C, H, W].

    Params ``weight`` [out, in/groups, kh, kw], ``bias`` [out]; initialised like torch.
    """

    in_channels: int
    out_channels: int
    kernel_size: int | tuple[int, int]
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int] = 0
    dilation: int | tuple[int, int] = 1
    groups: int = 1
    bias: bool = True
    has_params = True

    def __post_init__(self) -> None:
        positive_int(self.in_channels, "in_channels", "Conv2d")
        positive_int(self.out_channels, "out_channels", "Conv2d")
        positive_int(self.groups, "groups", "Conv2d")
        for name in ("kernel_size", "stride", "padding", "dilation"):
            object.__setattr__(self, name, as_pair(getattr(self, name), name, "Conv2d"))
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(
                f"Conv2d: `groups`={self.groups} must divide in_channels={self.in_channels} "
                f"and out_channels={self.out_channels}"
            )

    def describe(self) -> str:
        return f"Conv2d({self.in_channels}, {self.out_channels})"

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = {"weight": (self.out_channels, self.in_channels // self.groups, *self.kernel_size)}
        if self.bias:
            shapes["bias"] = (self.out_channels,)
        return shapes

    def _check_x(self, x: Any) -> torch.Tensor:
        x = tensor_input(x, "Conv2d")
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"Conv2d({self.in_channels}, {self.out_channels}): input `x` must have shape "
                f"[N, {self.in_channels}, H, W], got {tuple(x.shape)}"
            )
        return x

    def init(self, generator: torch.Generator | None, x: torch.Tensor) -> tuple[Params, None]:
        self._check_x(x)
        bound = fan_in_bound((self.in_channels // self.groups) * self.kernel_size[0] * self.kernel_size[1])
        return {k: uniform(generator, s, bound, x) for k, s in self.param_shapes().items()}, None

    def apply(self, params: Params, state: None, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        x = self._check_x(x)
        check_params(self, params, self.param_shapes(), x)
        y = F.conv2d(x, self.effective_weight(params), params.get("bias"), self.stride, self.padding,
                     self.dilation, self.groups)
        return y, None

    def effective_weight(self, params: Params) -> torch.Tensor:
        """The kernel the layer applies: ``params["weight"]`` (standardised in ``WSConv2d``)."""
        return params["weight"]
