"""Spiking neurons: pure single-step dynamics and the layer objects built on them.

Functional core (no state anywhere but in the arguments)::

    if_step(x, v, ...)              -> (spike, v_next)
    lif_step(x, v, ...)             -> (spike, v_next)
    alif_step(x, state, ...)        -> (spike, ALIFState)
    li_step(x, v, tau)              -> v_next         (leaky integrator: no spike, the output is v)

Every neuron charges, fires and resets (SpikingJelly's equations)::

    charge   H = V + (X − (V − V_reset)) / tau      (LIF, decay_input=True)
             H = V − (V − V_reset) / tau + X        (LIF, decay_input=False)
             H = V + X                              (IF)
    fire     S = Θ(H − V_th)                        (surrogate gradient in backward)
    reset    V = S·V_reset + (1 − S)·H              (hard, v_reset a float)
             V = H − S·V_th                         (soft, v_reset=None)

Layer objects (``IF``, ``LIF``, ``OTTTLIF``, ``SLTTLIF``, ``ALIF``, and ``LI``, a non-spiking
leaky readout) are frozen dataclasses of
hyperparameters and layers like any other (:class:`~purelearn.layer.Layer`, the protocol
``init / init_state / apply`` that :mod:`purelearn.nn` composes), with ``has_state=True``. States
are named tuples; a fresh state is *batch-agnostic*: 0-d tensors that broadcast to the first input
(SpikingJelly keeps a scalar ``0.`` until the first step too), so consecutive sequences may have
different batch sizes.

Example::

    >>> import torch
    >>> from purelearn import neurons
    >>> lif = neurons.LIF(tau=2.0)
    >>> x = torch.tensor([[0.5, 3.0]])
    >>> state = lif.init_state(x)
    >>> spike, state = lif.apply(None, state, x)
    >>> spike, state.v
    (tensor([[0., 1.]]), tensor([[0.2500, 0.0000]]))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch

from . import surrogate as _surrogate
from . import validate
from .layer import Layer

__all__ = [
    "IFState",
    "LIFState",
    "OTTTLIFState",
    "ALIFState",
    "LIState",
    "if_step",
    "lif_step",
    "alif_step",
    "trace_step",
    "li_step",
    "IF",
    "LIF",
    "OTTTLIF",
    "SLTTLIF",
    "ALIF",
    "LI",
    "Neuron",
]

Scalar = float | torch.Tensor


class IFState(NamedTuple):
    """State of an IF neuron layer: membrane potential ``v`` ([N, ...] or 0-d when fresh)."""

    v: torch.Tensor


class LIFState(NamedTuple):
    """State of a LIF / SLTT-LIF neuron layer: membrane potential ``v``."""

    v: torch.Tensor


class OTTTLIFState(NamedTuple):
    """State of an OTTT-LIF layer: membrane ``v`` and presynaptic trace ``trace`` (a_t)."""

    v: torch.Tensor
    trace: torch.Tensor


class ALIFState(NamedTuple):
    """State of an adaptive LIF layer: membrane ``v``, adaptation ``b``, previous spike ``s``."""

    v: torch.Tensor
    b: torch.Tensor
    s: torch.Tensor


class LIState(NamedTuple):
    """State of a leaky integrator (:class:`LI`): membrane potential ``v``."""

    v: torch.Tensor


# ----------------------------------------------------------------------------- functional core


def _reset(h: torch.Tensor, spike: torch.Tensor, v_threshold: Scalar, v_reset: float | None,
           detach_reset: bool) -> torch.Tensor:
    s = spike.detach() if detach_reset else spike
    if v_reset is None:
        return h - s * v_threshold
    return s * v_reset + (1.0 - s) * h


def if_step(
    x: torch.Tensor,
    v: torch.Tensor,
    *,
    v_threshold: Scalar = 1.0,
    v_reset: float | None = 0.0,
    detach_reset: bool = False,
    surrogate: _surrogate.Surrogate = _surrogate.Sigmoid(),
) -> tuple[torch.Tensor, torch.Tensor]:
    """One IF step: ``H = V + X``; fire; reset. Shapes: ``x`` [N, ...], ``v`` [N, ...] or 0-d."""
    h = v + x
    spike = surrogate(h - v_threshold)
    return spike, _reset(h, spike, v_threshold, v_reset, detach_reset)


def lif_step(
    x: torch.Tensor,
    v: torch.Tensor,
    *,
    tau: Scalar = 2.0,
    decay_input: bool = True,
    v_threshold: Scalar = 1.0,
    v_reset: float | None = 0.0,
    detach_reset: bool = False,
    surrogate: _surrogate.Surrogate = _surrogate.Sigmoid(),
) -> tuple[torch.Tensor, torch.Tensor]:
    """One LIF step (SpikingJelly ``LIFNode``). Shapes: ``x`` [N, ...], ``v`` [N, ...] or 0-d.

    ``tau`` may be a (batched) tensor, so it can be swept under ``torch.func.vmap``.
    """
    reset_value = 0.0 if v_reset is None else v_reset
    if decay_input:
        h = v + (x - (v - reset_value)) / tau
    else:
        h = v - (v - reset_value) / tau + x
    spike = surrogate(h - v_threshold)
    return spike, _reset(h, spike, v_threshold, v_reset, detach_reset)


def trace_step(trace: torch.Tensor, spike: torch.Tensor, tau: Scalar) -> torch.Tensor:
    """OTTT presynaptic trace ``a_t = (1 − 1/tau)·a_{t−1} + s_t``, without gradient."""
    return (trace * (1.0 - 1.0 / tau) + spike).detach()


def alif_step(
    x: torch.Tensor,
    state: ALIFState,
    *,
    tau_m: Scalar = 20.0,
    tau_adp: Scalar = 200.0,
    beta: Scalar = 1.8,
    v_threshold: Scalar = 0.1,
    surrogate: _surrogate.Surrogate = _surrogate.Sigmoid(),
) -> tuple[torch.Tensor, ALIFState]:
    """One adaptive-threshold LIF step (Bellec et al. 2018; Yin, Corradi & Bohté 2023)::

        alpha = exp(−1/tau_m),   rho = exp(−1/tau_adp)
        b_t   = rho·b_{t−1} + (1 − rho)·s_{t−1}
        θ_t   = v_threshold + beta·b_t
        v_t   = alpha·v_{t−1} + (1 − alpha)·x_t − θ_t·s_{t−1}      (soft reset by the last spike)
        s_t   = Θ(v_t − θ_t)

    ``tau_m`` / ``tau_adp`` may be tensors of shape [features] (trainable) or scalars.
    """
    alpha = torch.exp(-1.0 / torch.as_tensor(tau_m, dtype=x.dtype, device=x.device))
    rho = torch.exp(-1.0 / torch.as_tensor(tau_adp, dtype=x.dtype, device=x.device))
    b = (rho * state.b + (1.0 - rho) * state.s).expand_as(x).clone()  # x's shape, also for [features] tau_adp
    theta = v_threshold + beta * b
    v = alpha * state.v + (1.0 - alpha) * x - theta * state.s
    spike = surrogate(v - theta)
    return spike, ALIFState(v=v, b=b, s=spike)


def li_step(x: torch.Tensor, v: torch.Tensor, tau: Scalar) -> torch.Tensor:
    """One leaky-integrator step, ``v_t = alpha·v_{t−1} + (1 − alpha)·x_t`` with ``alpha = exp(−1/tau)``
    (ALIF's membrane without threshold or reset); ``tau`` a scalar or a tensor [features]."""
    alpha = torch.exp(-1.0 / torch.as_tensor(tau, dtype=x.dtype, device=x.device))
    return alpha * v + (1.0 - alpha) * x


# ----------------------------------------------------------------------------- validation helpers


def _check_number(owner: str, name: str, value: Any, *, gt: float | None = None,
                  allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    validate.number(owner, name, value, low=gt, low_open=True)


def _check_flags(layer: Any, *names: str) -> None:
    for name in names:
        validate.flag(type(layer).__name__, name, getattr(layer, name))


def _check_state_shape(owner: str, name: str, v: torch.Tensor, x: torch.Tensor) -> None:
    if v.dtype != x.dtype or v.device != x.device:
        raise TypeError(
            f"{owner}: state `{name}` is {v.dtype} on {v.device} but the input x is {x.dtype} on {x.device}; "
            "states follow the data: build them with model.init / model.init_states on data like x"
        )
    if v.dim() != 0 and v.shape != x.shape:
        raise ValueError(
            f"{owner}: state `{name}` has shape {tuple(v.shape)} but the input x has shape "
            f"{tuple(x.shape)}; a state must match x (same batch size) or be fresh (0-d). "
            "Start a sequence with another batch size from model.init_states(x)."
        )


def _fresh(value: float, x: torch.Tensor) -> torch.Tensor:
    return torch.full((), value, dtype=x.dtype, device=x.device)


def _input(x: Any) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"neuron input `x` must be a tensor, got {type(x).__name__}")
    return x


# ----------------------------------------------------------------------------- layer objects


class Neuron(Layer):
    """Base class of the neuron layers: stateful, parameter-free unless stated (``ALIF(learn_tau=True)``)."""

    has_state = True
    detaches_v: bool = False

    def init_state(self, x: torch.Tensor) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def reset_state(self, state: Any) -> Any:
        """The fresh state for the next sequence (batch-agnostic, ``state``'s dtype and device)."""
        return self.init_state(state[0])


@dataclass(frozen=True)
class IF(Neuron):
    """Integrate-and-fire layer (SpikingJelly ``IFNode``): ``H = V + X``."""

    v_threshold: Scalar = 1.0
    v_reset: float | None = 0.0
    detach_reset: bool = False
    surrogate: _surrogate.Surrogate = field(default_factory=_surrogate.Sigmoid)

    def __post_init__(self) -> None:
        _check_number("IF", "v_threshold", self.v_threshold)
        _check_number("IF", "v_reset", self.v_reset, allow_none=True)
        _check_flags(self, "detach_reset")
        object.__setattr__(self, "surrogate", _surrogate.get(self.surrogate))

    def init_state(self, x: torch.Tensor) -> IFState:
        """Fresh batch-agnostic state: ``v`` = v_reset (or 0 for soft reset), 0-d."""
        return IFState(v=_fresh(0.0 if self.v_reset is None else self.v_reset, _input(x)))

    def apply(self, params: None, state: IFState, x: torch.Tensor) -> tuple[torch.Tensor, IFState]:
        """One step: ``x`` [N, ...] -> spike [N, ...] and the next state."""
        x = _input(x)
        _check_state_shape("IF", "v", state.v, x)
        spike, v = if_step(x, state.v, v_threshold=self.v_threshold, v_reset=self.v_reset,
                           detach_reset=self.detach_reset, surrogate=self.surrogate)
        return spike, IFState(v=v)


@dataclass(frozen=True)
class LIF(Neuron):
    """Leaky integrate-and-fire layer with SpikingJelly ``LIFNode``'s defaults.

    ``tau`` (> 1) may be a tensor, ``v_reset=None`` means soft reset.
    """

    tau: Scalar = 2.0
    decay_input: bool = True
    v_threshold: Scalar = 1.0
    v_reset: float | None = 0.0
    detach_reset: bool = False
    surrogate: _surrogate.Surrogate = field(default_factory=_surrogate.Sigmoid)

    def __post_init__(self) -> None:
        name = type(self).__name__
        _check_number(name, "tau", self.tau, gt=1.0)
        _check_number(name, "v_threshold", self.v_threshold)
        _check_number(name, "v_reset", self.v_reset, allow_none=True)
        _check_flags(self, "decay_input", "detach_reset")
        object.__setattr__(self, "surrogate", _surrogate.get(self.surrogate))

    def init_state(self, x: torch.Tensor) -> LIFState:
        """Fresh batch-agnostic state: ``v`` = v_reset (or 0 for soft reset), 0-d."""
        return LIFState(v=_fresh(0.0 if self.v_reset is None else self.v_reset, _input(x)))

    def _step(self, x: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return lif_step(x, v, tau=self.tau, decay_input=self.decay_input, v_threshold=self.v_threshold,
                        v_reset=self.v_reset, detach_reset=self.detach_reset, surrogate=self.surrogate)

    def apply(self, params: None, state: LIFState, x: torch.Tensor) -> tuple[torch.Tensor, LIFState]:
        """One step: ``x`` [N, ...] -> spike [N, ...] and the next state."""
        x = _input(x)
        _check_state_shape(type(self).__name__, "v", state.v, x)
        v = state.v.detach() if self.detaches_v else state.v
        spike, v = self._step(x, v)
        return spike, LIFState(v=v)


@dataclass(frozen=True)
class SLTTLIF(LIF):
    """SLTT's LIF (SpikingJelly ``SLTTLIFNode``): the temporal path ``V_{t−1} → H_t`` is detached.

    Defaults: tau=2, decay_input=True, v_reset=0, detach_reset=True. Within a step the spatial
    path is differentiated as usual.
    """

    detach_reset: bool = True
    detaches_v = True


@dataclass(frozen=True)
class OTTTLIF(LIF):
    """OTTT's LIF (SpikingJelly ``OTTTLIFNode``): V detached between steps, keeps a presynaptic trace.

    Defaults: tau=2, decay_input=False, v_reset=None (soft), detach_reset=True. It emits the spike,
    like any neuron, and keeps ``trace_t = (1 − 1/tau)·trace_{t−1} + spike_t`` in its state
    (:class:`OTTTLIFState`). OTTT computes the next parametric layer's weight gradient from that
    trace (see :func:`purelearn.online.ottt.wire`); evaluation uses the model as it is.
    """

    decay_input: bool = False
    v_reset: float | None = None
    detach_reset: bool = True
    detaches_v = True

    def init_state(self, x: torch.Tensor) -> OTTTLIFState:
        """Fresh batch-agnostic state: ``v`` = 0 and ``trace`` = 0, both 0-d."""
        x = _input(x)
        return OTTTLIFState(v=_fresh(0.0 if self.v_reset is None else self.v_reset, x), trace=_fresh(0.0, x))

    def apply(self, params: None, state: OTTTLIFState, x: torch.Tensor) -> tuple[torch.Tensor, OTTTLIFState]:
        """One step: ``x`` [N, ...] -> spike [N, ...] and the next state (``v`` and the new ``trace``)."""
        x = _input(x)
        _check_state_shape("OTTTLIF", "v", state.v, x)
        _check_state_shape("OTTTLIF", "trace", state.trace, x)
        spike, v = self._step(x, state.v.detach())
        trace = trace_step(state.trace, spike, self.tau)
        return spike, OTTTLIFState(v=v, trace=trace)


@dataclass(frozen=True)
class ALIF(Neuron):
    """Adaptive-threshold LIF for recurrent online learning (see :func:`alif_step`).

    With ``learn_tau=True`` the time constants are parameters of shape [features]
    (``params = {"tau_m": ..., "tau_adp": ...}``), initialised at ``tau_m`` / ``tau_adp``;
    otherwise they are fixed (numbers or tensors, sweepable under vmap).
    """

    tau_m: Scalar = 20.0
    tau_adp: Scalar = 200.0
    beta: Scalar = 1.8
    v_threshold: Scalar = 0.1
    learn_tau: bool = False
    surrogate: _surrogate.Surrogate = field(default_factory=_surrogate.Sigmoid)

    @property
    def has_params(self) -> bool:  # type: ignore[override]
        """The time constants are parameters when ``learn_tau``."""
        return self.learn_tau

    def param_shapes(self) -> dict[str, tuple[None]] | None:
        """``tau_m`` and ``tau_adp`` [features] when ``learn_tau`` (features: the input's)."""
        return {"tau_m": (None,), "tau_adp": (None,)} if self.learn_tau else None

    def __post_init__(self) -> None:
        _check_number("ALIF", "tau_m", self.tau_m, gt=0.0)
        _check_number("ALIF", "tau_adp", self.tau_adp, gt=0.0)
        _check_number("ALIF", "beta", self.beta)
        _check_number("ALIF", "v_threshold", self.v_threshold)
        _check_flags(self, "learn_tau")
        object.__setattr__(self, "surrogate", _surrogate.get(self.surrogate))

    def init(self, generator: torch.Generator | None, x: torch.Tensor) -> tuple[Any, ALIFState]:
        """``params`` holds the time constants when ``learn_tau``; the state is fresh."""
        x = _input(x)
        params = None
        if self.learn_tau:
            features = x.shape[-1]
            params = {
                "tau_m": torch.full((features,), float(self.tau_m), dtype=x.dtype, device=x.device),
                "tau_adp": torch.full((features,), float(self.tau_adp), dtype=x.dtype, device=x.device),
            }
        return params, self.init_state(x)

    def init_state(self, x: torch.Tensor) -> ALIFState:
        """Fresh batch-agnostic state: ``v``, ``b`` and ``s`` all 0, 0-d."""
        x = _input(x)
        return ALIFState(v=_fresh(0.0, x), b=_fresh(0.0, x), s=_fresh(0.0, x))

    def apply(self, params: dict | None, state: ALIFState, x: torch.Tensor) -> tuple[torch.Tensor, ALIFState]:
        """One step: ``x`` [N, features] -> spike [N, features] and the next state."""
        x = _input(x)
        for name in ALIFState._fields:
            _check_state_shape("ALIF", name, getattr(state, name), x)
        tau_m, tau_adp = (params["tau_m"], params["tau_adp"]) if self.learn_tau else (self.tau_m, self.tau_adp)
        return alif_step(x, state, tau_m=tau_m, tau_adp=tau_adp, beta=self.beta,
                         v_threshold=self.v_threshold, surrogate=self.surrogate)


@dataclass(frozen=True)
class LI(Neuron):
    """Leaky integrator, a non-spiking readout (Yin et al.'s SRNN output layer): the output is the
    membrane, ``y_t = v_t = alpha·v_{t−1} + (1 − alpha)·x_t`` (:func:`li_step`), so the logits at step t
    are a leaky average of the last linear layer's outputs up to t.

    With ``learn_tau=True`` the time constant is a parameter [features] (``params = {"tau": ...}``)
    initialised at ``tau``; otherwise it is fixed (a number or a tensor).
    """

    tau: Scalar = 20.0
    learn_tau: bool = False

    @property
    def has_params(self) -> bool:  # type: ignore[override]
        """The time constant is a parameter when ``learn_tau``."""
        return self.learn_tau

    def param_shapes(self) -> dict[str, tuple[None]] | None:
        """``tau`` [features] when ``learn_tau`` (features: the input's)."""
        return {"tau": (None,)} if self.learn_tau else None

    def __post_init__(self) -> None:
        _check_number("LI", "tau", self.tau, gt=0.0)
        _check_flags(self, "learn_tau")

    def init(self, generator: torch.Generator | None, x: torch.Tensor) -> tuple[Any, LIState]:
        """``params`` holds ``tau`` [features] when ``learn_tau``; the state is fresh."""
        x = _input(x)
        params = {"tau": torch.full((x.shape[-1],), float(self.tau), dtype=x.dtype, device=x.device)} \
            if self.learn_tau else None
        return params, self.init_state(x)

    def init_state(self, x: torch.Tensor) -> LIState:
        """Fresh batch-agnostic state: ``v`` = 0, 0-d."""
        return LIState(v=_fresh(0.0, _input(x)))

    def apply(self, params: dict | None, state: LIState, x: torch.Tensor) -> tuple[torch.Tensor, LIState]:
        """One step: ``x`` [N, features] -> the membrane [N, features] (output and next state)."""
        x = _input(x)
        _check_state_shape("LI", "v", state.v, x)
        v = li_step(x, state.v, params["tau"] if self.learn_tau else self.tau)
        return v, LIState(v=v)
