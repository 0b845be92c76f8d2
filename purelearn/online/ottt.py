r"""OTTT (Xiao et al., NeurIPS 2022): online training through time with presynaptic traces.

Reference: SpikingJelly 2.0.0 ``ottt_online_training`` with ``OTTTSequential`` and ``OTTTLIFNode``.
Each :class:`~purelearn.neurons.OTTTLIF` detaches its membrane between steps and keeps the
presynaptic trace ``a_t = (1 − 1/tau)·a_{t−1} + s_t`` in its state. When the learner is built,
:func:`wire` rewires the model (same params and states): an OTTTLIF feeding a parametric layer
emits :class:`SpikeTrace` ``(s, a)``, and that layer ``f`` computes its **value from the spike** and
its **weight gradient from the trace**, while the input gradient still flows into the spike
(SpikingJelly's ``GradwithTrace``)::

    y = f(W.detach(), s) + (f(W, a) − f(W, a).detach())
    ∂L/∂W^l = Σ_t δ^{l+1}_t · (a^l_t)ᵀ            (no terms across time)

Parameter-free layers between them (pooling, flatten, dropout, ``Scale``) are applied to both, the
trace without gradient. A neuron takes the spike. The model itself (``model.apply``, evaluation) is
not changed: an OTTTLIF emits its spike like any neuron.

**Normalisation**, as in the authors' code (``pkuxmq/OTTT-SNN``, ``models/spiking_vgg.py``) and
SpikingJelly's ``OTTTSpikingVGG``: with weight standardisation the layout is
``WSConv2d → OTTTLIF → Scale(2.74) → WSConv2d …``; ``Scale`` multiplies spike and trace alike (the
authors scale their concatenated spike and rate) and the :class:`~purelearn.nn.WSConv2d` is the
parametric layer ``f`` above, ``f(W, a) = conv(a, Ŵ(W))``, so the weight gradient flows through
the standardisation of ``W``. With BatchNorm (their ``BN=True``) it is ``Conv2d → BatchNorm2d →
OTTTLIF``: the conv takes spike and trace, and BatchNorm, after it, sees an ordinary tensor (the
value from the spike, the gradient back into the conv's trace path) and updates its running
statistics once per step. :func:`wire` refuses a BatchNorm between an OTTTLIF and the parametric
layer it feeds (the trace would be normalised by its own batch statistics).

**Residual blocks** (:class:`~purelearn.nn.Residual`), as in the authors' ResNet
(``models/spiking_resnet_imagenet.py``: the block's convolutions and its downsampling shortcut take
spike and rate from the neuron before them): each chain of the block is wired like a model whose
input is the block's input. When an OTTTLIF's spike reaches the block (through parameter-free
layers), both chains receive spike and trace: the first parametric layer of each takes its weight
gradient from the trace, and an identity shortcut (or a chain that reaches a neuron or its end
first) adds the spike. The block's output is a sum, not a spike: it has no trace, and a parametric
layer right after it takes its gradient from that value, as the first layer does from the input.

``online=True`` (OTTT_O) updates at every step; ``online=False`` (OTTT_A) sums the per-step
gradients and updates once, at the sequence's last step. ``outs.loss.sum()`` is the reference's
``batch_loss`` and ``outs.y`` its ``y_all`` (time-major here).

Example::

    >>> import torch, torch.nn.functional as F
    >>> from purelearn import nn, neurons, optim, online
    >>> model = nn.Sequential(nn.Linear(8, 4), neurons.OTTTLIF(), nn.Linear(4, 2), neurons.LIF())
    >>> params, states = model.init(torch.Generator().manual_seed(0), torch.rand(2, 8))
    >>> learner = online.ottt(model, F.mse_loss, optim.sgd(lr=0.1), online=True)
    >>> carry, outs = learner.run(learner.init(params, states), torch.rand(4, 2, 8), torch.rand(4, 2, 2))
    >>> outs.y.shape
    torch.Size([4, 2, 2])
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import torch

from .. import optim, tree
from ..distributed import DataParallel
from ..layer import Layer
from ..neurons import OTTTLIF, Neuron
from ..nn import Residual, Sequential
from ..nn.normalization import BatchNorm
from . import _per_step
from ._checks import check_carry, check_data_parallel, check_flag, check_init, check_model
from ._grad import LossFn, detach_inputs, no_graph
from .driver import Learner, StepOutput

__all__ = ["SpikeTrace", "wire", "check_ottt_model", "OTTTCarry", "OTTT", "ottt"]


class OTTTCarry(NamedTuple):
    """OTTT's carry: ``params``, ``states``, ``opt_state`` and ``grad_sum`` (None when online)."""

    params: Any
    states: Any
    opt_state: Any
    grad_sum: Any


