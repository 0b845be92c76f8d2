"""Layers and models as pure ``init`` / ``apply`` pairs (haiku's ``transform_with_state`` shape).

A model is a static description (a frozen object holding hyperparameters only) plus::

    params, states = model.init(generator, x_example)     # params: trained, states: memories
    y_t, states    = model.apply(params, states, x_t)      # one time step, pure
    states         = model.init_states(x_example)          # fresh memories for a new sequence
    states         = model.reset_states(states)            # the same, keeping dtype/device

``params`` and ``states`` are nested dicts keyed by the layer's index in the ``Sequential`` (the
keys of ``torch.nn.Sequential.state_dict``): ``params["0"]["weight"]``, ``states["1"].v``. Only
layers with parameters appear in ``params`` and only stateful layers in ``states``.

OTTT wiring: an :class:`~purelearn.neurons.OTTTLIF` emits ``SpikeTrace(spike, trace)``. A layer
with parameters that receives it computes its **value from the spike** and its **weight gradient
from the trace**, while the input gradient still flows into the spike (SpikingJelly's
``GradwithTrace``)::

    y = f(W.detach(), spike) + (f(W, trace) − f(W, trace).detach())

A parameter-free layer (pooling, flatten, dropout) is applied to both. A neuron takes the spike.

Example::

    >>> import torch
    >>> from purelearn import nn, neurons
    >>> model = nn.Sequential(nn.Linear(3, 2), neurons.LIF())
    >>> params, states = model.init(torch.Generator().manual_seed(0), torch.zeros(4, 3))
    >>> sorted(params["0"]), states["1"].v.shape
    (['bias', 'weight'], torch.Size([]))
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

from . import neurons as _neurons
from . import surrogate as _surrogate
from .neurons import Neuron, SpikeTrace

__all__ = [
    "Layer",
    "Linear",
    "Conv2d",
    "AvgPool2d",
    "MaxPool2d",
    "Flatten",
    "Identity",
    "Dropout",
    "DropoutState",
    "Recurrent",
    "RecurrentState",
    "Sequential",
    "from_torch",
    "to_state_dict",
    "from_state_dict",
]

Params = dict[str, Any]


def _pair(v: int | tuple[int, int], name: str, owner: str) -> tuple[int, int]:
    if isinstance(v, int) and not isinstance(v, bool):
        return (v, v)
    if isinstance(v, tuple) and len(v) == 2 and all(isinstance(i, int) for i in v):
        return v
    raise TypeError(f"{owner}: `{name}` must be an int or a pair of ints, got {v!r}")


def _positive_int(v: Any, name: str, owner: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ValueError(f"{owner}: `{name}` must be a positive int, got {v!r}")
    return v


def _tensor_input(x: Any, owner: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{owner}: input `x` must be a tensor, got {type(x).__name__}")
    return x


def _uniform(generator: torch.Generator | None, shape: tuple[int, ...], bound: float,
             like: torch.Tensor) -> torch.Tensor:
    device = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand(shape, generator=generator, dtype=like.dtype, device=device)
    return ((u * 2.0 - 1.0) * bound).to(like.device)


def _check_params(layer: Any, params: Any, expected: dict[str, tuple[int, ...]], x: torch.Tensor) -> None:
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

    def reset_state(self, state: Any) -> Any:
        """The state for the next sequence, given the current one."""
        return state

    def apply(self, params: Any, state: Any, x: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """One time step: ``(y, new_state)``."""
        raise NotImplementedError

    def inference(self) -> Layer:
        """This layer for evaluation (dropout off); most layers return themselves."""
        return self


# ----------------------------------------------------------------------------- parametric layers


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
        _positive_int(self.in_features, "in_features", "Linear")
        _positive_int(self.out_features, "out_features", "Linear")

    def describe(self) -> str:
        return f"Linear({self.in_features}, {self.out_features})"

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = {"weight": (self.out_features, self.in_features)}
        if self.bias:
            shapes["bias"] = (self.out_features,)
        return shapes

    def init(self, generator: torch.Generator | None, x: torch.Tensor) -> tuple[Params, None]:
        self._check_x(x)
        bound = 1.0 / math.sqrt(self.in_features)
        params = {k: _uniform(generator, s, bound, x) for k, s in self.param_shapes().items()}
        return params, None

    def _check_x(self, x: Any) -> torch.Tensor:
        x = _tensor_input(x, "Linear")
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"Linear({self.in_features}, {self.out_features}): input `x` must have last dimension "
                f"{self.in_features}, got shape {tuple(x.shape)}"
            )
        return x

    def apply(self, params: Params, state: None, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        x = self._check_x(x)
        _check_params(self, params, self.param_shapes(), x)
        return F.linear(x, params["weight"], params.get("bias")), None


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
        _positive_int(self.in_channels, "in_channels", "Conv2d")
        _positive_int(self.out_channels, "out_channels", "Conv2d")
        _positive_int(self.groups, "groups", "Conv2d")
        for name in ("kernel_size", "stride", "padding", "dilation"):
            object.__setattr__(self, name, _pair(getattr(self, name), name, "Conv2d"))
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
        x = _tensor_input(x, "Conv2d")
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"Conv2d({self.in_channels}, {self.out_channels}): input `x` must have shape "
                f"[N, {self.in_channels}, H, W], got {tuple(x.shape)}"
            )
        return x

    def init(self, generator: torch.Generator | None, x: torch.Tensor) -> tuple[Params, None]:
        self._check_x(x)
        fan_in = (self.in_channels // self.groups) * self.kernel_size[0] * self.kernel_size[1]
        bound = 1.0 / math.sqrt(fan_in)
        return {k: _uniform(generator, s, bound, x) for k, s in self.param_shapes().items()}, None

    def apply(self, params: Params, state: None, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        x = self._check_x(x)
        _check_params(self, params, self.param_shapes(), x)
        y = F.conv2d(x, params["weight"], params.get("bias"), self.stride, self.padding,
                     self.dilation, self.groups)
        return y, None


# ----------------------------------------------------------------------------- parameter-free layers


@dataclass(frozen=True)
class AvgPool2d(Layer):
    """``torch.nn.AvgPool2d`` (``stride`` defaults to ``kernel_size``). x [N, C, H, W]."""

    kernel_size: int | tuple[int, int]
    stride: int | tuple[int, int] | None = None
    padding: int | tuple[int, int] = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "kernel_size", _pair(self.kernel_size, "kernel_size", "AvgPool2d"))
        stride = self.kernel_size if self.stride is None else self.stride
        object.__setattr__(self, "stride", _pair(stride, "stride", "AvgPool2d"))
        object.__setattr__(self, "padding", _pair(self.padding, "padding", "AvgPool2d"))

    def apply(self, params: None, state: None, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        x = _tensor_input(x, "AvgPool2d")
        if x.dim() != 4:
            raise ValueError(f"AvgPool2d: input `x` must have shape [N, C, H, W], got {tuple(x.shape)}")
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding), None


@dataclass(frozen=True)
class MaxPool2d(Layer):
    """``torch.nn.MaxPool2d`` (``stride`` defaults to ``kernel_size``). x [N, C, H, W]."""

    kernel_size: int | tuple[int, int]
    stride: int | tuple[int, int] | None = None
    padding: int | tuple[int, int] = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "kernel_size", _pair(self.kernel_size, "kernel_size", "MaxPool2d"))
        stride = self.kernel_size if self.stride is None else self.stride
        object.__setattr__(self, "stride", _pair(stride, "stride", "MaxPool2d"))
        object.__setattr__(self, "padding", _pair(self.padding, "padding", "MaxPool2d"))

    def apply(self, params: None, state: None, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        x = _tensor_input(x, "MaxPool2d")
        if x.dim() != 4:
            raise ValueError(f"MaxPool2d: input `x` must have shape [N, C, H, W], got {tuple(x.shape)}")
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding), None


@dataclass(frozen=True)
class Flatten(Layer):
    """``torch.nn.Flatten`` (default ``start_dim=1``: keeps the batch axis)."""

    start_dim: int = 1
    end_dim: int = -1

    def apply(self, params: None, state: None, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        x = _tensor_input(x, "Flatten")
        return torch.flatten(x, self.start_dim, self.end_dim), None


@dataclass(frozen=True)
class Identity(Layer):
    """Returns its input."""

    def apply(self, params: None, state: None, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return x, None


class DropoutState(NamedTuple):
    """Dropout's state: ``key``, an int64 0-d tensor that fixes the mask for one sequence."""

    key: torch.Tensor


