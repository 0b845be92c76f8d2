"""A chain of layers applied one time step at a time: :class:`Sequential`."""

from __future__ import annotations

from typing import Any

import torch

from ..layer import Layer, Params, param_mismatch, tensor_input
from ..neurons import Neuron

__all__ = ["Sequential"]


def _floating(x: torch.Tensor, owner: str) -> torch.Tensor:
    """Params and states take the example's dtype, so it must be a floating-point one."""
    if not x.is_floating_point():
        raise TypeError(f"{owner}: input `x` must be a floating-point tensor (params and states take its dtype), "
                        f"got {x.dtype}; convert the data first, e.g. x.float()")
    return x


class Sequential:
    """A chain of layers applied one time step at a time.

    ``params`` / ``states`` are dicts keyed by layer index (``"0"``, ``"1"``, ...), holding only
    layers whose ``has_params`` / ``has_state`` is true. See :mod:`purelearn.nn` for the protocol.
    """

    def __init__(self, *layers: Layer) -> None:
        if not layers:
            raise ValueError("Sequential: give at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(
                    f"Sequential: layer {i} must be a purelearn layer or neuron, got {type(layer).__name__}"
                    " (convert torch modules with purelearn.nn.from_torch)"
                )
        self.layers: tuple[Layer, ...] = tuple(layers)
        self.param_keys: tuple[str, ...] = tuple(str(i) for i, m in enumerate(layers) if m.has_params)
        self.state_keys: tuple[str, ...] = tuple(str(i) for i, m in enumerate(layers) if m.has_state)

    def __repr__(self) -> str:
        inner = ",\n  ".join(f"({i}): {m!r}" for i, m in enumerate(self.layers))
        return f"Sequential(\n  {inner}\n)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequential) and self.layers == other.layers

    def __hash__(self) -> int:
        return hash(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i: int) -> Layer:
        return self.layers[i]

    @property
    def neurons(self) -> tuple[Neuron, ...]:
        """The neuron layers, in order (a residual block's, :class:`~purelearn.nn.Residual`, included)."""
        return tuple(n for m in self.layers for n in ((m,) if isinstance(m, Neuron) else getattr(m, "neurons", ())))

    def init(self, generator: torch.Generator | None, x: torch.Tensor) -> tuple[Params, Params]:
        """Parameters and fresh states for input example ``x`` [N, ...] (its dtype and device).

        ``generator`` (a ``torch.Generator``) makes initialisation reproducible.
        """
        x = _floating(tensor_input(x, "Sequential.init"), "Sequential.init")
        params, states = {}, {}
        with torch.no_grad():
            h: Any = x
            for i, layer in enumerate(self.layers):
                p, s = layer.init(generator, h)
                if str(i) in self.param_keys:
                    params[str(i)] = p
                if str(i) in self.state_keys:
                    states[str(i)] = s
                h, _ = layer.inference().apply(p, s, h)  # the next input's shape; no batch statistics needed
        return params, states

    def init_states(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Params:
        """Fresh, batch-agnostic states (0-d memories) with ``x``'s dtype and device; with a
        ``generator``, random states (dropout keys) are drawn from it."""
        x = _floating(tensor_input(x, "Sequential.init_states"), "Sequential.init_states")
        return {k: (self.layers[int(k)].init_state(x) if generator is None
                    else self.layers[int(k)].draw_state(generator, x)) for k in self.state_keys}

    def reset_states(self, states: Params) -> Params:
        """The states for the next sequence: neuron memories fresh, dropout keys advanced, BatchNorm's
        running statistics kept."""
        self._check_keys("states", states, self.state_keys)
        return {k: self.layers[int(k)].reset_state(s) for k, s in states.items()}

    def restore_states(self, saved: Params, states: Params) -> Params:
        """The states after replaying a step and undoing it (FPTT's second forward): each layer's
        :meth:`~purelearn.layer.Layer.restore_state` of ``saved`` (from before the replay) and
        ``states`` (what it produced): neuron memories from ``saved``, BatchNorm's running
        statistics from ``states``."""
        self._check_keys("saved", saved, self.state_keys)
        self._check_keys("states", states, self.state_keys)
        return {k: self.layers[int(k)].restore_state(saved[k], states[k]) for k in self.state_keys}

    def inference(self) -> Sequential:
        """This model for evaluation: dropout off, BatchNorm on its running statistics; same
        params/states structure."""
        return Sequential(*(m.inference() for m in self.layers))

    def param_shapes(self) -> Params:
        """Each parametric layer's :meth:`~purelearn.layer.Layer.param_shapes`, keyed like ``params``."""
        return {k: self.layers[int(k)].param_shapes() for k in self.param_keys}

    def check_params(self, params: Any, name: str = "params") -> None:
        """``ValueError`` unless ``params`` have this model's structure and the shapes its layers declare
        (:meth:`param_shapes`), without an input: the params of another model are refused before any
        step. Naming the layer and the first leaf that differs."""
        self._check_keys(name, params, self.param_keys)
        for k in self.param_keys:
            found = param_mismatch(self.layers[int(k)].param_shapes(), params[k], f"{name}[{k!r}]")
            if found:
                layer = self.layers[int(k)]
                what = layer.describe() if hasattr(layer, "describe") else type(layer).__name__
                raise ValueError(f"`{name}` does not match the model: layer {k} ({what}): {found}")

    def check_states(self, states: Any, name: str = "states") -> None:
        """``ValueError`` unless ``states`` have this model's keys (one per stateful layer)."""
        self._check_keys(name, states, self.state_keys)

    def _check_keys(self, name: str, tree: Any, expected: tuple[str, ...]) -> None:
        if not isinstance(tree, dict) or set(tree) != set(expected):
            got = sorted(tree) if isinstance(tree, dict) else type(tree).__name__
            raise ValueError(
                f"`{name}` does not match the model: expected a dict with keys {sorted(expected)}, got {got}"
            )

    def apply(self, params: Params, states: Params, x: torch.Tensor) -> tuple[torch.Tensor, Params]:
        """One time step: ``x`` [N, ...] -> ``(y [N, ...], new_states)``. Pure."""
        self._check_keys("params", params, self.param_keys)
        self._check_keys("states", states, self.state_keys)
        h: Any = tensor_input(x, "Sequential.apply")
        new_states = {}
        for i, layer in enumerate(self.layers):
            k = str(i)
            h, s = layer.apply(params.get(k), states.get(k), h)
            if k in states:
                new_states[k] = s
        return h, new_states
