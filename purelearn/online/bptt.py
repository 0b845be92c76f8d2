r"""BPTT: plain backpropagation through time, the baseline every online method is compared with.

``run`` differentiates the sum of per-step losses over the whole sequence and makes one update::

    L(W) = Σ_t l_t(W; x_{≤t}),     W ← optimizer step on ∇L(W)

Memory grows with T (every step's activations are kept for the backward pass); the online
learners' does not. With :class:`~purelearn.neurons.SLTTLIF` neurons the temporal path is detached
and BPTT's gradient equals SLTT's accumulated one.

BPTT has no per-step form: ``step`` raises ``TypeError``; use ``run``.

Example::

    >>> import torch, torch.nn.functional as F
    >>> from purelearn import nn, neurons, optim, online
    >>> model = nn.Sequential(nn.Linear(8, 2), neurons.LIF())
    >>> params, states = model.init(torch.Generator().manual_seed(0), torch.rand(2, 8))
    >>> learner = online.bptt(model, F.mse_loss, optim.adam(1e-3))
    >>> carry, outs = learner.run(learner.init(params, states), torch.rand(5, 2, 8), torch.rand(5, 2, 2))
    >>> outs.loss.shape
    torch.Size([5])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from .. import optim
from ..nn import Sequential
from ._base import (
    LossFn,
    StepOutput,
    check_model,
    check_sequence,
    check_step_inputs,
    grad_with_aux,
    sequence_loss,
)

__all__ = ["BPTTCarry", "BPTT", "bptt"]


class BPTTCarry(NamedTuple):
    """BPTT's carry: ``params``, ``states`` and ``opt_state``."""

    params: Any
    states: Any
    opt_state: Any


@dataclass(frozen=True)
class BPTT:
    """The BPTT learner; build it with :func:`bptt`."""

    model: Sequential
    loss_fn: LossFn
    optimizer: optim.GradientTransformation

    def __post_init__(self) -> None:
        check_model("bptt", self.model, self.loss_fn, self.optimizer)

    def init(self, params: Any, states: Any) -> BPTTCarry:
        """Carry for the first sequence."""
        return BPTTCarry(params, states, self.optimizer.init(params))

    def step(self, carry: BPTTCarry, x_t: torch.Tensor, y_t: torch.Tensor, last: bool = False) -> None:
        """BPTT has no per-step update; raises ``TypeError`` (use :meth:`run`)."""
        raise TypeError("bptt has no per-step form: its gradient needs the whole sequence; use learner.run")

    def sequence_loss(self, params: Any, states: Any, x_seq: torch.Tensor, y_seq: torch.Tensor
                      ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, Any]]:
        """Σ_t l_t over the sequence from ``states``; aux ``(losses [T], y [T, ...], final states)``."""
        return sequence_loss(self.model, self.loss_fn, params, states, x_seq, y_seq)

    def end_sequence(self, carry: BPTTCarry) -> BPTTCarry:
        """Fresh neuron states; params and optimizer state kept."""
        return carry._replace(states=self.model.reset_states(carry.states))

    def run(self, carry: BPTTCarry, x_seq: torch.Tensor, y_seq: torch.Tensor) -> tuple[BPTTCarry, StepOutput]:
        """One sequence: one gradient of Σ_t l_t and one update. Outputs are detached, [T, ...]."""
        check_sequence("BPTT", x_seq, y_seq)
        check_step_inputs("bptt.run", x_seq[0], y_seq[0])  # same batch size (all steps share shapes)
        objective = lambda p: self.sequence_loss(p, carry.states, x_seq, y_seq)
        grads, (losses, ys, states) = grad_with_aux(objective, carry.params)
        updates, opt_state = self.optimizer.update(grads, carry.opt_state, carry.params)
        params = optim.apply_updates(carry.params, updates)
        return self.end_sequence(BPTTCarry(params, states, opt_state)), StepOutput(losses, ys)


def bptt(model: Sequential, loss_fn: LossFn, optimizer: optim.GradientTransformation) -> BPTT:
    """BPTT learner over the same models (see the module docstring)."""
    return BPTT(model, loss_fn, optimizer)
