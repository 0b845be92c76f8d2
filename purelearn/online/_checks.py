"""Input checks shared by the learners: hyperparameters, models, steps, windows and sequences.

Each raises ``TypeError`` / ``ValueError`` naming the argument, what was expected and what was given,
before any state is touched.
"""

from __future__ import annotations

from numbers import Real
from typing import Any

import torch

from .. import tree
from ..nn import Sequential


def check_positive(owner: str, name: str, value: Any) -> None:
    """Validate a hyperparameter given as a Python number (> 0); tensors pass (they may be batched)."""
    if isinstance(value, torch.Tensor):
        return
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{owner}: `{name}` must be a number or a tensor, got {type(value).__name__}")
    if not value > 0:
        raise ValueError(f"{owner}: `{name}` must be > 0, got {value}")


def check_network(owner: str, model: Any, loss_fn: Any) -> None:
    """``model`` a Sequential and ``loss_fn`` callable."""
    if not isinstance(model, Sequential):
        raise TypeError(f"{owner}: `model` must be a purelearn.nn.Sequential, got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError(f"{owner}: `loss_fn` must be callable as loss_fn(y_t, target_t), got {loss_fn!r}")


def check_model(owner: str, model: Any, loss_fn: Any, optimizer: Any) -> None:
    """:func:`check_network`, and ``optimizer`` a purelearn.optim transformation."""
    check_network(owner, model, loss_fn)
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


def check_window(owner: str, window: Any) -> None:
    """``window`` (time steps per update) must be a Python int >= 1."""
    if isinstance(window, bool) or not isinstance(window, int):
        raise TypeError(f"{owner}: `window` must be an int (time steps per update), got {type(window).__name__}")
    if window < 1:
        raise ValueError(f"{owner}: `window` must be >= 1 (time steps per update), got {window}")


def check_window_inputs(owner: str, window: int | None, x_win: Any, y_win: Any) -> None:
    """A window step's ``x_win`` [L, N, features...] and ``y_win`` [L, N, ...] with 1 <= L <= ``window``
    (any L >= 1 for ``window`` None).

    Three or more dimensions: a single step [N, features...] given by mistake would otherwise read as
    a window of N steps without a batch axis."""
    if isinstance(x_win, torch.Tensor) and x_win.dim() < 3:
        raise ValueError(
            f"{owner}: `x_win` must be a window [L, N, features...] (3 or more dimensions), got shape "
            f"{tuple(x_win.shape)}; "
            + (f"a learner with window={window}" if window else "this learner")
            + " takes windows of steps, not single steps"
        )
    L = check_sequence(owner, x_win, y_win, names=("x_win", "y_win"))
    if window is not None and L > window:
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
