r"""OTTT (Xiao et al., NeurIPS 2022): online training through time with presynaptic traces.

Reference: SpikingJelly 2.0.0 ``ottt_online_training`` with ``OTTTSequential`` and ``OTTTLIFNode``.
Each :class:`~purelearn.neurons.OTTTLIF` detaches its membrane between steps and emits
``(spike, trace)`` with ``a_t = (1 − 1/tau)·a_{t−1} + s_t``. The next parametric layer computes its
value from the spike and its weight gradient from the trace, while the input gradient still flows
into the spike (see :mod:`purelearn.nn`), so::

    ∂L/∂W^l = Σ_t δ^{l+1}_t · (a^l_t)ᵀ            (no terms across time)

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

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from .. import optim, tree
from ..neurons import Neuron
from ..nn import Sequential, _layer_has_params
from ._base import LossFn, StepOutput, check_model, run_sequence
from ._per_step import per_step

__all__ = ["OTTTCarry", "OTTT", "ottt"]


class OTTTCarry(NamedTuple):
    """OTTT's carry: ``params``, ``states``, ``opt_state`` and ``grad_sum`` (None when online)."""

    params: Any
    states: Any
    opt_state: Any
    grad_sum: Any


def check_ottt_model(model: Sequential) -> None:
    """Every parametric layer after the first neuron must be fed by an OTTTLIF (which emits a trace)."""
    feeding: Any = None
    for i, layer in enumerate(model.layers):
        if isinstance(layer, Neuron):
            if _layer_has_params(layer):
                raise ValueError(f"ottt: layer {i} ({type(layer).__name__}) has parameters; OTTT supports "
                                 "parameter-free neurons only")
            feeding = (i, layer)
        elif _layer_has_params(layer) and feeding is not None and not feeding[1].emits_trace:
            j, neuron = feeding
            raise ValueError(
                f"ottt: layer {i} ({type(layer).__name__}) has parameters and is fed by layer {j} "
                f"({type(neuron).__name__}), which emits no presynaptic trace; OTTT needs "
                "neurons.OTTTLIF before every parametric layer (its weight gradient uses the trace)"
            )


@dataclass(frozen=True)
class OTTT:
    """The OTTT learner; build it with :func:`ottt`."""

    model: Sequential
    loss_fn: LossFn
    optimizer: optim.GradientTransformation
    online: bool = True

    def __post_init__(self) -> None:
        check_model("ottt", self.model, self.loss_fn, self.optimizer)
        if not isinstance(self.online, bool):
            raise TypeError(f"ottt: `online` must be a bool, got {type(self.online).__name__}")
        check_ottt_model(self.model)

    def init(self, params: Any, states: Any) -> OTTTCarry:
        """Carry for the first sequence (``grad_sum`` zeros when accumulating, else None)."""
        grad_sum = None if self.online else tree.zeros_like(params)
        return OTTTCarry(params, states, self.optimizer.init(params), grad_sum)

    def step(self, carry: OTTTCarry, x_t: torch.Tensor, y_t: torch.Tensor, last: bool = False
             ) -> tuple[OTTTCarry, StepOutput]:
        """One step; with ``online=False`` the update happens at ``last=True``."""
        return per_step(self, "ottt.step", carry, x_t, y_t, last)

    def end_sequence(self, carry: OTTTCarry) -> OTTTCarry:
        """Fresh neuron states (and traces); params and optimizer state kept."""
        return carry._replace(states=self.model.reset_states(carry.states))

    def run(self, carry: OTTTCarry, x_seq: torch.Tensor, y_seq: torch.Tensor) -> tuple[OTTTCarry, StepOutput]:
        """One time-major sequence ``x_seq`` [T, N, ...], ``y_seq`` [T, N, ...]; outputs [T, ...]."""
        return run_sequence(self, carry, x_seq, y_seq)


def ottt(model: Sequential, loss_fn: LossFn, optimizer: optim.GradientTransformation, online: bool = True) -> OTTT:
    """OTTT learner: ``online=True`` is OTTT_O (update per step), ``False`` is OTTT_A (per sequence)."""
    return OTTT(model, loss_fn, optimizer, online)
