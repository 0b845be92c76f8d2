"""The layer protocol: the :class:`Layer` base class and the argument checks layers share.

Every layer (``purelearn.nn``'s layers and ``purelearn.neurons``' neurons alike) is a static
description (a frozen object of hyperparameters) with pure methods::

    params, state = layer.init(generator, x)        # (None where the layer has none)
    y, new_state  = layer.apply(params, state, x)   # one time step
    state         = layer.init_state(x)             # a fresh state for a new sequence
    state         = layer.reset_state(state)        # the state for the next sequence
    state         = layer.restore_state(saved, state)  # undo a replayed step (FPTT's second forward)

``has_params`` / ``has_state`` tell :class:`~purelearn.nn.Sequential` which layers appear in its
``params`` / ``states``. This module sits below both :mod:`purelearn.neurons` and
:mod:`purelearn.nn`, so that neurons are layers without an import cycle.
"""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["Layer", "Params", "param_mismatch"]

Params = dict[str, Any]


class Layer:
    """Base class of the layer protocol. Subclasses set ``has_params`` / ``has_state``."""

    has_params: bool = False
    has_state: bool = False

    def init(self, generator: torch.Generator | None, x: torch.Tensor) -> tuple[Any, Any]:
        """``(params, state)`` for input example ``x`` (``None`` where the layer has none)."""
        return None, (self.init_state(x) if self.has_state else None)

    def init_state(self, x: torch.Tensor) -> Any:
        """A fresh state for a new sequence (stateful layers only)."""
        return None

    def draw_state(self, generator: torch.Generator, x: torch.Tensor) -> Any:
        """A fresh state drawn from ``generator``: ``init_state(x)`` unless the state is random
        (Dropout's key)."""
        return self.init_state(x)

    def reset_state(self, state: Any) -> Any:
        """The state for the next sequence, given the current one."""
        return state

    def apply(self, params: Any, state: Any, x: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """One time step: ``(y, new_state)``."""
        raise NotImplementedError

    def param_shapes(self) -> Any:
        """The shapes of ``params`` known without an input, nested like ``params`` (a dict of shape
        tuples; a ``None`` size is fixed only by the input), or ``None`` where the layer declares none
        (its ``apply`` still checks them). ``learner.init`` compares params with these."""
        return None

    def restore_state(self, saved: Any, state: Any) -> Any:
        """The state after a step that is replayed and then undone (FPTT's second forward), given the
        ``saved`` state from before the replay and the ``state`` it produced: memories of the sequence
        (neurons, dropout keys) come back from ``saved`` (the default); what a layer learns across
        sequences (BatchNorm's running statistics) keeps the replay's update, as SpikingJelly
        restores ``MemoryModule`` memories but not module buffers."""
        return saved

    def inference(self) -> Layer:
        """This layer for evaluation (dropout off); most layers return themselves."""
        return self


# ----------------------------------------------------------------------------- shared argument checks


def as_pair(v: int | tuple[int, int], name: str, owner: str) -> tuple[int, int]:
    """``v`` as a pair of ints (an int ``k`` is ``(k, k)``); ``TypeError`` naming ``owner.name`` otherwise."""
    if isinstance(v, int) and not isinstance(v, bool):
        return (v, v)
    if isinstance(v, tuple) and len(v) == 2 and all(isinstance(i, int) for i in v):
        return v
    raise TypeError(f"{owner}: `{name}` must be an int or a pair of ints, got {v!r}")


def positive_int(v: Any, name: str, owner: str) -> int:
    """``v`` if it is a positive int (not a bool); ``ValueError`` naming ``owner.name`` otherwise."""
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ValueError(f"{owner}: `{name}` must be a positive int, got {v!r}")
    return v


def tensor_input(x: Any, owner: str) -> torch.Tensor:
    """``x`` if it is a tensor; ``TypeError`` naming ``owner`` otherwise."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{owner}: input `x` must be a tensor, got {type(x).__name__}")
    return x


def features_input(x: Any, layer: Any) -> torch.Tensor:
    """``x`` as a tensor [..., layer.in_features]. The layer's name is formatted only when raising (an
    f-string of sizes on the happy path would break torch.compile graphs)."""
    x = tensor_input(x, type(layer).__name__)
    if x.dim() == 0 or x.shape[-1] != layer.in_features:
        raise ValueError(f"{type(layer).__name__}({layer.in_features}, {layer.out_features}): input `x` must have "
                         f"last dimension {layer.in_features}, got shape {tuple(x.shape)}")
    return x


def _shape_text(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("*" if n is None else str(n) for n in shape) + ("," if len(shape) == 1 else "") + ")"


def param_mismatch(expected: Any, params: Any, path: str) -> str | None:
    """Where ``params`` (at ``path``) differ from ``expected`` (:meth:`Layer.param_shapes`: nested dicts of
    shapes, ``None`` sizes and ``None`` subtrees match anything), as a message; ``None`` when they fit."""
    if expected is None:
        return None
    if isinstance(expected, dict):
        if not isinstance(params, dict) or set(params) != set(expected):
            got = sorted(params) if isinstance(params, dict) else type(params).__name__
            return f"`{path}` must be a dict with keys {sorted(expected)}, got {got}"
        for key in sorted(expected):
            found = param_mismatch(expected[key], params[key], f"{path}[{key!r}]")
            if found:
                return found
        return None
    if not isinstance(params, torch.Tensor):
        return f"`{path}` must be a tensor of shape {_shape_text(expected)}, got {type(params).__name__}"
    if len(params.shape) != len(expected) or any(
            n is not None and n != m for n, m in zip(expected, params.shape, strict=True)):
        return f"`{path}` must have shape {_shape_text(expected)}, got {tuple(params.shape)}"
    return None


def uniform(generator: torch.Generator | None, shape: tuple[int, ...], bound: float,
            like: torch.Tensor) -> torch.Tensor:
    """U(−bound, bound) of ``shape`` in ``like``'s dtype and device, drawn on ``generator``'s device."""
    device = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand(shape, generator=generator, dtype=like.dtype, device=device)
    return ((u * 2.0 - 1.0) * bound).to(like.device)


def fan_in_bound(fan_in: int) -> float:
    """torch's default init bound for weights and biases, ``1/√fan_in``."""
    return 1.0 / math.sqrt(fan_in)


def check_params(layer: Any, params: Any, expected: dict[str, tuple[int, ...]], x: torch.Tensor) -> None:
    """``params`` must be a dict of tensors with the ``expected`` keys and shapes, in ``x``'s dtype and device."""
    # The layer's name is only formatted when raising: an f-string of (symbolic) sizes on the
    # happy path would break torch.compile graphs.
    owner = lambda: layer.describe()
    if not isinstance(params, dict) or set(params) != set(expected):
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ValueError(f"{owner()}: `params` must be a dict with keys {sorted(expected)}, got {got}")
    for key, shape in expected.items():
        leaf = params[key]
        if not isinstance(leaf, torch.Tensor) or tuple(leaf.shape) != shape:
            got = tuple(leaf.shape) if isinstance(leaf, torch.Tensor) else type(leaf).__name__
            raise ValueError(f"{owner()}: `params[{key!r}]` must have shape {shape}, got {got}")
        if leaf.dtype != x.dtype or leaf.device != x.device:
            raise TypeError(
                f"{owner()}: `params[{key!r}]` is {leaf.dtype} on {leaf.device} but the input x is {x.dtype} "
                f"on {x.device}; parameters and data must share dtype and device"
            )
