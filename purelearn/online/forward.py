"""The forward pass as a learner without updates: evaluation through the same driver as training.

    learner     = online.forward(model.inference(), loss_fn)
    carry       = learner.init(params, model.init_states(x_seq[0]))
    carry, outs = learner.run(carry, x_seq, y_seq)        # outs: StepOutput(loss [T], y [T, ...])

Each step is ``model.apply`` with no autograd graph; ``params`` are never changed. ``run`` returns
the carry with fresh states, ready for the next sequence.

Example::

    >>> import torch, torch.nn.functional as F
    >>> from purelearn import nn, neurons, online
    >>> model = nn.Sequential(nn.Linear(3, 2), neurons.LIF())
    >>> params, states = model.init(torch.Generator().manual_seed(0), torch.rand(4, 3))
    >>> learner = online.forward(model, F.mse_loss)
    >>> _, outs = learner.run(learner.init(params, states), torch.rand(5, 4, 3), torch.rand(5, 4, 2))
    >>> outs.loss.shape, outs.y.requires_grad
    (torch.Size([5]), False)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from ..nn import Sequential
from ._checks import check_carry, check_flag, check_init, check_network, check_step_inputs
from ._grad import LossFn, detach_inputs, forward_only, no_graph
from .driver import Learner, StepOutput

__all__ = ["ForwardCarry", "Forward", "forward"]


class ForwardCarry(NamedTuple):
    """The forward pass's carry: ``params`` (never changed) and neuron ``states``."""

    params: Any
    states: Any


@dataclass(frozen=True)
class Forward(Learner):
    """The forward-only learner; build it with :func:`forward`."""

    model: Sequential
    loss_fn: LossFn

    def __post_init__(self) -> None:
        check_network("forward", self.model, self.loss_fn)

    def init(self, params: Any, states: Any) -> ForwardCarry:
        """The carry: ``params`` and ``states`` as given (detached)."""
        check_init("forward.init", self.model, params, states)
        return ForwardCarry(*detach_inputs(params, states))

    @no_graph
    def step(self, carry: ForwardCarry, x_t: torch.Tensor, y_t: torch.Tensor, last: bool = False
             ) -> tuple[ForwardCarry, StepOutput]:
        """One step forward, ``x_t`` [N, ...] -> loss (0-d) and y [N, ...], no graph."""
        check_carry("forward.step", carry, ForwardCarry)
        check_flag("forward.step", "last", last)
        check_step_inputs("forward.step", x_t, y_t)
        loss, y_hat, states = forward_only(self.model, self.loss_fn, carry.params, carry.states, x_t, y_t)
        return carry._replace(states=states), StepOutput(loss, y_hat)

    def updates_per_sequence(self, T: int) -> int:
        """None: the forward pass updates nothing."""
        return 0


def forward(model: Sequential, loss_fn: LossFn) -> Forward:
    """The forward pass of ``model`` with per-step ``loss_fn``, walked by the learners' driver."""
    return Forward(model, loss_fn)
