r"""BPTT: plain backpropagation through time, the baseline every online method is compared with.

``run`` differentiates the sum of per-step losses over the whole sequence and makes one update::

    L(W) = Σ_t l_t(W; x_{≤t}),     W ← optimizer step on ∇L(W)

Memory grows with T (every step's activations are kept for the backward pass); the online
learners' does not. With :class:`~purelearn.neurons.SLTTLIF` neurons the temporal path is detached
and BPTT's gradient equals SLTT's accumulated one.

**Data parallelism** (``data_parallel=``:class:`~purelearn.distributed.DataParallel`): the sequence's
gradient is averaged over the ranks, one all-reduce per update.

Its plan is one call over the whole sequence: ``step(carry, x_win, y_win)`` on a window [L, N, ...]
is one update from ``carry.states`` through all L steps, and ``run`` is that step on ``x_seq``.

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
from ..distributed import DataParallel
from ..nn import Sequential
from . import driver
from ._checks import check_carry, check_data_parallel, check_flag, check_init, check_model, check_window_inputs
from ._grad import LossFn, across_ranks, detach_inputs, grad_with_aux, no_graph, sequence_loss
from .driver import Call, Learner, StepOutput

__all__ = ["BPTTCarry", "BPTT", "bptt"]


class BPTTCarry(NamedTuple):
    """BPTT's carry: ``params``, ``states`` and ``opt_state``."""

    params: Any
    states: Any
    opt_state: Any


@dataclass(frozen=True)
class BPTT(Learner):
    """The BPTT learner; build it with :func:`bptt`."""

    model: Sequential
    loss_fn: LossFn
    optimizer: optim.GradientTransformation
    data_parallel: DataParallel | None = None

    def __post_init__(self) -> None:
        check_model("bptt", self.model, self.loss_fn, self.optimizer)
        check_data_parallel("bptt", self.data_parallel)

    def init(self, params: Any, states: Any) -> BPTTCarry:
        """Carry for the first sequence."""
        check_init("bptt.init", self.model, params, states)
        params, states = detach_inputs(params, states)
        return BPTTCarry(params, states, self.optimizer.init(params))

    @no_graph
    def step(self, carry: BPTTCarry, x_win: torch.Tensor, y_win: torch.Tensor, last: bool = True
             ) -> tuple[BPTTCarry, StepOutput]:
        """One update on a window ``x_win`` [L, N, ...], ``y_win`` [L, N, ...] (in ``run``: the whole
        sequence): the gradient of Σ_t l_t through all L steps from ``carry.states``. Outputs are
        detached, [L, ...]; ``last`` changes nothing (one update per call)."""
        check_carry("bptt.step", carry, BPTTCarry)
        check_flag("bptt.step", "last", last)
        check_window_inputs("bptt.step", None, x_win, y_win)
        objective = lambda p: self.sequence_loss(p, carry.states, x_win, y_win)
        grads, (losses, ys, states) = grad_with_aux(objective, carry.params)
        grads = across_ranks(self.data_parallel, grads, x_win, 1)
        updates, opt_state = self.optimizer.update(grads, carry.opt_state, carry.params)
        params = optim.apply_updates(carry.params, updates)
        return BPTTCarry(params, states, opt_state), StepOutput(losses, ys)

    def sequence_loss(self, params: Any, states: Any, x_seq: torch.Tensor, y_seq: torch.Tensor
                      ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, Any]]:
        """Σ_t l_t over the sequence from ``states``; aux ``(losses [T], y [T, ...], final states)``."""
        return sequence_loss(self.model, self.loss_fn, params, states, x_seq, y_seq)

    def plan(self, carry: Any, T: int) -> tuple[Call, ...]:
        """One call: the whole sequence as one window."""
        return driver.windows(T, T)


def bptt(model: Sequential, loss_fn: LossFn, optimizer: optim.GradientTransformation, *,
         data_parallel: DataParallel | None = None) -> BPTT:
    """BPTT learner over the same models (see the module docstring); ``data_parallel`` averages the
    gradient over the ranks of a process group."""
    return BPTT(model, loss_fn, optimizer, data_parallel)