# ----------------------------------------------------------------------------- wiring


class SpikeTrace(NamedTuple):
    """What a wired OTTTLIF emits: the spike (value path) and its trace (weight-gradient path)."""

    spike: torch.Tensor
    trace: torch.Tensor


def _spike(x: Any) -> Any:
    return x.spike if isinstance(x, SpikeTrace) else x


@dataclass(frozen=True)
class _Wired(Layer):
    """A layer of the user's model in a wired one: the same params, state and init; only ``apply`` differs."""

    layer: Layer

    @property
    def has_params(self) -> bool:  # type: ignore[override]
        return self.layer.has_params

    @property
    def has_state(self) -> bool:  # type: ignore[override]
        return self.layer.has_state

    def init(self, generator: torch.Generator | None, x: Any) -> tuple[Any, Any]:
        return self.layer.init(generator, _spike(x))

    def param_shapes(self) -> Any:
        return self.layer.param_shapes()

    def init_state(self, x: torch.Tensor) -> Any:
        return self.layer.init_state(x)

    def draw_state(self, generator: torch.Generator, x: torch.Tensor) -> Any:
        return self.layer.draw_state(generator, x)

    def reset_state(self, state: Any) -> Any:
        return self.layer.reset_state(state)

    def restore_state(self, saved: Any, state: Any) -> Any:
        return self.layer.restore_state(saved, state)

    def inference(self) -> _Wired:
        return replace(self, layer=self.layer.inference())


@dataclass(frozen=True)
class _EmitsTrace(_Wired):
    """An OTTTLIF that emits ``SpikeTrace(spike, new_state.trace)``."""

    def apply(self, params: Any, state: Any, x: torch.Tensor) -> tuple[SpikeTrace, Any]:
        spike, state = self.layer.apply(params, state, x)
        return SpikeTrace(spike, state.trace), state


@dataclass(frozen=True)
class _BothPaths(_Wired):
    """A parameter-free layer applied to the spike and, without gradient, to the trace."""

    def apply(self, params: Any, state: Any, x: SpikeTrace) -> tuple[SpikeTrace, Any]:
        spike, new_state = self.layer.apply(params, state, x.spike)
        with torch.no_grad():
            trace, _ = self.layer.apply(params, state, x.trace)
        return SpikeTrace(spike, trace), new_state


@dataclass(frozen=True)
class _GradFromTrace(_Wired):
    """A parametric layer ``f``: ``y = f(W.detach(), s) + (f(W, a) − f(W, a).detach())``."""

    def apply(self, params: Any, state: Any, x: SpikeTrace) -> tuple[torch.Tensor, Any]:
        value, _ = self.layer.apply(tree.map(torch.detach, params), state, x.spike)
        z, _ = self.layer.apply(params, state, x.trace)
        return value + (z - z.detach()), state


@dataclass(frozen=True)
class _WiredResidual(_Wired):
    """A residual block with wired chains; with ``trace_input`` its input is a :class:`SpikeTrace`, which
    a chain with ``takes_trace`` receives whole and the others as the spike."""

    trace_input: bool = False
    body: Sequential | None = None
    body_takes_trace: bool = False
    shortcut: Sequential | None = None
    shortcut_takes_trace: bool = False

    def apply(self, params: Any, state: Any, x: Any) -> tuple[torch.Tensor, Any]:
        res: Residual = self.layer  # type: ignore[assignment]
        outputs, states = {}, {}
        for name, chain, takes_trace in (("body", self.body, self.body_takes_trace),
                                         ("shortcut", self.shortcut, self.shortcut_takes_trace)):
            if chain is not None:
                chain_input = x if takes_trace else _spike(x)
                outputs[name], states[name] = _thread(chain, res.subtree(name, params, "params"),
                                                      res.subtree(name, state, "states"), chain_input)
        return res.combine(outputs["body"], outputs.get("shortcut", _spike(x))), res.nest(states, "states")

    def inference(self) -> Layer:
        return _wire_residual(self.layer.inference(), self.trace_input)  # type: ignore[arg-type]


