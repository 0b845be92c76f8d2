"""What every learner shares: the step output, input checks, the one-step gradient and ``run``.

A learner is a frozen object with three pure methods::

    carry               = learner.init(params, states)
    carry, out          = learner.step(carry, x_t, y_t, last=False)   # out: StepOutput(loss 0-d, y)
    carry, outs         = learner.run(carry, x_seq, y_seq)            # outs: StepOutput(loss [T], y [T, ...])

``run`` starts from ``carry.states``, calls ``step`` with ``last=True`` at the final step, and
returns a carry ready for the next sequence (``end_sequence``: neuron states fresh, per-sequence
algorithm state reset, params / optimizer state / running averages kept).
"""

from __future__ import annotations

from collections.abc import Callable
from numbers import Real
from typing import Any, NamedTuple

import optree
import torch

from .. import tree
from ..nn import Sequential
from ..scan import scan

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class StepOutput(NamedTuple):
    """What a step returns besides the carry: ``loss`` (the task loss l_t, 0-d) and ``y`` (output)."""

    loss: torch.Tensor
    y: torch.Tensor


def check_positive(owner: str, name: str, value: Any) -> None:
    """Validate a hyperparameter given as a Python number (> 0); tensors pass (they may be batched)."""
    if isinstance(value, torch.Tensor):
        return
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{owner}: `{name}` must be a number or a tensor, got {type(value).__name__}")
    if not value > 0:
        raise ValueError(f"{owner}: `{name}` must be > 0, got {value}")


def check_model(owner: str, model: Any, loss_fn: Any, optimizer: Any) -> None:
    if not isinstance(model, Sequential):
        raise TypeError(f"{owner}: `model` must be a purelearn.nn.Sequential, got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError(f"{owner}: `loss_fn` must be callable as loss_fn(y_t, target_t), got {loss_fn!r}")
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise TypeError(
            f"{owner}: `optimizer` must be a purelearn.optim transformation (init/update), got "
            f"{type(optimizer).__name__}"
        )


def check_step_inputs(owner: str, x_t: Any, y_t: Any) -> None:
    """``x_t`` and ``y_t`` are tensors with the same batch size (their leading axis)."""
    for name, value in (("x_t", x_t), ("y_t", y_t)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{owner}: `{name}` must be a tensor, got {type(value).__name__}")
    if x_t.dim() == 0:
        raise ValueError(f"{owner}: `x_t` must have a batch axis [N, ...], got a 0-d tensor")
    if y_t.dim() and y_t.shape[0] != x_t.shape[0]:
        raise ValueError(
            f"{owner}: `y_t` has batch size {y_t.shape[0]} (shape {tuple(y_t.shape)}) but `x_t` has "
            f"{x_t.shape[0]} (shape {tuple(x_t.shape)})"
        )


def check_sequence(owner: str, x_seq: Any, y_seq: Any) -> int:
    """Time-major ``x_seq`` [T, N, ...] and ``y_seq`` [T, N, ...] with equal T >= 1; returns T."""
    for name, value in (("x_seq", x_seq), ("y_seq", y_seq)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{owner}: `{name}` must be a tensor, got {type(value).__name__}")
        if value.dim() < 1:
            raise ValueError(f"{owner}: `{name}` must be time-major [T, N, ...], got a 0-d tensor")
    if x_seq.dim() < 2:
        raise ValueError(f"{owner}: `x_seq` must be time-major [T, N, ...], got shape {tuple(x_seq.shape)}")
    T = x_seq.shape[0]
    if T == 0:
        raise ValueError(f"{owner}: `x_seq` has T=0 time steps (shape {tuple(x_seq.shape)}); need T >= 1")
    if y_seq.shape[0] != T:
        raise ValueError(
            f"{owner}: `y_seq` has {y_seq.shape[0]} time steps (shape {tuple(y_seq.shape)}) but `x_seq` "
            f"has {T} (shape {tuple(x_seq.shape)}); both are time-major [T, N, ...]"
        )
    return T


def check_like_params(owner: str, name: str, value: Any, params: Any) -> None:
    """``value`` (e.g. ``w_ra``) must have the structure and leaf shapes of ``params``."""
    if tree.same_layout(params, value):
        return
    try:
        tree.assert_same_structure(params, value, "carry.params", name)
    except ValueError as err:
        raise ValueError(
            f"{owner}: `carry.params` and `{name}` disagree ({err}); either may be the wrong one: "
            "a carry must come from learner.init(params, states) with the params the model was built for"
        ) from None


def check_loss(loss: Any) -> torch.Tensor:
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        got = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise ValueError(f"`loss_fn` must return a 0-d tensor (a scalar loss), got {got}")
    return loss


def loss_and_state(model: Sequential, loss_fn: LossFn, params: Any, states: Any, x_t: torch.Tensor,
                   y_t: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, Any]]:
    """l_t(params) from ``states``: ``(loss, (loss, y_hat, new_states))`` — a ``has_aux`` objective."""
    y_hat, new_states = model.apply(params, states, x_t)
    loss = check_loss(loss_fn(y_hat, y_t))
    return loss, (loss, y_hat, new_states)


def plain_autograd_applies(*trees: Any) -> bool:
    """True outside every ``torch.func`` transform and ``torch.compile`` trace, for plain tensors
    that carry no autograd history of their own: there ``torch.autograd.grad`` computes exactly what
    ``torch.func.grad`` does (same graph, same backward formulas), without functorch's per-op
    wrapping, and new intermediate tensors may be updated in place."""
    if torch._C._are_functorch_transforms_active() or torch.compiler.is_compiling():
        return False  # decided before flattening anything: cheap to trace
    return all(type(leaf) is torch.Tensor and not leaf.requires_grad for leaf in optree.tree_leaves(trees))


def grad_with_aux(objective: Callable[[Any], tuple[torch.Tensor, Any]], params: Any) -> tuple[Any, Any]:
    """``torch.func.grad(objective, has_aux=True)(params)``: ``(grads, aux)``, aux detached.

    Eager calls outside any transform take a faster route with the same numbers (plain
    ``torch.autograd.grad`` on detached copies of the leaves; about a third less time per step on
    small networks, where functorch's per-operation wrapping dominates). Inside ``vmap``, ``grad``
    or ``torch.compile`` this is ``torch.func.grad`` itself. Leaves without a gradient get zeros.
    """
    if not plain_autograd_applies(params):
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
    return optree.tree_map(torch.detach, tree_)


def run_sequence(learner: Any, carry: Any, x_seq: torch.Tensor, y_seq: torch.Tensor) -> tuple[Any, StepOutput]:
    """The shared ``run``: scan ``step`` over T−1 steps, the last one with ``last=True``, then
    ``learner.end_sequence``. Outputs are stacked time-major."""
    owner = type(learner).__name__
    T = check_sequence(owner, x_seq, y_seq)
    if T > 1:
        carry, head = scan(lambda c, xy: learner.step(c, xy[0], xy[1]), carry, (x_seq[:-1], y_seq[:-1]))
    carry, last = learner.step(carry, x_seq[-1], y_seq[-1], last=True)
    last = optree.tree_map(lambda a: a.unsqueeze(0), last)
    outs = last if T == 1 else optree.tree_map(lambda a, b: torch.cat([a, b]), head, last)
    return learner.end_sequence(carry), outs
