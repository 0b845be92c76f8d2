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
from ..nn import Sequential
from ._base import (
    LossFn,
    StepOutput,
    check_like_params,
    check_model,
    check_positive,
    check_update_inputs,
    check_window,
    grad_with_aux,
    plain_autograd_applies,
    run_sequence,
    step_objective,
)

__all__ = ["FPTTDualCarry", "FPTTDual", "fptt_dual"]


class FPTTDualCarry(NamedTuple):
    """Carry of the dual form: ``params``, ``states``, ``opt_state``, running mean ``w_bar``, dual ``lam``."""

    params: Any
    states: Any
    opt_state: Any
    w_bar: Any
    lam: Any


def _regulariser_grad(w: torch.Tensor, wb: torch.Tensor, lm: torch.Tensor, alpha: float, rho: float
                      ) -> torch.Tensor:
    """∇_W of R's terms for one parameter, (alpha/2)·(2·(W − W̄)) + (rho − 1)·λ, with one new tensor.

    The operations and their order are autograd's for ``regulariser`` (pow's backward is
    ``grad·(2·d¹)``; the ‖·‖² term's gradient arrives first, then the ⟨W, λ⟩ term's, then the
    loss's is added by the caller), so the numbers equal a backward pass through R.
    """
    d = torch.sub(w, wb).mul_(2.0).mul_(alpha / 2.0)
    return d.add_(torch.mul(lm, rho - 1.0))


def _lam_in_place(alpha: Any) -> Any:
    """λ − alpha·(W − W̄) with one new tensor instead of three."""

    def update(lm: torch.Tensor, w: torch.Tensor, wb: torch.Tensor) -> torch.Tensor:
        step = torch.sub(w, wb).mul_(alpha)
        return torch.sub(lm, step, out=step)

    return update


def _w_bar_in_place(alpha: Any, beta: Any) -> Any:
    """(1 − beta)·W̄ + beta·W − (beta/alpha)·λ with two new tensors instead of five."""

    def update(wb: torch.Tensor, w: torch.Tensor, lm: torch.Tensor) -> torch.Tensor:
        out = torch.mul(wb, 1.0 - beta)
        scaled = torch.mul(w, beta)
        out.add_(scaled)
        return out.sub_(torch.mul(lm, beta / alpha, out=scaled))

    return update