def _thread(chain: Sequential, params: dict, states: dict, x: Any) -> tuple[torch.Tensor, dict]:
    """``chain``'s layers applied in turn to ``x`` (a tensor or, for a wired chain, a :class:`SpikeTrace`)."""
    new_states = {}
    for i, layer in enumerate(chain.layers):
        x, s = layer.apply(params.get(str(i)), states.get(str(i)), x)
        if str(i) in states:
            new_states[str(i)] = s
    return x, new_states


def _unwired(model: Sequential) -> tuple[Layer, ...]:
    return tuple(m.layer if isinstance(m, _Wired) else m for m in model.layers)


def _wire_residual(block: Residual, trace_input: bool, path: str = "") -> Layer:
    """``block`` (layer ``path`` of its model) wired, see the module docstring; the block itself where
    nothing changes."""
    chains = {}
    for name, part in block.parts:
        chains[name] = _wire_chain(part.layers, trace_input, f"{path}.{name}.")
    if not trace_input and all(chains[name][0] == part.layers for name, part in block.parts):
        return block
    body, body_takes = chains["body"]
    shortcut, shortcut_takes = chains.get("shortcut", (None, False))
    return _WiredResidual(block, trace_input, Sequential(*body), body_takes,
                          None if shortcut is None else Sequential(*shortcut), shortcut_takes)


def _wire_chain(layers: tuple[Layer, ...], trace_input: bool, prefix: str = "") -> tuple[tuple[Layer, ...], bool]:
    """The wired ``layers`` (named ``prefix + index`` in messages), and whether the chain takes its
    input's trace (``trace_input``: its input is an OTTTLIF's spike and trace, as if an OTTTLIF stood at
    position −1)."""
    wired: list[Layer] = list(layers)
    takes_trace = False
    sources = ([-1] if trace_input else []) + [i for i, m in enumerate(layers) if isinstance(m, OTTTLIF)]
    for i in sources:
        j = i + 1
        while j < len(layers) and not (isinstance(layers[j], (Neuron, Residual)) or layers[j].has_params):
            j += 1
        if j == len(layers) or isinstance(layers[j], Neuron):
            continue  # the spike reaches a neuron or the output: no weight gradient to take from the trace
        block = prefix.rsplit(".", 2)[0]  # prefix "3.body." names the chain's block "3"
        source = f"OTTTLIF {prefix}{i}" if i >= 0 else f"the OTTTLIF before residual block {block}"
        for k in range(i + 1, j + 1):
            if isinstance(layers[k], BatchNorm):
                raise TypeError(
                    f"layer {prefix}{k} ({type(layers[k]).__name__}) receives {source}'s spike+trace; batch "
                    "statistics would normalise the trace apart from the spike and update the running statistics "
                    "from both. Put BatchNorm after the parametric layer, before the neuron (Conv2d -> BatchNorm2d "
                    "-> OTTTLIF), as OTTT's authors do: the parametric layer takes spike and trace, BatchNorm a tensor"
                )
        if isinstance(layers[j], Residual):
            wired[j] = _wire_residual(layers[j], True, f"{prefix}{j}")
        elif layers[j].has_state:
            raise TypeError(
                f"layer {prefix}{j} ({type(layers[j]).__name__}) has parameters and state and receives {source}'s "
                "spike+trace; it cannot take OTTT's spike+trace input (its recurrent weight would need its own "
                "output's trace): use a feed-forward parametric layer after an OTTTLIF"
            )
        else:
            wired[j] = _GradFromTrace(layers[j])
        if i >= 0:
            wired[i] = _EmitsTrace(layers[i])
        else:
            takes_trace = True
        wired[i + 1:j] = [_BothPaths(m) for m in layers[i + 1:j]]
    for k, layer in enumerate(layers):
        if isinstance(layer, Residual) and wired[k] is layer:
            wired[k] = _wire_residual(layer, False, f"{prefix}{k}")
    return tuple(wired), takes_trace