_MASK32 = 0xFFFFFFFF


def _mul32(x: torch.Tensor, m: int) -> torch.Tensor:
    # (x * m) mod 2**32 for x < 2**32, without int64 overflow: split m into 16-bit halves.
    return ((x * (m & 0xFFFF)) + (((x * (m >> 16)) & 0xFFFF) << 16)) & _MASK32


def hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer mix (lowbias32) of an int64 tensor; pure, works under vmap and compile."""
    x = x & _MASK32
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


@dataclass(frozen=True)
class Dropout(Layer):
    """Dropout with one mask per sequence (SpikingJelly ``layer.Dropout`` semantics).

    The mask is a pure function of ``state.key`` and the element index, so it is reproducible and
    works under ``vmap`` and ``compile``; ``reset_states`` advances the key for the next sequence.
    Kept elements are scaled by ``1/(1 − p)``. ``model.inference()`` turns it off.
    """

    p: float = 0.5
    has_state = True

    def __post_init__(self) -> None:
        if isinstance(self.p, bool) or not isinstance(self.p, (int, float)) or not 0.0 <= self.p < 1.0:
            raise ValueError(f"Dropout: `p` must be a number in [0, 1), got {self.p!r}")

    def init(self, generator: torch.Generator | None, x: torch.Tensor) -> tuple[None, DropoutState]:
        device = generator.device if generator is not None else torch.device("cpu")
        key = torch.randint(0, 2**31 - 1, (), generator=generator, device=device, dtype=torch.int64)
        return None, DropoutState(key=key.to(_tensor_input(x, "Dropout").device))

    def init_state(self, x: torch.Tensor) -> DropoutState:
        return DropoutState(key=torch.zeros((), dtype=torch.int64, device=x.device))

    def reset_state(self, state: DropoutState) -> DropoutState:
        return DropoutState(key=hash32(state.key + 0x9E3779B9))

    def mask(self, key: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The {0, 1/(1−p)} mask for an input shaped like ``x``."""
        index = torch.arange(x.numel(), device=x.device, dtype=torch.int64).reshape(x.shape)
        bits = hash32(index ^ hash32(key))
        uniform = (bits >> 8).to(x.dtype) / float(1 << 24)
        return (uniform >= self.p).to(x.dtype) / (1.0 - self.p)

    def apply(self, params: None, state: DropoutState, x: torch.Tensor) -> tuple[torch.Tensor, DropoutState]:
        x = _tensor_input(x, "Dropout")
        if self.p == 0.0:
            return x, state
        return x * self.mask(state.key, x), state

    def inference(self) -> Dropout:
        return replace(self, p=0.0)


