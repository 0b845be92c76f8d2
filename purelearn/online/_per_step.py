"""The per-step gradient learner shared by OTTT and SLTT.

Each step differentiates only the current step's loss, the carried neuron state held constant
(OTTT/SLTT neurons detach it; SpikingJelly calls ``detach_net`` after every step)::

    g_t = ∇_W l_t(W; s_{t−1}, x_t)
    online=True :  W ← optimizer step on g_t, every step
    online=False:  grad_sum += g_t;  at the last step W ← optimizer step on grad_sum, grad_sum ← 0

With ``learner.data_parallel`` set, the gradient that reaches the optimizer is averaged over the
ranks: ``g_t`` at every update online, ``grad_sum`` once at the last step otherwise (the sum of
averages is the average of sums, one all-reduce per sequence).
"""

from __future__ import annotations

from typing import Any

import torch

from .. import optim, tree
from ._checks import check_flag, check_like_params, check_step_inputs
from ._grad import across_ranks, forward_only, step_grad
from .driver import StepOutput


def accumulate_or_update(learner: Any, carry: Any, grads: Any | None, last: bool, x_t: torch.Tensor) -> Any:
    """Apply ``grads`` now (online) or add them to ``carry.grad_sum`` and apply the sum at ``last``;
    what is applied is first averaged over ``learner.data_parallel``'s ranks (``x_t``: this rank's batch).

    ``grads=None`` means the step computed no gradient (SLTT-K's forward-only steps).
    """
    params, opt_state, grad_sum = carry.params, carry.opt_state, carry.grad_sum
    if learner.online:
        if grads is not None:
            grads = across_ranks(learner.data_parallel, grads, x_t, 0)
            updates, opt_state = learner.optimizer.update(grads, opt_state, params)
            params = optim.apply_updates(params, updates)
        return carry._replace(params=params, opt_state=opt_state)
    if grads is not None:
        grad_sum = tree.add(grad_sum, grads)
    if last:
        updates, opt_state = learner.optimizer.update(across_ranks(learner.data_parallel, grad_sum, x_t, 0),
                                                      opt_state, params)
        params = optim.apply_updates(params, updates)
        grad_sum = tree.zeros_like(grad_sum)
    return carry._replace(params=params, opt_state=opt_state, grad_sum=grad_sum)


def per_step(learner: Any, owner: str, carry: Any, x_t: torch.Tensor, y_t: torch.Tensor, last: bool,
             backward: bool = True) -> tuple[Any, StepOutput]:
    """One step of a per-step-gradient learner; ``backward=False`` runs the forward pass only."""
    check_flag(owner, "last", last)
    check_step_inputs(owner, x_t, y_t)
    if not learner.online:
        check_like_params(owner, "carry.grad_sum", carry.grad_sum, carry.params)
    if backward:
        grads, loss, y_hat, states = step_grad(learner.model, learner.loss_fn, carry.params, carry.states, x_t, y_t)
    else:
        grads = None
        loss, y_hat, states = forward_only(learner.model, learner.loss_fn, carry.params, carry.states, x_t, y_t)
    carry = accumulate_or_update(learner, carry._replace(states=states), grads, last, x_t)
    return carry, StepOutput(loss, y_hat)


def updates_per_sequence(online: bool, backward_steps: int) -> int:
    """Optimizer updates in a sequence: one per backward step online, else one at its end."""
    return backward_steps if online else 1