def wire(model: Sequential) -> Sequential:
    """``model`` for OTTT's gradient: the same params/states keys, init and states; in ``apply``, every
    OTTTLIF whose spike reaches a parametric layer (through parameter-free layers only) hands that
    layer its trace for the weight gradient (see the module docstring); residual blocks are wired
    chain by chain. Values are ``model.apply``'s.

    Idempotent: wiring a wired model gives it back. ``TypeError`` for a parametric layer with state
    (``Recurrent``) fed by an OTTTLIF, and for a BatchNorm between an OTTTLIF and the parametric layer
    it feeds (put it after that layer: ``Conv2d → BatchNorm2d → OTTTLIF``).
    """
    wired, _ = _wire_chain(_unwired(model), False)
    return model if wired == model.layers else Sequential(*wired)


# ----------------------------------------------------------------------------- the learner


def check_ottt_model(model: Sequential) -> None:
    """Every parametric layer after the first neuron must be fed by an OTTTLIF (which keeps a trace);
    inside a residual block, by the OTTTLIF before the block or one of its chain's own."""
    _check_chain(_unwired(model), None, "")


def _check_chain(layers: tuple[Layer, ...], feeding: Any, prefix: str) -> None:
    """:func:`check_ottt_model` of a chain whose input ``feeding`` (``(path, neuron)`` or None) emits."""
    for i, layer in enumerate(layers):
        if isinstance(layer, _Wired):
            layer = layer.layer
        if isinstance(layer, Residual):
            for name, part in layer.parts:
                _check_chain(part.layers, feeding, f"{prefix}{i}.{name}.")
            feeding = None  # the block's output is a sum, not a neuron's spike
        elif isinstance(layer, Neuron):
            if layer.has_params:
                raise ValueError(f"ottt: layer {prefix}{i} ({type(layer).__name__}) has parameters; OTTT supports "
                                 "parameter-free neurons only")
            feeding = (f"{prefix}{i}", layer)
        elif layer.has_params and feeding is not None and not isinstance(feeding[1], OTTTLIF):
            j, neuron = feeding
            raise ValueError(
                f"ottt: layer {prefix}{i} ({type(layer).__name__}) has parameters and is fed by layer {j} "
                f"({type(neuron).__name__}), which emits no presynaptic trace; OTTT needs "
                "neurons.OTTTLIF before every parametric layer (its weight gradient uses the trace)"
            )


@dataclass(frozen=True)
class OTTT(Learner):
    """The OTTT learner; build it with :func:`ottt`. ``model`` is the wired model (:func:`wire`)."""

    model: Sequential
    loss_fn: LossFn
    optimizer: optim.GradientTransformation
    online: bool = True
    data_parallel: DataParallel | None = None

    def __post_init__(self) -> None:
        check_model("ottt", self.model, self.loss_fn, self.optimizer)
        check_data_parallel("ottt", self.data_parallel)
        check_flag("ottt", "online", self.online)
        check_ottt_model(self.model)
        object.__setattr__(self, "model", wire(self.model))

    def init(self, params: Any, states: Any) -> OTTTCarry:
        """Carry for the first sequence (``grad_sum`` zeros when accumulating, else None)."""
        check_init("ottt.init", self.model, params, states)
        params, states = detach_inputs(params, states)
        grad_sum = None if self.online else tree.zeros_like(params)
        return OTTTCarry(params, states, self.optimizer.init(params), grad_sum)

    @no_graph
    def step(self, carry: OTTTCarry, x_t: torch.Tensor, y_t: torch.Tensor, last: bool = False
             ) -> tuple[OTTTCarry, StepOutput]:
        """One step; with ``online=False`` the update happens at ``last=True``."""
        check_carry("ottt.step", carry, OTTTCarry)
        return _per_step.per_step(self, "ottt.step", carry, x_t, y_t, last)

    def updates_per_sequence(self, T: int) -> int:
        """T online (OTTT_O), one per sequence otherwise (OTTT_A)."""
        return _per_step.updates_per_sequence(self.online, T)


def ottt(model: Sequential, loss_fn: LossFn, optimizer: optim.GradientTransformation, online: bool = True, *,
         data_parallel: DataParallel | None = None) -> OTTT:
    """OTTT learner: ``online=True`` is OTTT_O (update per step), ``False`` is OTTT_A (per sequence);
    ``data_parallel`` averages the applied gradient over the ranks of a process group
    (:mod:`~purelearn.online._per_step`: every step online, the sequence's sum otherwise)."""
    return OTTT(model, loss_fn, optimizer, online, data_parallel)
