r"""FPTT (Kag & Saligrama, ICML 2021; for SNNs Yin, Corradi & Bohté, 2023) as a pure step.

SpikingJelly 2.0.0 semantics (``learning.online_learning.fptt_online_training``), per step t::

    l̃_t(W)    = l_t(W; s_{t−1}, x_t) + (alpha/2) · Σ_i mse(W_i, w_ra_i + grad_last_i / (2·alpha))
    W_{t+1}    = optimizer step on ∇l̃_t(W_t)                      (from opt_state before step t)
    s_t        = neuron states after the first forward (carried, detached)
    if not last:                                                   (the reference skips this at t = T−1)
        grad_last = ∇l_t(W_{t+1}; s_t, x_t)                          (second forward from s_t)
        w_ra      = (w_ra + W_{t+1}) / 2 − grad_last / (2·alpha)

``grad_last`` starts at 0 on every sequence; ``w_ra`` (a detached copy of the initial params) and
the optimizer state persist across sequences. ``mse`` is the per-tensor mean, as ``F.mse_loss``.

**BatchNorm** (:class:`~purelearn.nn.BatchNorm2d`): the reference saves and restores only the
neurons' memories around the second forward, which runs in training mode, so BatchNorm's running
statistics (module buffers) are updated by *both* forwards — twice per step, once at t = T−1 (its
``num_batches_tracked`` grows by 2T − 1 per sequence), the second time with the batch statistics at
``W_{t+1}``. The same here: ``states`` after a step are ``model.restore_states(s_t, replayed)``
(neuron memories s_t, the statistics of the second forward; :meth:`~purelearn.layer.Layer.restore_state`).

Options beyond the reference, off by default:

- ``reduction="sum"``: the paper's squared norm ``(alpha/2)·‖W − w_ra − grad_last/(2 alpha)‖²``
  instead of the per-tensor mean (the mean scales alpha by 1/numel per tensor).
- ``second_forward="pre"``: evaluate ``∇l_t(W_{t+1})`` from the state *before* step t,
  ``s_{t−1}``, as the paper's algorithm states (the reference runs it from ``s_t``); BatchNorm's
  statistics enter it as the first forward left them.

- ``window=L`` (> 1): the paper's FPTT with one update per window of L steps instead of per step
  (Kag & Saligrama's K = T/L parts). ``l_t`` above becomes the window's summed loss
  ``Σ_{t∈window} l_t``, differentiated through the window's L steps from the state before it
  (states are carried, detached, between windows); the second forward re-runs the window from the
  state after it (``"post"``) or before it (``"pre"``). Memory grows with L, not with T.
  ``step`` then takes a window ``x_win`` [L', N, ...] (1 <= L' <= L) and returns losses [L'];
  ``run`` cuts the sequence into windows (the last one may be shorter). ``window=1`` is the
  reference's per-step form above, number for number.

A parameter that receives no gradient gets a zero gradient (the reference raises ``TypeError``).

**Data parallelism** (``data_parallel=``:class:`~purelearn.distributed.DataParallel`): both gradients
of the loss are averaged over the ranks — the task gradient ``∇l_t(W_t)`` and ``grad_last =
∇l_t(W_{t+1})`` — so each is the gradient of the global batch's loss; the regulariser's gradient,
``w_ra`` and the optimizer act on values every rank holds alike. Two all-reduces per step (one
without ``last``'s second forward).

Example::

    >>> import torch, torch.nn.functional as F
    >>> from purelearn import nn, neurons, optim, online
    >>> model = nn.Sequential(nn.Linear(8, 4), neurons.LIF(), nn.Linear(4, 2), neurons.LIF())
    >>> x_seq, y_seq = torch.rand(4, 2, 8), torch.rand(4, 2, 2)
    >>> params, states = model.init(torch.Generator().manual_seed(0), x_seq[0])
    >>> learner = online.fptt(model, F.mse_loss, optim.sgd(lr=0.1), alpha=0.1)
    >>> carry, outs = learner.run(learner.init(params, states), x_seq, y_seq)
    >>> outs.loss.shape, outs.y.shape
    (torch.Size([4]), torch.Size([4, 2, 2]))
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
    check_positive,
    check_update_inputs,
    check_window,
)
from ._fused import map_elementwise
from ._grad import LossFn, across_ranks, detach_inputs, grad_with_aux, no_graph, step_objective
from .driver import Learner, StepOutput

__all__ = ["FPTTCarry", "FPTT", "fptt"]


class FPTTCarry(NamedTuple):
    """FPTT's carry: ``params``, neuron ``states``, ``opt_state``, running average ``w_ra`` and
    ``grad_last`` (∇l_{t−1} at the updated weights; zero at the start of each sequence)."""

    params: Any
    states: Any
    opt_state: Any
    w_ra: Any
    grad_last: Any


def _regulariser_grad(w: torch.Tensor, w_ra: torch.Tensor, g_last: torch.Tensor, alpha: Any, reduction: str
                      ) -> torch.Tensor:
    """∇_W (alpha/2)·mse(W, c) with c = w_ra + g_last/(2·alpha), in closed form: ``norm·(W − c)·(alpha/2)``
    with norm = 2/numel (mean) or 2 (sum). These are the operations of autograd's ``mse_loss_backward``
    in its order, so the numbers equal a backward pass through ``(alpha/2)·F.mse_loss(W, c)``."""
    norm = 2.0 / w.numel() if reduction == "mean" else 2.0
    return (w - (w_ra + g_last / (2.0 * alpha))) * norm * (alpha / 2.0)


def _running_average(ra: torch.Tensor, w: torch.Tensor, g: torch.Tensor, alpha: Any) -> torch.Tensor:
    """(w_ra + W)/2 − g/(2·alpha)."""
    return (ra + w) / 2.0 - g / (2.0 * alpha)


@dataclass(frozen=True)
class FPTT(Learner):
    """The FPTT learner; build it with :func:`fptt`. See the module docstring for the equations."""

    model: Sequential
    loss_fn: LossFn
    optimizer: optim.GradientTransformation
    alpha: float | torch.Tensor = 0.1
    reduction: str = "mean"
    second_forward: str = "post"
    window: int = 1
    data_parallel: DataParallel | None = None

    def __post_init__(self) -> None:
        check_model("fptt", self.model, self.loss_fn, self.optimizer)
        check_data_parallel("fptt", self.data_parallel)
        check_positive("fptt", "alpha", self.alpha, reciprocal=True)
        check_window("fptt", self.window)
        if self.reduction not in ("mean", "sum"):
            raise ValueError(f"fptt: `reduction` must be 'mean' or 'sum', got {self.reduction!r}")
        if self.second_forward not in ("post", "pre"):
            raise ValueError(f"fptt: `second_forward` must be 'post' or 'pre', got {self.second_forward!r}")

    def init(self, params: Any, states: Any) -> FPTTCarry:
        """Carry for the first sequence: ``w_ra`` a detached copy of ``params``, ``grad_last`` zeros."""
        check_init("fptt.init", self.model, params, states)
        params, states = detach_inputs(params, states)
        return FPTTCarry(params=params, states=states, opt_state=self.optimizer.init(params),
                         w_ra=tree.clone(params), grad_last=tree.zeros_like(params))

    @no_graph
    def step(self, carry: FPTTCarry, x_t: torch.Tensor, y_t: torch.Tensor, last: bool = False
             ) -> tuple[FPTTCarry, StepOutput]:
        """One FPTT update on ``x_t`` [N, ...], ``y_t`` [N, ...] — or, with ``window`` > 1, on a window
        ``x_t`` [L, N, ...], ``y_t`` [L, N, ...] (outputs [L, ...]); ``last=True`` skips the w_ra update."""
        check_carry("fptt.step", carry, FPTTCarry)
        check_flag("fptt.step", "last", last)
        check_update_inputs("fptt.step", self.window, x_t, y_t)
        check_like_params("fptt.step", "carry.w_ra", carry.w_ra, carry.params)
        check_like_params("fptt.step", "carry.grad_last", carry.grad_last, carry.params)
        alpha, reduction, batch_dim = self.alpha, self.reduction, 0 if self.window == 1 else 1
        # ∇[l_t + (alpha/2)·Σ mse(W_i, w_ra_i + grad_last_i/(2·alpha))]: autograd for l_t, the
        # regulariser in closed form (its value is not needed)
        task_grads, (loss, y_hat, states) = grad_with_aux(
            step_objective(self.model, self.loss_fn, carry.states, x_t, y_t, self.window), carry.params)
        task_grads = across_ranks(self.data_parallel, task_grads, x_t, batch_dim)
        grads = map_elementwise(lambda g, w, ra, gl: g + _regulariser_grad(w, ra, gl, alpha, reduction),
                                task_grads, carry.params, carry.w_ra, carry.grad_last)
        updates, opt_state = self.optimizer.update(grads, carry.opt_state, carry.params)
        params = optim.apply_updates(carry.params, updates)
        w_ra, grad_last = carry.w_ra, carry.grad_last
        if not last:
            # the second forward starts from s_t ("post") or s_{t−1} ("pre") with the statistics after
            # the first; afterwards the memories are s_t again and the statistics keep its update
            from_states = states if self.second_forward == "post" else self.model.restore_states(carry.states, states)
            grad_last, (_, _, replayed) = grad_with_aux(
                step_objective(self.model, self.loss_fn, from_states, x_t, y_t, self.window), params)
            grad_last = across_ranks(self.data_parallel, grad_last, x_t, batch_dim)
            states = self.model.restore_states(states, replayed)
            w_ra = map_elementwise(lambda ra, w, g: _running_average(ra, w, g, alpha), w_ra, params, grad_last)
        return FPTTCarry(params, states, opt_state, w_ra, grad_last), StepOutput(loss, y_hat)

    def end_sequence(self, carry: FPTTCarry) -> FPTTCarry:
        """Ready for the next sequence: fresh neuron states, ``grad_last`` zero; the rest kept."""
        check_carry("fptt.end_sequence", carry, FPTTCarry)
        return carry._replace(states=self.model.reset_states(carry.states),
                              grad_last=tree.zeros_like(carry.grad_last))


def fptt(model: Sequential, loss_fn: LossFn, optimizer: optim.GradientTransformation,
         alpha: float | torch.Tensor = 0.1, *, reduction: str = "mean", second_forward: str = "post",
         window: int = 1, data_parallel: DataParallel | None = None) -> FPTT:
    """FPTT learner with SpikingJelly 2.0.0 semantics (see the module docstring).

    ``alpha`` (a finite number > 0, at least float32's smallest normal number: it divides) may be a
    (batched) tensor. ``reduction`` ∈ {"mean", "sum"},
    ``second_forward`` ∈ {"post", "pre"}, ``window`` (>= 1) time steps per update; ``data_parallel``
    averages the gradients over the ranks of a process group.
    """
    return FPTT(model, loss_fn, optimizer, alpha, reduction, second_forward, window, data_parallel)
