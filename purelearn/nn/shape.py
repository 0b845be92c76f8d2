"""Layers that only reshape: :class:`Flatten` and :class:`Identity`."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..layer import Layer, tensor_input

__all__ = ["Flatten", "Identity"]


@dataclass(frozen=True)
class Flatten(Layer):
    """``torch.nn.Flatten`` (default ``start_dim=1``: keeps the batch axis)."""

    start_dim: int = 1
    end_dim: int = -1

    def apply(self, params: None, state: None, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        x = tensor_input(x, "Flatten")
        return torch.flatten(x, self.start_dim, self.end_dim), None


@dataclass(frozen=True)
class Identity(Layer):
    """Returns its input."""

    def apply(self, params: None, state: None, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return x, None
