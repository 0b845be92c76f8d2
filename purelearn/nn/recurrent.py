"""Recurrence around a neuron: :class:`Recurrent` (SpikingJelly ``LinearRecurrentContainer``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from ..layer import Layer, Params, features_input, positive_int
from ..neurons import Neuron
from .linear import Linear

__all__ = ["Recurrent", "RecurrentState"]


class RecurrentState(NamedTuple):
    """State of :class:`Recurrent`: the previous output ``y`` and the wrapped neuron's state."""

    y: torch.Tensor
    neuron: Any


@dataclass(frozen=True)
class Recurrent(Layer):
    """Linear recurrence around a neuron (SpikingJelly ``LinearRecurrentContainer``)::

        i_t = [x_t, y_{t−1}] Wᵀ + b,   y_t = neuron(i_t),   y_{−1} = 0

    Params ``{"rc": {"weight": [out, in + out], "bias": [out]}}`` (plus ``"neuron"`` if the neuron
    has parameters). x [N, in] -> y [N, out].
    """

    neuron: Neuron
    in_features: int
    out_features: int
    bias: bool = True
    has_params = True
    has_state = True

    def __post_init__(self) -> None:
        if not isinstance(self.neuron, Neuron):
            raise TypeError(f"Recurrent: `neuron` must be a purelearn neuron, got {type(self.neuron).__name__}")
        positive_int(self.in_features, "in_features", "Recurrent")
        positive_int(self.out_features, "out_features", "Recurrent")

    @property
    def _rc(self) -> Linear:
        return Linear(self.in_features + self.out_features, self.out_features, self.bias)

    def _check_x(self, x: Any) -> torch.Tensor:
        return features_input(x, self)

    def param_shapes(self) -> dict[str, Any]:
        shapes: dict[str, Any] = {"rc": self._rc.param_shapes()}
        if self.neuron.has_params:
            shapes["neuron"] = self.neuron.param_shapes()
        return shapes

    def _y0(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros((*x.shape[:-1], self.out_features), dtype=x.dtype, device=x.device)

    def init(self, generator: torch.Generator | None, x: torch.Tensor) -> tuple[Params, RecurrentState]:
        x = self._check_x(x)
        rc_params, _ = self._rc.init(generator, torch.cat([x, self._y0(x)], dim=-1))
        neuron_params, _ = self.neuron.init(generator, self._y0(x))
        params = {"rc": rc_params}
        if neuron_params is not None:
            params["neuron"] = neuron_params
        return params, self.init_state(x)

    def init_state(self, x: torch.Tensor) -> RecurrentState:
        y = torch.zeros((), dtype=x.dtype, device=x.device)
        return RecurrentState(y=y, neuron=self.neuron.init_state(y))

    def reset_state(self, state: RecurrentState) -> RecurrentState:
        return RecurrentState(y=state.y.new_zeros(()), neuron=self.neuron.reset_state(state.neuron))

    def apply(self, params: Params, state: RecurrentState, x: torch.Tensor) -> tuple[torch.Tensor, RecurrentState]:
        x = self._check_x(x)
        y_prev = state.y if state.y.dim() else self._y0(x)
        if y_prev.shape != (*x.shape[:-1], self.out_features):
            raise ValueError(
                f"Recurrent: state `y` has shape {tuple(y_prev.shape)}, expected "
                f"{(*x.shape[:-1], self.out_features)} for input of shape {tuple(x.shape)}"
            )
        current, _ = self._rc.apply(params["rc"], None, torch.cat([x, y_prev], dim=-1))
        y, neuron_state = self.neuron.apply(params.get("neuron"), state.neuron, current)
        return y, RecurrentState(y=y, neuron=neuron_state)
