"""What every learner shares: the step output, input checks, the one-step gradient and ``run``.

A learner is a frozen object with three pure methods::

    carry               = learner.init(params, states)
    carry, out          = learner.step(carry, x_t, y_t, last=False)   # out: StepOutput(loss 0-d, y)
    carry, outs         = learner.run(carry, x_seq, y_seq)            # outs: StepOutput(loss [T], y [T, ...])

``run`` starts from ``carry.states``, calls ``step`` with ``last=True`` at the final step, and
returns a carry ready for the next sequence (``end_sequence``: neuron states fresh, per-sequence
algorithm state reset, params / optimizer state / running averages kept).

A learner with a ``window`` of L > 1 time steps (FPTT and FPTT-dual) updates once per window: its
``step`` takes a window ``x_win`` [L', N, ...] with 1 <= L' <= L, differentiates the window's summed
loss through its L' steps (:func:`sequence_loss`) and returns ``StepOutput(loss [L'], y [L', ...])``;
``run`` cuts the sequence into consecutive windows of L steps (the last one may be shorter).
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


def check_sequence(owner: str, x_seq: Any, y_seq: Any, names: tuple[str, str] = ("x_seq", "y_seq")) -> int:
    """Time-major ``x_seq`` [T, N, ...] and ``y_seq`` [T, N, ...] with equal T >= 1; returns T.
    ``names`` are the argument names the messages use."""
    xn, yn = names
    for name, value in ((xn, x_seq), (yn, y_seq)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{owner}: `{name}` must be a tensor, got {type(value).__name__}")
        if value.dim() < 1:
            raise ValueError(f"{owner}: `{name}` must be time-major [T, N, ...], got a 0-d tensor")
    if x_seq.dim() < 2:
        raise ValueError(f"{owner}: `{xn}` must be time-major [T, N, ...], got shape {tuple(x_seq.shape)}")
    T = x_seq.shape[0]
    if T == 0:
        raise ValueError(f"{owner}: `{xn}` has T=0 time steps (shape {tuple(x_seq.shape)}); need T >= 1")
    if y_seq.shape[0] != T:
        raise ValueError(
            f"{owner}: `{yn}` has {y_seq.shape[0]} time steps (shape {tuple(y_seq.shape)}) but `{xn}` "
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


def sequence_loss(model: Sequential, loss_fn: LossFn, params: Any, states: Any, x_seq: torch.Tensor,
                  y_seq: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, Any]]:
    """Σ_t l_t(params) over time-major ``x_seq`` [L, N, ...] from ``states``, differentiable through
    all L steps: ``(total, (losses [L], y [L, ...], final states))`` — a ``has_aux`` objective."""
    losses, ys = [], []
    total: Any = 0.0
    for t in range(x_seq.shape[0]):
        y_hat, states = model.apply(params, states, x_seq[t])
        loss = check_loss(loss_fn(y_hat, y_seq[t]))
        total = total + loss
        losses.append(loss)
        ys.append(y_hat)
    return total, (torch.stack(losses), torch.stack(ys), states)


def check_window(owner: str, window: Any) -> None:
    """``window`` (time steps per update) must be a Python int >= 1."""
    if isinstance(window, bool) or not isinstance(window, int):
        raise TypeError(f"{owner}: `window` must be an int (time steps per update), got {type(window).__name__}")
    if window < 1:
        raise ValueError(f"{owner}: `window` must be >= 1 (time steps per update), got {window}")


def check_window_inputs(owner: str, window: int, x_win: Any, y_win: Any) -> None:
    """A window step's ``x_win`` [L, N, features...] and ``y_win`` [L, N, ...] with 1 <= L <= ``window``.

    Three or more dimensions: a single step [N, features...] given by mistake would otherwise read as
    a window of N steps without a batch axis."""
    if isinstance(x_win, torch.Tensor) and x_win.dim() < 3:
        raise ValueError(
            f"{owner}: `x_win` must be a window [L, N, features...] (3 or more dimensions), got shape "
            f"{tuple(x_win.shape)}; a learner with window={window} takes windows of steps, not single steps"
        )
    L = check_sequence(owner, x_win, y_win, names=("x_win", "y_win"))
    if L > window:
        raise ValueError(
            f"{owner}: `x_win` has {L} time steps (shape {tuple(x_win.shape)}) but the learner's window is "
            f"{window}; a step takes a window [L, N, ...] with 1 <= L <= {window} (learner.run cuts a sequence)"
        )
    check_step_inputs(owner, x_win[0], y_win[0])


def check_update_inputs(owner: str, window: int, x: Any, y: Any) -> None:
    """The inputs of one update: a step ``x_t`` [N, ...] (``window`` 1) or a window [L, N, ...]."""
    if window == 1:
        check_step_inputs(owner, x, y)
    else:
        check_window_inputs(owner, window, x, y)


def step_objective(model: Sequential, loss_fn: LossFn, states: Any, x: torch.Tensor, y: torch.Tensor,
                   window: int) -> Callable[[Any], tuple[torch.Tensor, Any]]:
    """``params -> (loss, (loss, y_hat, states))``: one step's loss (``window`` 1, ``x`` [N, ...]) or a
    window's summed loss (``window`` > 1, ``x`` [L, N, ...], aux losses [L] and y [L, ...])."""
    if window == 1:
        return lambda p: loss_and_state(model, loss_fn, p, states, x, y)
    return lambda p: sequence_loss(model, loss_fn, p, states, x, y)


def split_last(seq: torch.Tensor, window: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """``(head, last)`` of a time-major sequence [T, ...] for a scan that ends with a ``last=True`` call.

    Per step (``window`` 1): ``head = seq[:-1]`` [T − 1, ...] and ``last = seq[-1]``. Per window of L:
    ``head`` = the full windows before the final one, [n, L, ...] with n = (T − 1) // L, and
    ``last`` = the final window, ``seq[n·L:]`` [L', ...] with 1 <= L' <= L.
    """
    if window == 1:
        return seq[:-1], seq[-1]
    n = (seq.shape[0] - 1) // window
    return seq[: n * window].unflatten(0, (n, window)), seq[n * window:]


def run_sequence(learner: Any, carry: Any, x_seq: torch.Tensor, y_seq: torch.Tensor) -> tuple[Any, StepOutput]:
    """The shared ``run``: scan ``step`` over the sequence, the final call with ``last=True``, then
    ``learner.end_sequence``. Outputs are stacked time-major, [T, ...].

    Per step (``learner.window`` 1 or absent) ``step`` sees ``x_seq[t]``; with a window of L > 1 it
    sees ``x_seq[a:a+L]`` for a = 0, L, 2L, ... (the last window may be shorter: :func:`split_last`).
    """
    check_sequence(type(learner).__name__, x_seq, y_seq)
    window = getattr(learner, "window", 1)
    (x_head, x_last), (y_head, y_last) = split_last(x_seq, window), split_last(y_seq, window)
    if x_head.shape[0]:
        carry, head = scan(lambda c, xy: learner.step(c, xy[0], xy[1]), carry, (x_head, y_head))
    carry, last = learner.step(carry, x_last, y_last, last=True)
    if window == 1:
        last = optree.tree_map(lambda a: a.unsqueeze(0), last)
    elif x_head.shape[0]:
        head = optree.tree_map(lambda a: a.flatten(0, 1), head)  # [n, L, ...] -> [n·L, ...]
    outs = last if not x_head.shape[0] else optree.tree_map(lambda a, b: torch.cat([a, b]), head, last)
    return learner.end_sequence(carry), outs
