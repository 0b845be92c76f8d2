"""Objectives and gradients shared by the learners: one step's loss, a window's summed loss,
``grad_with_aux`` (``torch.func.grad`` with one shared eager fast path), and the learner boundary
that keeps autograd graphs out of every carry (:func:`no_graph`, :func:`detach_inputs`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import optree
import torch

from .. import tree
from ..nn import Sequential
from ..scan import scan
from ._checks import check_loss
from ._fused import eager_applies

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Method = TypeVar("Method", bound=Callable[..., Any])


# ----------------------------------------------------------------------------- the learner boundary


def differentiated() -> bool:
    """Whether the caller may be differentiating through a learner: inside a ``torch.func`` transform
    other than ``vmap`` (grad, vjp, jvp, ...), or while ``torch.compile`` traces. There, steps keep
    autograd as the caller set it up; everywhere else (eager code, ``vmap``) no graph is recorded."""
    if torch.compiler.is_compiling():
        return True
    if not torch._C._are_functorch_transforms_active():
        return False
    stack = torch._C._functorch.get_interpreter_stack() or ()
    return any(level.key() != torch._C._functorch.TransformType.Vmap for level in stack)


def no_graph(method: Method) -> Method:
    """A learner's ``step`` (or ``run``) that records no autograd graph: outside :func:`differentiated`
    code it runs under ``torch.no_grad()``, so params that require grad (taken from a ``torch.nn``
    module), tensor hyperparameters or data that require grad leave no ``grad_fn`` in the carry or the
    outputs, and nothing grows from step to step. The gradients a step takes are unaffected:
    :func:`grad_with_aux` differentiates its objective under ``torch.enable_grad()`` (or with
    ``torch.func.grad``, which enables its own level)."""
    @functools.wraps(method)
    def outside_autograd(*args: Any, **kwargs: Any) -> Any:
        if differentiated() or not torch.is_grad_enabled():
            return method(*args, **kwargs)
        torch._C._set_grad_enabled(False)  # torch.no_grad() without its context-manager cost (~4 µs a step)
        try:
            return method(*args, **kwargs)
        finally:
            torch._C._set_grad_enabled(True)

    return outside_autograd  # type: ignore[return-value]


def detach_inputs(*trees: Any) -> Any:
    """``trees`` with every tensor leaf that requires grad detached (outside :func:`differentiated`
    code; there they are returned as they are). A learner's ``init`` passes its ``params`` and
    ``states`` through this, so a carry starts without autograd history whatever it was given."""
    if differentiated():
        return trees
    plain = lambda x: x.detach() if isinstance(x, torch.Tensor) and (  # noqa: E731
        x.requires_grad or isinstance(x, torch.nn.Parameter)) else x
    return tree.map(plain, trees)


def loss_and_state(model: Sequential, loss_fn: LossFn, params: Any, states: Any, x_t: torch.Tensor,
                   y_t: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, Any]]:
    """l_t(params) from ``states``: ``(loss, (loss, y_hat, new_states))`` — a ``has_aux`` objective."""
    y_hat, new_states = model.apply(params, states, x_t)
    loss = check_loss(loss_fn(y_hat, y_t))
    return loss, (loss, y_hat, new_states)


def grad_with_aux(objective: Callable[[Any], tuple[torch.Tensor, Any]], params: Any) -> tuple[Any, Any]:
    """``torch.func.grad(objective, has_aux=True)(params)``: ``(grads, aux)``, aux detached.

    Eager calls outside any transform (:func:`~purelearn.online._fused.eager_applies`) take a faster
    route with the same numbers (plain ``torch.autograd.grad`` on detached copies of the leaves; about
    a third less time per step on small networks, where functorch's per-operation wrapping dominates).
    Inside ``vmap``, ``grad`` or ``torch.compile`` this is ``torch.func.grad`` itself. Leaves without a
    gradient get zeros.
    """
    leaves, unflatten = tree.flatten(params) if torch.compiler.is_compiling() else (None, None)
    if leaves:  # compiling: flat tuples in and out (torch.func's own flattening is costly to trace)
        aux_unflatten: list[Any] = []

        def flat_objective(*inputs: torch.Tensor) -> tuple[torch.Tensor, tuple[Any, ...]]:
            out, aux = objective(unflatten(list(inputs)))
            aux_leaves, rebuild = tree.flatten(aux)
            aux_unflatten.append(rebuild)
            return out, tuple(aux_leaves)

        grads, aux_leaves = torch.func.grad(flat_objective, argnums=tuple(range(len(leaves))), has_aux=True)(*leaves)
        return unflatten(list(grads)), aux_unflatten[0](list(aux_leaves))
    if not eager_applies(params):
        return torch.func.grad(objective, has_aux=True)(params)
    leaves, spec = optree.tree_flatten(params)
    with torch.enable_grad():
        inputs = [leaf.detach().requires_grad_() for leaf in leaves]
        out, aux = objective(optree.tree_unflatten(spec, inputs))
        if not isinstance(out, torch.Tensor) or out.dim() != 0:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise RuntimeError(f"grad_with_aux: the objective must return a 0-d tensor, got {got}")
        grads = torch.autograd.grad(out, inputs, allow_unused=True) if out.requires_grad else [None] * len(inputs)
    grads = [torch.zeros_like(leaf) if g is None else g for leaf, g in zip(leaves, grads, strict=True)]
    return optree.tree_unflatten(spec, grads), detach(aux)


def across_ranks(data_parallel: Any, grads: Any, x: torch.Tensor, batch_dim: int) -> Any:
    """``grads`` of this rank's batch ``x`` (its samples along ``batch_dim``) averaged over the ranks
    of ``data_parallel`` (:class:`purelearn.distributed.DataParallel`); as they are when it is None."""
    return grads if data_parallel is None else data_parallel.gradient(grads, x.shape[batch_dim])


def step_grad(model: Sequential, loss_fn: LossFn, params: Any, states: Any, x_t: torch.Tensor,
              y_t: torch.Tensor) -> tuple[Any, torch.Tensor, torch.Tensor, Any]:
    """∇_params l_t with ``states`` held constant (one step, no path into earlier steps).

    Returns ``(grads, loss, y_hat, new_states)``; everything but ``grads`` is detached.
    """
    objective = lambda p: loss_and_state(model, loss_fn, p, states, x_t, y_t)
    grads, (loss, y_hat, new_states) = grad_with_aux(objective, params)
    return grads, loss, y_hat, new_states


def forward_only(model: Sequential, loss_fn: LossFn, params: Any, states: Any, x_t: torch.Tensor,
                 y_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """l_t, y_hat and new states without building any autograd graph."""
    with torch.no_grad():
        _, (loss, y_hat, new_states) = loss_and_state(model, loss_fn, params, states, x_t, y_t)
    return loss, y_hat, new_states


def detach(tree_: Any) -> Any:
    return tree.map(torch.detach, tree_)


def sequence_loss(model: Sequential, loss_fn: LossFn, params: Any, states: Any, x_seq: torch.Tensor,
                  y_seq: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, Any]]:
    """Σ_t l_t(params) over time-major ``x_seq`` [L, N, ...] from ``states``, differentiable through
    all L steps: ``(total, (losses [L], y [L, ...], final states))`` — a ``has_aux`` objective."""
    def one_step(states: Any, xy: tuple[torch.Tensor, torch.Tensor]) -> tuple[Any, tuple[torch.Tensor, torch.Tensor]]:
        y_hat, states = model.apply(params, states, xy[0])
        return states, (check_loss(loss_fn(y_hat, xy[1])), y_hat)

    states, (losses, ys) = scan(one_step, states, (x_seq, y_seq))
    return losses.sum(), (losses, ys, states)


def step_objective(model: Sequential, loss_fn: LossFn, states: Any, x: torch.Tensor, y: torch.Tensor,
                   window: int) -> Callable[[Any], tuple[torch.Tensor, Any]]:
    """``params -> (loss, (loss, y_hat, states))``: one step's loss (``window`` 1, ``x`` [N, ...]) or a
    window's summed loss (``window`` > 1, ``x`` [L, N, ...], aux losses [L] and y [L, ...])."""
    if window == 1:
        return lambda p: loss_and_state(model, loss_fn, p, states, x, y)
    return lambda p: sequence_loss(model, loss_fn, p, states, x, y)
