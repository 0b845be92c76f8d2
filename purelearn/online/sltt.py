r"""SLTT (Meng et al., ICCV 2023): spatial learning through time, and SLTT-K.

The model uses :class:`~purelearn.neurons.SLTTLIF` neurons, whose temporal path ``V_{t−1} → H_t``
is detached, so only the spatial path is differentiated and each step's gradient is local::

    g_t = ∇_W l_t(W; s_{t−1}, x_t),     presynaptic *spikes* enter the weight gradient

``online=False`` (default) sums ``g_t`` over the sequence and updates once, at its last step;
``online=True`` updates every step.

**SLTT-K**: with ``k`` set, only ``k`` of the T steps, drawn at random per sequence, run a backward
pass; the others run forward only and build no autograd graph at all (that is where the speed
comes from). The draw is a pure function of ``carry.key`` (an int64 0-d tensor, seeded by
``seed``), advanced after every sequence, so runs are reproducible. The draw happens on the host
(``run`` reads the key), so under ``vmap`` the key must not be batched.

Example::

    >>> import torch, torch.nn.functional as F
    >>> from purelearn import nn, neurons, optim, online
    >>> model = nn.Sequential(nn.Linear(8, 4), neurons.SLTTLIF(), nn.Linear(4, 2), neurons.SLTTLIF())
    >>> params, states = model.init(torch.Generator().manual_seed(0), torch.rand(2, 8))
    >>> learner = online.sltt(model, F.mse_loss, optim.sgd(lr=0.1), k=2, seed=0)
    >>> carry = learner.init(params, states)
    >>> learner.selected_steps(carry, 6)
    [0, 3]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from .. import optim, tree, validate
from ..distributed import DataParallel
from ..neurons import LI, SLTTLIF, Neuron
from ..nn import Sequential, walk
from ..random import hash32
from . import _per_step, driver
from ._checks import check_carry, check_data_parallel, check_flag, check_init, check_model
from ._grad import LossFn, detach_inputs, no_graph
from .driver import Call, Learner, StepOutput

__all__ = ["SLTTCarry", "SLTT", "sltt"]


class SLTTCarry(NamedTuple):
    """SLTT's carry: ``params``, ``states``, ``opt_state``, ``grad_sum`` (None when online) and
    ``key`` (int64 0-d; picks SLTT-K's backward steps)."""

    params: Any
    states: Any
    opt_state: Any
    grad_sum: Any
    key: torch.Tensor


def check_sltt_model(model: Sequential) -> None:
    """Every spiking neuron must be an SLTTLIF (a non-spiking :class:`~purelearn.neurons.LI` readout
    may follow: a per-step gradient holds its carried membrane constant anyway)."""
    for i, layer in walk(model):  # residual blocks' layers too ("3.body.1")
        if isinstance(layer, Neuron) and not isinstance(layer, (SLTTLIF, LI)):
            raise ValueError(
                f"sltt: layer {i} is {type(layer).__name__}; SLTT needs neurons.SLTTLIF neurons (temporal "
                "path of the membrane detached) in every neuron layer"
            )


@dataclass(frozen=True)
class SLTT(Learner):
    """The SLTT / SLTT-K learner; build it with :func:`sltt`."""

    model: Sequential
    loss_fn: LossFn
    optimizer: optim.GradientTransformation
    online: bool = False
    k: int | None = None
    seed: int = 0
    data_parallel: DataParallel | None = None

    def __post_init__(self) -> None:
        check_model("sltt", self.model, self.loss_fn, self.optimizer)
        check_data_parallel("sltt", self.data_parallel)
        check_flag("sltt", "online", self.online)
        if self.k is not None:
            validate.integer("sltt", "k", self.k, low=1, what="backward steps per sequence, or None for all")
        validate.seed("sltt", self.seed)
        check_sltt_model(self.model)

    def init(self, params: Any, states: Any) -> SLTTCarry:
        """Carry for the first sequence; ``key`` from ``seed`` on the params' device."""
        check_init("sltt.init", self.model, params, states)
        params, states = detach_inputs(params, states)
        device = tree.leaves(params)[0].device
        grad_sum = None if self.online else tree.zeros_like(params)
        key = torch.tensor(self.seed, dtype=torch.int64, device=device)
        return SLTTCarry(params, states, self.optimizer.init(params), grad_sum, key)

    def selected_steps(self, carry: SLTTCarry, T: int) -> list[int]:
        """The sorted time steps that run a backward pass in this sequence (all of them if k is None)."""
        if self.k is None:
            return list(range(T))
        check_carry("sltt", carry, SLTTCarry)
        if self.k > T:
            raise ValueError(f"sltt: `k`={self.k} exceeds the sequence length T={T}")
        scores = hash32(torch.arange(T, dtype=torch.int64) ^ hash32(carry.key.detach().cpu()))
        return sorted(torch.argsort(scores, stable=True)[: self.k].tolist())

    @no_graph
    def step(self, carry: SLTTCarry, x_t: torch.Tensor, y_t: torch.Tensor, last: bool = False,
             backward: bool = True) -> tuple[SLTTCarry, StepOutput]:
        """One step; ``backward=False`` runs forward only (SLTT-K's unselected steps)."""
        check_carry("sltt.step", carry, SLTTCarry)
        check_flag("sltt.step", "backward", backward)
        return _per_step.per_step(self, "sltt.step", carry, x_t, y_t, last, backward)

    def end_sequence(self, carry: SLTTCarry) -> SLTTCarry:
        """Fresh neuron states and the next key; params and optimizer state kept."""
        check_carry("sltt.end_sequence", carry, SLTTCarry)
        return carry._replace(states=self.model.reset_states(carry.states), key=hash32(carry.key + 1))

    @property
    def fixed_plan(self) -> bool:  # type: ignore[override]
        """SLTT-K draws its backward steps per sequence (from the carry's seed); plain SLTT's plan is fixed."""
        return self.k is None

    def plan(self, carry: SLTTCarry, T: int) -> tuple[Call, ...]:
        """One call per step; with ``k`` set, the steps outside ``selected_steps`` get ``backward=False``."""
        if self.k is None:
            return driver.steps(T)
        return driver.steps(T, backward=set(self.selected_steps(carry, T)))

    def updates_per_sequence(self, T: int) -> int:
        """Online: one per backward step (T, or k); otherwise one at the end of the sequence."""
        return _per_step.updates_per_sequence(self.online, T if self.k is None else min(self.k, T))


def sltt(model: Sequential, loss_fn: LossFn, optimizer: optim.GradientTransformation, online: bool = False,
         k: int | None = None, *, seed: int = 0, data_parallel: DataParallel | None = None) -> SLTT:
    """SLTT learner (per-sequence update by default); ``k`` turns it into SLTT-K. ``data_parallel``
    averages the applied gradient over the ranks of a process group (every backward step online, the
    sequence's sum otherwise); SLTT-K's draw comes from the carry's key, which every rank holds alike,
    so all ranks run the same backward steps."""
    return SLTT(model, loss_fn, optimizer, online, k, seed, data_parallel)
