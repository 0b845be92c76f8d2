"""Residual blocks: :class:`Residual`, ``y = body(x) + shortcut(x)``, and :func:`walk` over nested layers.

A residual block holds two :class:`~purelearn.nn.Sequential` chains applied to the same input at the
same time step; the shortcut is the identity when it is ``None`` (torch's ``nn.Sequential()``
shortcut in a ResNet's basic block)::

    y_t = body(x_t) + shortcut(x_t)

Its ``params`` / ``states`` nest the chains' trees under ``"body"`` and ``"shortcut"`` (as
:class:`~purelearn.nn.Recurrent` nests ``"rc"``), each key present only when that chain has
parameters / state: ``params["3"]["body"]["0"]["weight"]``, ``states["3"]["body"]["1"].running_mean``.
Everything else (``init_state``, ``reset_state``, ``restore_state``, ``inference``) is the chains'.

Example (SLTT's pre-activation block: BatchNorm → neuron, then convolutions around an identity)::

    >>> import torch
    >>> from purelearn import nn, neurons
    >>> block = nn.Residual(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), neurons.LIF(),
    ...                                   nn.Conv2d(4, 4, 3, padding=1)))
    >>> model = nn.Sequential(nn.BatchNorm2d(4), neurons.LIF(), block)
    >>> params, states = model.init(torch.Generator().manual_seed(0), torch.rand(2, 4, 6, 6))
    >>> sorted(params["2"]["body"]), sorted(states["2"]["body"])
    (['0', '1', '3'], ['1', '2'])
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from ..layer import Layer, Params, tensor_input
from .sequential import Sequential

__all__ = ["Residual", "walk"]


@dataclass(frozen=True)
class Residual(Layer):
    """``y = body(x) + shortcut(x)`` at every step; ``shortcut=None`` is the identity.

    Params ``{"body": ..., "shortcut": ...}`` and states likewise, each key only where that chain has
    parameters / state. Both outputs must have the same shape.
    """

    body: Sequential
    shortcut: Sequential | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.body, Sequential):
            raise TypeError(f"Residual: `body` must be a purelearn.nn.Sequential, got {type(self.body).__name__}")
        if self.shortcut is not None and not isinstance(self.shortcut, Sequential):
            raise TypeError("Residual: `shortcut` must be a purelearn.nn.Sequential or None (the identity), got "
                            f"{type(self.shortcut).__name__}")

    @property
    def parts(self) -> tuple[tuple[str, Sequential], ...]:
        """``(("body", body), ("shortcut", shortcut))``, without the shortcut when it is the identity."""
        return (("body", self.body),) + ((("shortcut", self.shortcut),) if self.shortcut is not None else ())

    @property
    def param_keys(self) -> tuple[str, ...]:
        return tuple(name for name, part in self.parts if part.param_keys)

    @property
    def state_keys(self) -> tuple[str, ...]:
        return tuple(name for name, part in self.parts if part.state_keys)

    @property
    def has_params(self) -> bool:  # type: ignore[override]
        return bool(self.param_keys)

    @property
    def has_state(self) -> bool:  # type: ignore[override]
        return bool(self.state_keys)

    def param_shapes(self) -> dict[str, Any] | None:
        return self.nest({name: part.param_shapes() for name, part in self.parts}, "params")

    @property
    def neurons(self) -> tuple[Layer, ...]:
        """The neuron layers of the body, then of the shortcut."""
        return tuple(n for _, part in self.parts for n in part.neurons)

    def subtree(self, name: str, tree: Any, what: str) -> dict:
        """Chain ``name``'s part of ``tree``, the block's ``what`` ("params" or "states"); ``{}`` where
        the chain has none. ``ValueError`` unless ``tree`` has the block's keys."""
        keys = self.param_keys if what == "params" else self.state_keys
        if not keys:
            return {}
        if not isinstance(tree, dict) or set(tree) != set(keys):
            got = sorted(tree) if isinstance(tree, dict) else type(tree).__name__
            raise ValueError(f"Residual: `{what}` must be a dict with keys {sorted(keys)}, got {got}")
        return tree.get(name, {})

    def nest(self, trees: dict[str, Any], what: str) -> dict | None:
        """The block's ``what`` ("params" or "states") from the chains' ``trees``; None where it has none."""
        keys = self.param_keys if what == "params" else self.state_keys
        return {name: trees[name] for name in keys} or None

    def init(self, generator: torch.Generator | None, x: torch.Tensor) -> tuple[Params | None, Params | None]:
        """The body's parameters and states, then the shortcut's, both from example ``x``."""
        x = tensor_input(x, "Residual.init")
        params, states = {}, {}
        for name, part in self.parts:
            params[name], states[name] = part.init(generator, x)
        return self.nest(params, "params"), self.nest(states, "states")

    def init_state(self, x: torch.Tensor) -> Params | None:
        return self.nest({name: part.init_states(x) for name, part in self.parts}, "states")

    def draw_state(self, generator: torch.Generator, x: torch.Tensor) -> Params | None:
        return self.nest({name: part.init_states(x, generator) for name, part in self.parts}, "states")

    def reset_state(self, state: Params | None) -> Params | None:
        return self.nest({name: part.reset_states(self.subtree(name, state, "states"))
                          for name, part in self.parts}, "states")

    def restore_state(self, saved: Params | None, state: Params | None) -> Params | None:
        return self.nest({name: part.restore_states(self.subtree(name, saved, "states"),
                                                    self.subtree(name, state, "states"))
                          for name, part in self.parts}, "states")

    def inference(self) -> Residual:
        """The block with both chains for evaluation."""
        return Residual(self.body.inference(), None if self.shortcut is None else self.shortcut.inference())

    def apply(self, params: Params | None, state: Params | None, x: torch.Tensor) -> tuple[torch.Tensor, Params | None]:
        """One step: ``body(x) + shortcut(x)`` and the chains' new states. Pure."""
        x = tensor_input(x, "Residual")
        outputs, states = {}, {}
        for name, part in self.parts:
            outputs[name], states[name] = part.apply(self.subtree(name, params, "params"),
                                                     self.subtree(name, state, "states"), x)
        return self.combine(outputs["body"], outputs.get("shortcut", x)), self.nest(states, "states")

    def combine(self, body: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
        """``body + shortcut``, the chains' outputs; ``ValueError`` unless they have the same shape."""
        if body.shape != shortcut.shape:
            raise ValueError(f"Residual: the body's output has shape {tuple(body.shape)} but the shortcut's has "
                             f"{tuple(shortcut.shape)}; a shortcut must give the body's shape (e.g. a 1x1 Conv2d with "
                             "the body's stride and channels)")
        return body + shortcut


def walk(model: Sequential, prefix: str = "") -> Iterator[tuple[str, Layer]]:
    """Every layer of ``model`` with its key path (``"3"``, then ``"3.body.0"``, ...): a residual block,
    then its body's layers and its shortcut's, at any depth."""
    for i, layer in enumerate(model.layers):
        path = f"{prefix}{i}"
        yield path, layer
        if isinstance(layer, Residual):
            for name, part in layer.parts:
                yield from walk(part, f"{path}.{name}.")
