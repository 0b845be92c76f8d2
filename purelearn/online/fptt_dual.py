r"""FPTT in the original authors' dual-variable form (anilkagak2/FPTT, byin-cwi/sFPTT).

One forward/backward per step (half of :mod:`~purelearn.online.fptt`): instead of a second forward,
each parameter keeps a running mean ``w_bar`` (W̄) and a dual variable ``lam`` (λ)::

    R(W)   = (rho − 1)·⟨W, λ⟩ + (alpha/2)·‖W − W̄‖²          (summed over parameters)
    W      ← optimizer step on ∇[l_t(W; s_{t−1}, x_t) + R(W)]
    λ      ← λ − alpha·(W − W̄)                                 (with the updated W)
    W̄      ← (1 − beta)·W̄ + beta·W − (beta/alpha)·λ            (with the updated λ)

``w_bar`` starts as a copy of the params, ``lam`` at zero; both persist across sequences. The
authors also reset ``W ← W̄`` at the end of each epoch (λ kept): call
:meth:`FPTTDual.reset_params_to_mean` on the carry to do so.

``window=L`` (> 1) updates once per window of L steps, as the authors' code does with its "parts":
``l_t`` becomes the window's summed loss, differentiated through its steps from the state before
it; ``step`` takes a window [L', N, ...] (1 <= L' <= L) and ``run`` cuts the sequence (see
:mod:`~purelearn.online.fptt`).

**Data parallelism** (``data_parallel=``:class:`~purelearn.distributed.DataParallel`): the task
gradient ``∇l_t`` is averaged over the ranks (one all-reduce per update); R's gradient, λ, W̄ and
the optimizer act on values every rank holds alike.

Example::

    >>> import torch, torch.nn.functional as F
    >>> from purelearn import nn, neurons, optim, online
    >>> model = nn.Sequential(nn.Linear(8, 2), neurons.LIF())
    >>> params, states = model.init(torch.Generator().manual_seed(0), torch.rand(2, 8))
    >>> learner = online.fptt_dual(model, F.mse_loss, optim.adam(1e-3), alpha=0.1, beta=0.5)
    >>> carry, outs = learner.run(learner.init(params, states), torch.rand(5, 2, 8), torch.rand(5, 2, 2))
    >>> sorted(carry._fields)
    ['lam', 'opt_state', 'params', 'states', 'w_bar']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from .. import optim, tree
from ..distributed import DataParallel
from ..nn import Sequential
from ._checks import (
    check_carry,
    check_data_parallel,
    check_flag,
    check_init,
    check_like_params,
    check_model,
    check_number,
    check_positive,
    check_update_inputs,
    check_window,
)
from ._fused import map_elementwise
from ._grad import LossFn, across_ranks, detach_inputs, grad_with_aux, no_graph, step_objective
from .driver import Learner, StepOutput

__all__ = ["FPTTDualCarry", "FPTTDual", "fptt_dual"]


class FPTTDualCarry(NamedTuple):
    """Carry of the dual form: ``params``, ``states``, ``opt_state``, running mean ``w_bar``, dual ``lam``."""

    params: Any
    states: Any
    opt_state: Any
    w_bar: Any
    lam: Any


def _regulariser_grad(w: torch.Tensor, w_bar: torch.Tensor, lam: torch.Tensor, alpha: Any, rho: Any
                      ) -> torch.Tensor:
    """∇_W of R's terms for one parameter, (alpha/2)·(2·(W − W̄)) + (rho − 1)·λ, in closed form.

    The operations and their order are autograd's for :meth:`FPTTDual.regulariser` (pow's backward
    is ``grad·(2·d¹)``; the ‖·‖² term's gradient arrives first, then the ⟨W, λ⟩ term's), so the
    numbers equal a backward pass through R.
    """
    return (w - w_bar) * 2.0 * (alpha / 2.0) + lam * (rho - 1.0)


@dataclass(frozen=True)
class FPTTDual(Learner):
    """The dual-variable FPTT learner; build it with :func:`fptt_dual`."""

    model: Sequential
    loss_fn: LossFn
    optimizer: optim.GradientTransformation
    alpha: float | torch.Tensor = 0.1
    beta: float | torch.Tensor = 0.5
    rho: float | torch.Tensor = 0.0
    window: int = 1
    data_parallel: DataParallel | None = None

    def __post_init__(self) -> None:
        check_model("fptt_dual", self.model, self.loss_fn, self.optimizer)
        check_data_parallel("fptt_dual", self.data_parallel)
        check_positive("fptt_dual", "alpha", self.alpha, reciprocal=True)
        check_positive("fptt_dual", "beta", self.beta)
        check_number("fptt_dual", "rho", self.rho)
        check_window("fptt_dual", self.window)

    def init(self, params: Any, states: Any) -> FPTTDualCarry:
        """``w_bar`` a detached copy of ``params``, ``lam`` zeros."""
        check_init("fptt_dual.init", self.model, params, states)
        params, states = detach_inputs(params, states)
        return FPTTDualCarry(params, states, self.optimizer.init(params), tree.clone(params),
                             tree.zeros_like(params))

    def regulariser(self, params: Any, w_bar: Any, lam: Any) -> torch.Tensor:
        """R(W) = (rho − 1)·⟨W, λ⟩ + (alpha/2)·‖W − W̄‖², summed over all parameters."""
        terms = [
            (self.rho - 1.0) * torch.sum(w * lm) + (self.alpha / 2.0) * torch.sum((w - wb) ** 2)
            for w, wb, lm in zip(tree.leaves(params), tree.leaves(w_bar), tree.leaves(lam), strict=True)
        ]
        return sum(terms)

    @no_graph
    def step(self, carry: FPTTDualCarry, x_t: torch.Tensor, y_t: torch.Tensor, last: bool = False
             ) -> tuple[FPTTDualCarry, StepOutput]:
        """One update on ``x_t`` [N, ...] — or, with ``window`` > 1, on a window ``x_t`` [L, N, ...]
        (outputs [L, ...]). ``last`` changes nothing here: the dual form has no end-of-sequence work."""
        check_carry("fptt_dual.step", carry, FPTTDualCarry)
        check_flag("fptt_dual.step", "last", last)
        check_update_inputs("fptt_dual.step", self.window, x_t, y_t)
        check_like_params("fptt_dual.step", "carry.w_bar", carry.w_bar, carry.params)
        check_like_params("fptt_dual.step", "carry.lam", carry.lam, carry.params)

        alpha, beta, rho = self.alpha, self.beta, self.rho
        # ∇[l_t + R(W)]: autograd for l_t, R in closed form (its value is not needed)
        task_grads, (loss, y_hat, states) = grad_with_aux(
            step_objective(self.model, self.loss_fn, carry.states, x_t, y_t, self.window), carry.params)
        task_grads = across_ranks(self.data_parallel, task_grads, x_t, 0 if self.window == 1 else 1)
        grads = map_elementwise(lambda g, w, wb, lm: g + _regulariser_grad(w, wb, lm, alpha, rho),
                                task_grads, carry.params, carry.w_bar, carry.lam)
        updates, opt_state = self.optimizer.update(grads, carry.opt_state, carry.params)
        params = optim.apply_updates(carry.params, updates)
        lam = map_elementwise(lambda lm, w, wb: lm - alpha * (w - wb), carry.lam, params, carry.w_bar)
        w_bar = map_elementwise(lambda wb, w, lm: (1.0 - beta) * wb + beta * w - (beta / alpha) * lm,
                                carry.w_bar, params, lam)
        return FPTTDualCarry(params, states, opt_state, w_bar, lam), StepOutput(loss, y_hat)

    def reset_params_to_mean(self, carry: FPTTDualCarry) -> FPTTDualCarry:
        """The authors' end-of-epoch reset ``W ← W̄`` (λ and the optimizer state kept)."""
        check_carry("fptt_dual.reset_params_to_mean", carry, FPTTDualCarry)
        return carry._replace(params=tree.clone(carry.w_bar))


def fptt_dual(model: Sequential, loss_fn: LossFn, optimizer: optim.GradientTransformation,
              alpha: float | torch.Tensor = 0.1, beta: float | torch.Tensor = 0.5,
              rho: float | torch.Tensor = 0.0, *, window: int = 1,
              data_parallel: DataParallel | None = None) -> FPTTDual:
    """Dual-variable FPTT learner (defaults alpha=0.1, beta=0.5, rho=0.0, one update per step; see the
    module docstring)."""
    return FPTTDual(model, loss_fn, optimizer, alpha, beta, rho, window, data_parallel)
