"""2-d pooling: one :class:`Pool2d`, with :class:`AvgPool2d` and :class:`MaxPool2d` choosing its function."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from ..layer import Layer, as_pair, tensor_input

__all__ = ["Pool2d", "AvgPool2d", "MaxPool2d"]


@dataclass(frozen=True)
class Pool2d(Layer):
    """Pooling over [N, C, H, W] with ``pool(x, kernel_size, stride, padding)``; ``stride`` defaults to
    ``kernel_size`` (as in torch). Subclasses set ``pool``."""

    kernel_size: int | tuple[int, int]
    stride: int | tuple[int, int] | None = None
    padding: int | tuple[int, int] = 0
    pool: ClassVar[Callable[..., torch.Tensor]]

    def __post_init__(self) -> None:
        name = type(self).__name__
        object.__setattr__(self, "kernel_size", as_pair(self.kernel_size, "kernel_size", name))
        stride = self.kernel_size if self.stride is None else self.stride
        object.__setattr__(self, "stride", as_pair(stride, "stride", name))
        object.__setattr__(self, "padding", as_pair(self.padding, "padding", name))

    def apply(self, params: None, state: None, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        name = type(self).__name__
        x = tensor_input(x, name)
        if x.dim() != 4:
            raise ValueError(f"{name}: input `x` must have shape [N, C, H, W], got {tuple(x.shape)}")
        return self.pool(x, self.kernel_size, self.stride, self.padding), None


@dataclass(frozen=True)
class AvgPool2d(Pool2d):
    """``torch.nn.AvgPool2d`` (``stride`` defaults to ``kernel_size``). x [N, C, H, W]."""

    pool = staticmethod(F.avg_pool2d)


@dataclass(frozen=True)
class MaxPool2d(Pool2d):
    """``torch.nn.MaxPool2d`` (``stride`` defaults to ``kernel_size``). x [N, C, H, W]."""

    pool = staticmethod(F.max_pool2d)
