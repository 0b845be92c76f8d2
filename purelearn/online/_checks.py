"""Input checks shared by the learners: hyperparameters, carries, models, steps, windows and sequences.

Each raises ``TypeError`` / ``ValueError`` naming the argument, what was expected and what was given,
before any state is touched. Python hyperparameters go through :mod:`purelearn.validate` (finite, in
float32's range, in the argument's range); tensor hyperparameters are left alone (they may be
batched under ``vmap``).

The data rule (README, "The learner protocol"): ``x_t`` [N, ...] is a floating-point tensor with a
batch of N >= 1; ``y_t`` [N, ...] has the same N, lies on ``x_t``'s device and has ``x_t``'s dtype, or
an integer dtype (class indices). A 0-d ``y_t`` is not broadcast, another floating dtype is not
promoted: both are refused.
"""

from __future__ import annotations

from typing import Any

import optree
import torch

from .. import tree, validate
from ..distributed import DataParallel
from ..nn import Sequential


def check_positive(owner: str, name: str, value: Any, reciprocal: bool = False) -> None:
    """A hyperparameter that is a finite Python number > 0 (``reciprocal``: it divides, so not below
    float32's smallest normal number either) or a tensor (unchecked: it may be batched)."""
    validate.number(owner, name, value, low=0.0, low_open=True, reciprocal=reciprocal)


def check_number(owner: str, name: str, value: Any) -> None:
    """A hyperparameter that is a finite Python number (any sign) or a tensor (unchecked)."""
    validate.number(owner, name, value)


def check_flag(owner: str, name: str, value: Any) -> None:
    """A static option (``last``, ``backward``, ``online``) must be a Python bool: ``"False"`` is not false."""
    validate.flag(owner, name, value)


def check_carry(owner: str, carry: Any, expected: type) -> None:
    """``carry`` must be the ``expected`` carry type, which this learner's ``init`` makes."""
    if type(carry) is expected or isinstance(carry, expected):
        return
    got = type(carry).__name__
    other = " (another learner's carry)" if got.endswith("Carry") else ""
    raise TypeError(
        f"{owner}: `carry` must be a {expected.__name__}, made by this learner's init(params, states), got a "
        f"{got}{other}; a carry belongs to the learner type that made it"
    )


def check_init(owner: str, model: Sequential, params: Any, states: Any) -> None:
    """``learner.init``'s ``params`` and ``states`` must be this model's: the params' structure and the
    shapes its layers declare (:meth:`purelearn.nn.Sequential.check_params`), the states' keys, and
    tensors sharing one floating dtype and device (what ``model.apply`` requires of them and x)."""
    try:
        model.check_params(params)
        model.check_states(states)
    except ValueError as err:
        raise ValueError(f"{owner}: {err}; learner.init takes the params and states of the learner's model "
                         "(model.init(generator, x))") from None
    reference = None
    for name, value in (("params", params), ("states", states)):
        for path, leaf in zip(optree.tree_paths(value), tree.leaves(value), strict=True):
            where = f"`{name}` leaf {'.'.join(map(str, path))!r}"
            if not isinstance(leaf, torch.Tensor):
                raise TypeError(f"{owner}: {where} must be a tensor, got {type(leaf).__name__}")
            if name == "params" and not leaf.is_floating_point():
                raise TypeError(f"{owner}: {where} must be a floating-point tensor (trained), got {leaf.dtype}")
            if not leaf.is_floating_point():
                continue
            if reference is None:
                reference = (where, leaf.dtype, leaf.device)
            elif (leaf.dtype, leaf.device) != reference[1:]:
                raise TypeError(
                    f"{owner}: {where} is {leaf.dtype} on {leaf.device} but {reference[0]} is {reference[1]} on "
                    f"{reference[2]}; params and states share the data's dtype and device (model.init on data like x)"
                )


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


def check_data_parallel(owner: str, data_parallel: Any) -> None:
    """``data_parallel`` a :class:`purelearn.distributed.DataParallel` or None."""
    if data_parallel is not None and not isinstance(data_parallel, DataParallel):
        raise TypeError(f"{owner}: `data_parallel` must be a purelearn.distributed.DataParallel or None, got "
                        f"{type(data_parallel).__name__}")


def check_step_inputs(owner: str, x_t: Any, y_t: Any) -> None:
    """``x_t`` [N, ...] floating with N >= 1, ``y_t`` [N, ...] of the same N on x's device, in x's dtype
    or an integer dtype (class indices): the data rule in the module docstring."""
    for name, value in (("x_t", x_t), ("y_t", y_t)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{owner}: `{name}` must be a tensor, got {type(value).__name__}")
    if x_t.dim() == 0:
        raise ValueError(f"{owner}: `x_t` must have a batch axis [N, ...], got a 0-d tensor")
    if x_t.shape[0] == 0:
        raise ValueError(f"{owner}: `x_t` is an empty batch (N=0, shape {tuple(x_t.shape)}); a step needs N >= 1 "
                         "samples (an empty batch has no loss: its mean would be NaN)")
    if not x_t.is_floating_point():
        raise TypeError(f"{owner}: `x_t` must be a floating-point tensor, got {x_t.dtype}; convert the data "
                        "(e.g. x.float()) to the params' dtype")
    if y_t.dim() == 0:
        raise ValueError(f"{owner}: `y_t` must have a batch axis [N, ...] like `x_t` (N={x_t.shape[0]}), got a 0-d "
                         "tensor; targets are not broadcast")
    if y_t.shape[0] != x_t.shape[0]:
        raise ValueError(
            f"{owner}: `y_t` has batch size {y_t.shape[0]} (shape {tuple(y_t.shape)}) but `x_t` has "
            f"{x_t.shape[0]} (shape {tuple(x_t.shape)})"
        )
    if y_t.device != x_t.device or not (y_t.dtype == x_t.dtype or (
            not y_t.is_floating_point() and not y_t.is_complex() and y_t.dtype != torch.bool)):
        raise TypeError(
            f"{owner}: `y_t` is {y_t.dtype} on {y_t.device} but `x_t` is {x_t.dtype} on {x_t.device}; targets "
            "must have x's dtype (or an integer dtype, class indices) on x's device: they are not promoted"
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
    for name, value in ((xn, x_seq), (yn, y_seq)):
        if value.dim() < 2:
            raise ValueError(f"{owner}: `{name}` must be time-major [T, N, ...], got shape {tuple(value.shape)}")
    T = x_seq.shape[0]
    if T == 0:
        raise ValueError(f"{owner}: `{xn}` has T=0 time steps (shape {tuple(x_seq.shape)}); need T >= 1")
    if x_seq.shape[1] == 0:
        raise ValueError(f"{owner}: `{xn}` is an empty batch (N=0, shape {tuple(x_seq.shape)}); a sequence needs "
                         "N >= 1 samples (an empty batch has no loss: its mean would be NaN)")
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