@dataclass(frozen=True)
class FPTTDual:
    """The dual-variable FPTT learner; build it with :func:`fptt_dual`."""

    model: Sequential
    loss_fn: LossFn
    optimizer: optim.GradientTransformation
    alpha: float | torch.Tensor = 0.1
    beta: float | torch.Tensor = 0.5
    rho: float | torch.Tensor = 0.0
    window: int = 1

    def __post_init__(self) -> None:
        check_model("fptt_dual", self.model, self.loss_fn, self.optimizer)
        check_positive("fptt_dual", "alpha", self.alpha)
        check_positive("fptt_dual", "beta", self.beta)
        check_window("fptt_dual", self.window)

    def init(self, params: Any, states: Any) -> FPTTDualCarry:
        """``w_bar`` a detached copy of ``params``, ``lam`` zeros."""
        return FPTTDualCarry(params, states, self.optimizer.init(params), tree.clone(params),
                             tree.zeros_like(params))

    def regulariser(self, params: Any, w_bar: Any, lam: Any) -> torch.Tensor:
        """R(W) = (rho − 1)·⟨W, λ⟩ + (alpha/2)·‖W − W̄‖², summed over all parameters."""
        terms = [
            (self.rho - 1.0) * torch.sum(w * lm) + (self.alpha / 2.0) * torch.sum((w - wb) ** 2)
            for w, wb, lm in zip(tree.leaves(params), tree.leaves(w_bar), tree.leaves(lam), strict=True)
        ]
        return sum(terms)

    def step(self, carry: FPTTDualCarry, x_t: torch.Tensor, y_t: torch.Tensor, last: bool = False
             ) -> tuple[FPTTDualCarry, StepOutput]:
        """One update on ``x_t`` [N, ...] — or, with ``window`` > 1, on a window ``x_t`` [L, N, ...]
        (outputs [L, ...]). ``last`` changes nothing here: the dual form has no end-of-sequence work."""
        check_update_inputs("fptt_dual.step", self.window, x_t, y_t)
        check_like_params("fptt_dual.step", "carry.w_bar", carry.w_bar, carry.params)
        check_like_params("fptt_dual.step", "carry.lam", carry.lam, carry.params)

        alpha, beta, rho = self.alpha, self.beta, self.rho
        fresh = plain_autograd_applies(carry.params, carry.w_bar, carry.lam)
        task = step_objective(self.model, self.loss_fn, carry.states, x_t, y_t, self.window)
        if fresh and not any(isinstance(h, torch.Tensor) for h in (alpha, beta, rho)):
            # eager, no transform: ∇R in closed form (see _regulariser_grad), autograd for l_t only
            task_grads, (loss, y_hat, states) = grad_with_aux(task, carry.params)
            grads = tree.map(lambda g, w, wb, lm: _regulariser_grad(w, wb, lm, alpha, rho).add_(g), task_grads,
                             carry.params, carry.w_bar, carry.lam)
        else:
            def objective(p: Any) -> tuple[torch.Tensor, Any]:
                loss, aux = task(p)
                return loss + self.regulariser(p, carry.w_bar, carry.lam), aux

            grads, (loss, y_hat, states) = grad_with_aux(objective, carry.params)
        updates, opt_state = self.optimizer.update(grads, carry.opt_state, carry.params)
        params = optim.apply_updates(carry.params, updates)
        if fresh:
            # eager, no transform: the same operations on new tensors updated in place (fewer allocations)
            lam = tree.map(_lam_in_place(alpha), carry.lam, params, carry.w_bar)
            w_bar = tree.map(_w_bar_in_place(alpha, beta), carry.w_bar, params, lam)
        else:
            lam = tree.map(lambda lm, w, wb: lm - alpha * (w - wb), carry.lam, params, carry.w_bar)
            w_bar = tree.map(lambda wb, w, lm: (1.0 - beta) * wb + beta * w - (beta / alpha) * lm,
                             carry.w_bar, params, lam)
        return FPTTDualCarry(params, states, opt_state, w_bar, lam), StepOutput(loss, y_hat)

    def end_sequence(self, carry: FPTTDualCarry) -> FPTTDualCarry:
        """Fresh neuron states; params, optimizer state, ``w_bar`` and ``lam`` kept."""
        return carry._replace(states=self.model.reset_states(carry.states))

    def reset_params_to_mean(self, carry: FPTTDualCarry) -> FPTTDualCarry:
        """The authors' end-of-epoch reset ``W ← W̄`` (λ and the optimizer state kept)."""
        return carry._replace(params=tree.clone(carry.w_bar))

    def run(self, carry: FPTTDualCarry, x_seq: torch.Tensor, y_seq: torch.Tensor
            ) -> tuple[FPTTDualCarry, StepOutput]:
        """One time-major sequence ``x_seq`` [T, N, ...], ``y_seq`` [T, N, ...]; outputs [T, ...]."""
        return run_sequence(self, carry, x_seq, y_seq)


def fptt_dual(model: Sequential, loss_fn: LossFn, optimizer: optim.GradientTransformation,
              alpha: float | torch.Tensor = 0.1, beta: float | torch.Tensor = 0.5,
              rho: float | torch.Tensor = 0.0, *, window: int = 1) -> FPTTDual:
    """Dual-variable FPTT learner (defaults alpha=0.1, beta=0.5, rho=0.0, one update per step; see the
    module docstring)."""
    return FPTTDual(model, loss_fn, optimizer, alpha, beta, rho, window)