# ----------------------------------------------------------------------------- recurrence


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
        _positive_int(self.in_features, "in_features", "Recurrent")
        _positive_int(self.out_features, "out_features", "Recurrent")

    @property
    def _rc(self) -> Linear:
        return Linear(self.in_features + self.out_features, self.out_features, self.bias)

    def _check_x(self, x: Any) -> torch.Tensor:
        x = _tensor_input(x, "Recurrent")
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"Recurrent({self.in_features}, {self.out_features}): input `x` must have last "
                f"dimension {self.in_features}, got shape {tuple(x.shape)}"
            )
        return x

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


# ----------------------------------------------------------------------------- Sequential


def _layer_has_params(layer: Any) -> bool:
    if isinstance(layer, _neurons.ALIF):
        return layer.learn_tau
    if isinstance(layer, Neuron):
        return False
    return layer.has_params


def _layer_has_state(layer: Any) -> bool:
    return isinstance(layer, Neuron) or layer.has_state


def _detach_tree(tree: Any) -> Any:
    import optree

    return optree.tree_map(torch.detach, tree)


class Sequential:
    """A chain of layers applied one time step at a time.

    ``params`` / ``states`` are dicts keyed by layer index (``"0"``, ``"1"``, ...), holding only
    layers that have parameters / state. See the module docstring for the protocol.
    """

    def __init__(self, *layers: Layer | Neuron) -> None:
        if not layers:
            raise ValueError("Sequential: give at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, (Layer, Neuron)):
                raise TypeError(
                    f"Sequential: layer {i} must be a purelearn layer or neuron, got {type(layer).__name__}"
                    " (convert torch modules with purelearn.nn.from_torch)"
                )
        self.layers: tuple[Layer | Neuron, ...] = tuple(layers)
        self.param_keys: tuple[str, ...] = tuple(str(i) for i, m in enumerate(layers) if _layer_has_params(m))
        self.state_keys: tuple[str, ...] = tuple(str(i) for i, m in enumerate(layers) if _layer_has_state(m))

    def __repr__(self) -> str:
        inner = ",\n  ".join(f"({i}): {m!r}" for i, m in enumerate(self.layers))
        return f"Sequential(\n  {inner}\n)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequential) and self.layers == other.layers

    def __hash__(self) -> int:
        return hash(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i: int) -> Layer | Neuron:
        return self.layers[i]

    @property
    def neurons(self) -> tuple[Neuron, ...]:
        """The neuron layers, in order."""
        return tuple(m for m in self.layers if isinstance(m, Neuron))

    def init(self, generator: torch.Generator | None, x: torch.Tensor) -> tuple[Params, Params]:
        """Parameters and fresh states for input example ``x`` [N, ...] (its dtype and device).

        ``generator`` (a ``torch.Generator``) makes initialisation reproducible.
        """
        x = _tensor_input(x, "Sequential.init")
        params, states = {}, {}
        with torch.no_grad():
            h: Any = x
            for i, layer in enumerate(self.layers):
                p, s = layer.init(generator, h.spike if isinstance(h, SpikeTrace) else h)
                if str(i) in self.param_keys:
                    params[str(i)] = p
                if str(i) in self.state_keys:
                    states[str(i)] = s
                h = self._apply_layer(layer, p, s, h)[0]
        return params, states

    def init_states(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Params:
        """Fresh, batch-agnostic states (0-d memories) with ``x``'s dtype and device."""
        x = _tensor_input(x, "Sequential.init_states")
        states = {}
        for i, layer in enumerate(self.layers):
            if str(i) in self.state_keys:
                if generator is not None and isinstance(layer, Dropout):
                    states[str(i)] = layer.init(generator, x)[1]
                else:
                    states[str(i)] = layer.init_state(x)
        return states

    def reset_states(self, states: Params) -> Params:
        """The states for the next sequence: neuron memories fresh, dropout keys advanced."""
        self._check_keys("states", states, self.state_keys)
        return {k: self.layers[int(k)].reset_state(s) for k, s in states.items()}

    def inference(self) -> Sequential:
        """This model for evaluation: dropout off; same params/states structure."""
        return Sequential(*(m.inference() if isinstance(m, Layer) else m for m in self.layers))

    def _check_keys(self, name: str, tree: Any, expected: tuple[str, ...]) -> None:
        if not isinstance(tree, dict) or set(tree) != set(expected):
            got = sorted(tree) if isinstance(tree, dict) else type(tree).__name__
            raise ValueError(
                f"`{name}` does not match the model: expected a dict with keys {sorted(expected)}, got {got}"
            )

    @staticmethod
    def _apply_layer(layer: Any, p: Any, s: Any, h: Any) -> tuple[Any, Any]:
        if not isinstance(h, SpikeTrace) or isinstance(layer, Neuron):
            return layer.apply(p, s, h)
        if _layer_has_params(layer):
            if _layer_has_state(layer):
                raise TypeError(
                    f"{type(layer).__name__} has parameters and state; it cannot take OTTT's spike+trace input"
                )
            value, _ = layer.apply(_detach_tree(p), s, h.spike)
            z, _ = layer.apply(p, s, h.trace)
            return value + (z - z.detach()), s
        spike, s_new = layer.apply(p, s, h.spike)
        with torch.no_grad():
            trace, _ = layer.apply(p, s, h.trace)
        return SpikeTrace(spike, trace), s_new

    def apply(self, params: Params, states: Params, x: torch.Tensor) -> tuple[torch.Tensor, Params]:
        """One time step: ``x`` [N, ...] -> ``(y [N, ...], new_states)``. Pure."""
        self._check_keys("params", params, self.param_keys)
        self._check_keys("states", states, self.state_keys)
        h: Any = _tensor_input(x, "Sequential.apply")
        new_states = {}
        for i, layer in enumerate(self.layers):
            k = str(i)
            h, s = self._apply_layer(layer, params.get(k), states.get(k), h)
            if k in states:
                new_states[k] = s
        if isinstance(h, SpikeTrace):
            h = h.spike
        return h, new_states


# ----------------------------------------------------------------------------- torch interop


def to_state_dict(params: Params) -> dict[str, torch.Tensor]:
    """Flatten ``params`` into ``torch.nn.Module.state_dict`` keys (``"0.weight"``, ``"3.rc.bias"``)."""
    out: dict[str, torch.Tensor] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(node, torch.Tensor):
            out[prefix] = node.detach().clone()
        else:
            raise TypeError(f"to_state_dict: leaf {prefix!r} is a {type(node).__name__}, expected a tensor")

    walk("", params)
    return out


def from_state_dict(state_dict: dict[str, torch.Tensor], like: Params) -> Params:
    """Inverse of :func:`to_state_dict`: a params tree with ``like``'s structure, dtype and device."""
    flat = to_state_dict(like)
    if set(flat) != set(state_dict):
        raise ValueError(
            f"from_state_dict: `state_dict` keys {sorted(state_dict)} do not match the model's {sorted(flat)}"
        )

    def build(prefix: str, node: Any) -> Any:
        if isinstance(node, dict):
            return {k: build(f"{prefix}.{k}" if prefix else str(k), v) for k, v in node.items()}
        src = state_dict[prefix]
        if tuple(src.shape) != tuple(node.shape):
            raise ValueError(f"from_state_dict: {prefix!r} has shape {tuple(src.shape)}, expected {tuple(node.shape)}")
        return src.detach().to(dtype=node.dtype, device=node.device).clone()

    return build("", like)


_SJ_SURROGATES = {"Sigmoid": _surrogate.Sigmoid, "ATan": _surrogate.ATan,
                  "PiecewiseQuadratic": _surrogate.PiecewiseQuadratic, "Rect": _surrogate.Rect}


def _convert_surrogate(sg: Any, where: str) -> _surrogate.Surrogate:
    name = type(sg).__name__
    if name not in _SJ_SURROGATES or getattr(sg, "spiking", True) is False:
        raise ValueError(f"from_torch: {where} uses surrogate {name}; supported: {sorted(_SJ_SURROGATES)}")
    return _SJ_SURROGATES[name](alpha=float(sg.alpha))


def _convert_neuron(m: Any, where: str) -> Neuron | None:
    name = type(m).__name__
    if name not in ("IFNode", "LIFNode", "OTTTLIFNode", "SLTTLIFNode"):
        return None
    common = dict(v_threshold=float(m.v_threshold),
                  v_reset=None if m.v_reset is None else float(m.v_reset),
                  detach_reset=bool(m.detach_reset),
                  surrogate=_convert_surrogate(m.surrogate_function, where))
    if name == "IFNode":
        return _neurons.IF(**common)
    cls = {"LIFNode": _neurons.LIF, "OTTTLIFNode": _neurons.OTTTLIF, "SLTTLIFNode": _neurons.SLTTLIF}[name]
    return cls(tau=float(m.tau), decay_input=bool(m.decay_input), **common)


_SUPPORTED = ("torch.nn.Linear", "torch.nn.Conv2d (zeros padding)", "torch.nn.AvgPool2d",
              "torch.nn.MaxPool2d", "torch.nn.Flatten", "torch.nn.Dropout", "torch.nn.Identity",
              "spikingjelly IFNode / LIFNode / OTTTLIFNode / SLTTLIFNode",
              "spikingjelly layer.Dropout", "spikingjelly LinearRecurrentContainer")


def _convert_module(m: Any, where: str) -> Layer | Neuron:
    tnn = torch.nn
    neuron = _convert_neuron(m, where)
    if neuron is not None:
        return neuron
    name = type(m).__name__
    if isinstance(m, tnn.Linear):
        return Linear(m.in_features, m.out_features, bias=m.bias is not None)
    if isinstance(m, tnn.Conv2d):
        if m.padding_mode != "zeros" or isinstance(m.padding, str):
            raise ValueError(f"from_torch: {where} Conv2d must use zero padding given as ints, "
                             f"got padding={m.padding!r}, padding_mode={m.padding_mode!r}")
        return Conv2d(m.in_channels, m.out_channels, tuple(m.kernel_size), tuple(m.stride),
                      tuple(m.padding), tuple(m.dilation), m.groups, bias=m.bias is not None)
    if isinstance(m, tnn.AvgPool2d):
        if m.ceil_mode or not m.count_include_pad or m.divisor_override is not None:
            raise ValueError(f"from_torch: {where} AvgPool2d must use ceil_mode=False, "
                             "count_include_pad=True and no divisor_override")
        return AvgPool2d(m.kernel_size, m.stride, m.padding)
    if isinstance(m, tnn.MaxPool2d):
        if m.ceil_mode or m.dilation not in (1, (1, 1)) or m.return_indices:
            raise ValueError(f"from_torch: {where} MaxPool2d must use ceil_mode=False, dilation=1, "
                             "return_indices=False")
        return MaxPool2d(m.kernel_size, m.stride, m.padding)
    if isinstance(m, tnn.Flatten):
        return Flatten(m.start_dim, m.end_dim)
    if isinstance(m, tnn.Dropout) or name == "Dropout":
        return Dropout(float(m.p))
    if isinstance(m, tnn.Identity):
        return Identity()
    if name == "LinearRecurrentContainer":
        inner = _convert_neuron(m.sub_module, f"{where}.sub_module")
        if inner is None:
            raise ValueError(f"from_torch: {where} LinearRecurrentContainer must wrap a spikingjelly "
                             f"neuron, got {type(m.sub_module).__name__}")
        rc = m.rc
        return Recurrent(inner, rc.in_features - rc.out_features, rc.out_features, bias=rc.bias is not None)
    raise ValueError(f"from_torch: {where} is a {name}, which is not supported; supported: {', '.join(_SUPPORTED)}")


def _check_ottt_layout(module: Any, layers: list[Any]) -> None:
    """Refuse layouts where SpikingJelly's OTTTSequential would step a plain neuron twice per step."""
    if type(module).__name__ != "OTTTSequential":
        return
    source = None
    for i, layer in enumerate(layers):
        if isinstance(layer, _neurons.OTTTLIF):
            source = i
        elif isinstance(layer, Neuron) and source is not None:
            raise ValueError(
                f"from_torch: layer {i} ({type(layer).__name__}) receives OTTTLIF {source}'s spike+trace "
                "through parameter-free layers only; SpikingJelly's OTTTSequential applies such a neuron "
                "to both spike and trace, stepping it twice per time step. Put a parametric layer "
                "(Linear/Conv2d) before it, or use OTTTLIF."
            )
        elif _layer_has_params(layer):
            source = None


def from_torch(module: torch.nn.Module, x_example: torch.Tensor) -> tuple[Sequential, Params, Params]:
    """Convert a ``torch.nn.Sequential`` (or SpikingJelly ``OTTTSequential``) into purelearn.

    Returns ``(model, params, states)``: the same architecture, a copy of the module's weights in
    ``x_example``'s dtype and device, and fresh states. Neuron hyperparameters (tau, decay_input,
    v_threshold, v_reset, detach_reset, surrogate and its alpha) are carried over. Use
    :func:`to_state_dict` to write trained weights back (``module.load_state_dict``).
    """
    if not isinstance(module, torch.nn.Sequential):
        raise TypeError(f"from_torch: `module` must be a torch.nn.Sequential, got {type(module).__name__}")
    x_example = _tensor_input(x_example, "from_torch")
    layers = [_convert_module(m, f"layer {i}") for i, m in enumerate(module)]
    _check_ottt_layout(module, layers)
    model = Sequential(*layers)
    template, states = model.init(None, x_example)
    sd = {k: v for k, v in module.state_dict().items() if k in to_state_dict(template)}
    params = from_state_dict(sd, template)
    return model, params, states
