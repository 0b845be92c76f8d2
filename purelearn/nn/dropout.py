"""Dropout with one mask per sequence, drawn from a key in the layer's state."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

import torch

from .. import validate
from ..layer import Layer, tensor_input
from ..random import hash32

__all__ = ["Dropout", "DropoutState"]


class DropoutState(NamedTuple):
    """Dropout's state: ``key``, an int64 0-d tensor that fixes the mask for one sequence."""

    key: torch.Tensor


@dataclass(frozen=True)
class Dropout(Layer):
    """Dropout with one mask per sequence (SpikingJelly ``layer.Dropout`` semantics).

    The mask is a pure function of ``state.key`` and the element index (:func:`purelearn.random.hash32`),
    so it is reproducible and works under ``vmap`` and ``compile``; ``reset_states`` advances the key
    for the next sequence. Kept elements are scaled by ``1/(1 − p)``. ``model.inference()`` turns it off.
    """

    p: float = 0.5
    has_state = True

    def __post_init__(self) -> None:
        validate.number("Dropout", "p", self.p, low=0.0, high=1.0, high_open=True, tensors=False,
                        kinds="a Python number")

    def init(self, generator: torch.Generator | None, x: torch.Tensor) -> tuple[None, DropoutState]:
        device = generator.device if generator is not None else torch.device("cpu")
        key = torch.randint(0, 2**31 - 1, (), generator=generator, device=device, dtype=torch.int64)
        return None, DropoutState(key=key.to(tensor_input(x, "Dropout").device))

    def init_state(self, x: torch.Tensor) -> DropoutState:
        return DropoutState(key=torch.zeros((), dtype=torch.int64, device=x.device))

    def draw_state(self, generator: torch.Generator, x: torch.Tensor) -> DropoutState:
        """A random key from ``generator`` (what ``init`` draws)."""
        return self.init(generator, x)[1]

    def reset_state(self, state: DropoutState) -> DropoutState:
        return DropoutState(key=hash32(state.key + 0x9E3779B9))

    def mask(self, key: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The {0, 1/(1−p)} mask for an input shaped like ``x``."""
        index = torch.arange(x.numel(), device=x.device, dtype=torch.int64).reshape(x.shape)
        bits = hash32(index ^ hash32(key))
        uniform = (bits >> 8).to(x.dtype) / float(1 << 24)
        return (uniform >= self.p).to(x.dtype) / (1.0 - self.p)

    def apply(self, params: None, state: DropoutState, x: torch.Tensor) -> tuple[torch.Tensor, DropoutState]:
        x = tensor_input(x, "Dropout")
        if self.p == 0.0:
            return x, state
        return x * self.mask(state.key, x), state

    def inference(self) -> Dropout:
        return replace(self, p=0.0)
