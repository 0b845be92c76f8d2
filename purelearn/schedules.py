r"""Hyperparameter schedules in the style of optax: pure functions of the optimizer's step count.

A schedule is a callable ``f(count) -> value``. ``count`` is the number of updates already applied,
the ``int64`` 0-d tensor ``state.count`` of the optimizer, so the first update uses ``f(0)`` (as
``torch.optim.lr_scheduler.LambdaLR``). Any hyperparameter of :mod:`purelearn.optim` may be a
schedule; the optimizer evaluates it at every update, and the schedule's position is the optimizer
state itself: nothing outside the carry changes during training.

The schedules below (but :func:`constant`, which returns its value as it is) compute with torch
operations on ``count`` (no Python branching on tensors), in float64 (float32 on mps), and return a
0-d tensor: they trace into one ``torch.compile`` graph that serves every count, and their arguments
may be tensors, batched under ``torch.func.vmap`` (one schedule per value). Python numbers are
validated when the schedule is built; tensors are not (their values may be batched).

``every`` makes a staircase: a schedule with ``every=k`` moves one step per ``k`` updates, its step
being :math:`s = \lfloor count / k \rfloor` (for example one value per epoch of ``k`` batches).

Example::

    >>> import torch
    >>> from purelearn import optim, schedules
    >>> lr = schedules.cosine_decay(0.1, decay_steps=4)
    >>> [round(float(lr(torch.tensor(count))), 4) for count in range(5)]
    [0.1, 0.0854, 0.05, 0.0146, 0.0]
    >>> opt = optim.sgd(lr=lr)                  # the k-th update (count = k - 1) uses lr(k - 1)
    >>> params = {"w": torch.zeros(1)}
    >>> state = opt.init(params)
    >>> for _ in range(3):
    ...     updates, state = opt.update({"w": torch.ones(1)}, state, params)
    ...     params = optim.apply_updates(params, updates)
    >>> params["w"], state.count                # -(0.1 + 0.0854 + 0.05)
    (tensor([-0.2354]), tensor(3))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from . import validate

__all__ = ["Schedule", "constant", "cosine_decay", "linear", "warmup_cosine_decay", "join"]

Schedule = Callable[[torch.Tensor], "float | torch.Tensor"]
"""A schedule ``f(count) -> value``: ``count`` an ``int64`` 0-d tensor, ``value`` a number or a 0-d tensor."""

Value = float | torch.Tensor


# --------------------------------------------------------------------------------------------------
# Validation and helpers
# --------------------------------------------------------------------------------------------------


def _value(owner: str, name: str, x: Any, *, low: float | None = None, high: float | None = None) -> Value:
    """A Python number finite in float32 (returned as float, in ``[low, high]`` if given;
    :func:`purelearn.validate.number`) or a one-element tensor (as 0-d).

    Tensors are not checked beyond their size: their values may be batched under ``vmap``.
    """
    if isinstance(x, torch.Tensor):
        if x.numel() != 1:
            raise ValueError(
                f"{owner}: `{name}` must be a number or a one-element tensor, got a tensor of shape {tuple(x.shape)}"
            )
        return x.reshape(())
    return validate.number(owner, name, x, low=low, high=high, kinds="a Python number or a torch.Tensor")


def _steps(owner: str, name: str, x: Any, *, low: int = 1) -> int | torch.Tensor:
    """A Python int in ``[low, 2**63 − 1]`` (:func:`purelearn.validate.integer`; ``1.5`` is refused, not
    truncated) or a one-element tensor (as 0-d, unchecked)."""
    if isinstance(x, torch.Tensor):
        return _value(owner, name, x)
    return validate.integer(owner, name, x, low=low)


def _wide_float(device: torch.device) -> torch.dtype:
    """float64, or float32 where the device has no float64 (mps)."""
    return torch.float32 if device.type == "mps" else torch.float64


def _wide(x: Value) -> Value:
    """A tensor ``x`` cast to the wide float of its device (so eager and vmap promote alike); numbers unchanged."""
    return x.to(_wide_float(x.device)) if isinstance(x, torch.Tensor) else x


def _as_count(count: Any) -> torch.Tensor:
    return count if isinstance(count, torch.Tensor) else torch.as_tensor(count, dtype=torch.int64)


def _step(count: Any, every: int | torch.Tensor) -> torch.Tensor:
    """:math:`\\lfloor count / every \\rfloor` as a wide float tensor."""
    count = _as_count(count)
    return torch.div(count, every, rounding_mode="floor").to(_wide_float(count.device))


def _half_cosine(s: torch.Tensor, decay_steps: int | torch.Tensor) -> torch.Tensor:
    """``½(1 + cos(π · min(s, D) / D))`` for a step ``s >= 0``: 1 at ``s = 0``, 0 from ``s = D`` on."""
    return 0.5 * (1 + torch.cos(math.pi * torch.clamp(s, max=decay_steps) / decay_steps))


def _lerp(start: Value, end: Value, weight: torch.Tensor) -> torch.Tensor:
    """``start + weight · (end - start)`` computed as ``torch.lerp``: exactly ``start`` at 0, ``end`` at 1."""
    return torch.where(weight < 0.5, start + weight * (end - start), end - (end - start) * (1 - weight))


def _wide_tensor(v: Value, count: torch.Tensor) -> torch.Tensor:
    """A schedule's value as a wide float tensor on ``count``'s device (numbers) or in its own device."""
    if isinstance(v, torch.Tensor):
        return v.to(_wide_float(v.device))
    return torch.tensor(v, dtype=_wide_float(count.device), device=count.device)


# --------------------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------------------


def constant(value: Value) -> Schedule:
    """The schedule ``f(count) = value`` (optax ``constant_schedule``).

    ``value`` is returned as it is (a Python number as a float, a tensor reshaped to 0-d), so an
    optimizer given ``constant(v)`` computes exactly what it computes when given ``v``.

    Example::

        >>> constant(0.1)(torch.tensor(7))
        0.1
    """
    value = _value("constant", "value", value)

    def schedule(count: torch.Tensor) -> Value:
        return value

    return schedule


def cosine_decay(init_value: Value, decay_steps: int, *, alpha: Value = 0.0, every: int = 1) -> Schedule:
    r"""Cosine decay from ``init_value`` to ``alpha · init_value`` over ``decay_steps`` steps (optax
    ``cosine_decay_schedule``; ``torch.optim.lr_scheduler.CosineAnnealingLR`` with
    ``eta_min = alpha · init_value`` and ``T_max = decay_steps``, constant after).

    With the step :math:`s = \lfloor count / every \rfloor`::

        value = init_value · ((1 - alpha) · ½(1 + cos(π · min(s, decay_steps) / decay_steps)) + alpha)

    The cosine is computed in float64, so ``cosine_decay(lr, decay_steps=E, every=B)`` gives at
    epoch ``e`` of ``B`` updates ``lr · ½(1 + cos(π e / E))`` as Python's ``math.cos`` does.

    Example::

        >>> f = cosine_decay(1.0, decay_steps=4, alpha=0.1, every=10)   # one value per 10 updates
        >>> [round(float(f(torch.tensor(c))), 4) for c in (0, 9, 10, 20, 40, 100)]
        [1.0, 1.0, 0.8682, 0.55, 0.1, 0.1]
    """
    owner = "cosine_decay"
    init_value = _value(owner, "init_value", init_value)
    decay_steps = _steps(owner, "decay_steps", decay_steps)
    alpha = _value(owner, "alpha", alpha, low=0.0, high=1.0)
    every = _steps(owner, "every", every)

    def schedule(count: torch.Tensor) -> torch.Tensor:
        s = _step(count, every)
        return _wide(init_value) * ((1 - _wide(alpha)) * _half_cosine(s, decay_steps) + _wide(alpha))

    return schedule


def linear(init_value: Value, end_value: Value, transition_steps: int, *, every: int = 1) -> Schedule:
    r"""Linear interpolation from ``init_value`` to ``end_value`` over ``transition_steps`` steps,
    constant after (optax ``linear_schedule``).

    With the step :math:`s = \lfloor count / every \rfloor`::

        value = init_value + (end_value - init_value) · min(s, transition_steps) / transition_steps

    computed as ``torch.lerp``, so that it is exactly ``init_value`` at ``s = 0`` and ``end_value``
    from ``s = transition_steps`` on.

    Example::

        >>> f = linear(0.0, 1.0, transition_steps=4)
        >>> [float(f(torch.tensor(c))) for c in range(6)]
        [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    """
    owner = "linear"
    init_value = _value(owner, "init_value", init_value)
    end_value = _value(owner, "end_value", end_value)
    transition_steps = _steps(owner, "transition_steps", transition_steps)
    every = _steps(owner, "every", every)

    def schedule(count: torch.Tensor) -> torch.Tensor:
        s = _step(count, every)
        return _lerp(_wide(init_value), _wide(end_value), torch.clamp(s, max=transition_steps) / transition_steps)

    return schedule


def warmup_cosine_decay(
    peak_value: Value,
    warmup_steps: int,
    decay_steps: int,
    *,
    init_value: Value = 0.0,
    end_value: Value = 0.0,
    every: int = 1,
) -> Schedule:
    r"""Linear warm-up from ``init_value`` to ``peak_value``, then cosine decay to ``end_value`` (optax
    ``warmup_cosine_decay_schedule``: ``decay_steps`` counts the warm-up too).

    With the step :math:`s = \lfloor count / every \rfloor`, :math:`W` = ``warmup_steps`` and
    :math:`D` = ``decay_steps``::

        value = init_value + (peak_value - init_value) · s / W                            if s < W
        value = end_value + (peak_value - end_value) · ½(1 + cos(π · min(s - W, D - W) / (D - W)))   else

    Both pieces are computed as ``torch.lerp``, so the value is exactly ``init_value`` at ``s = 0``,
    ``peak_value`` at ``s = W`` and ``end_value`` from ``s = D`` on.

    Example::

        >>> f = warmup_cosine_decay(1.0, warmup_steps=2, decay_steps=6)
        >>> [round(float(f(torch.tensor(c))), 4) for c in range(8)]
        [0.0, 0.5, 1.0, 0.8536, 0.5, 0.1464, 0.0, 0.0]
    """
    owner = "warmup_cosine_decay"
    peak_value = _value(owner, "peak_value", peak_value)
    warmup_steps = _steps(owner, "warmup_steps", warmup_steps, low=0)
    decay_steps = _steps(owner, "decay_steps", decay_steps)
    init_value = _value(owner, "init_value", init_value)
    end_value = _value(owner, "end_value", end_value)
    every = _steps(owner, "every", every)
    if isinstance(warmup_steps, int) and isinstance(decay_steps, int) and decay_steps <= warmup_steps:
        raise ValueError(
            f"{owner}: `decay_steps` must exceed `warmup_steps` (it counts the warm-up too), "
            f"got decay_steps={decay_steps}, warmup_steps={warmup_steps}"
        )
    cosine_steps = decay_steps - warmup_steps

    def schedule(count: torch.Tensor) -> torch.Tensor:
        s = _step(count, every)
        peak, end = _wide(peak_value), _wide(end_value)
        decay = _lerp(end, peak, _half_cosine(torch.clamp(s - warmup_steps, min=0), cosine_steps))
        if isinstance(warmup_steps, int) and warmup_steps == 0:
            return decay
        warmup = _lerp(_wide(init_value), peak, torch.clamp(s, max=warmup_steps) / warmup_steps)
        return torch.where(s < warmup_steps, warmup, decay)

    return schedule


def join(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    """One schedule after another (optax ``join_schedules``): ``schedules[i + 1]`` takes over at
    ``count = boundaries[i]`` and sees the count from there, ``count - boundaries[i]``.

    Boundaries are in updates (not in the steps of a sub-schedule's ``every``). The value is a wide
    float tensor::

        value = schedules[0](count)                          if count < boundaries[0]
        value = schedules[i](count - boundaries[i - 1])      if boundaries[i - 1] <= count < boundaries[i]

    Example::

        >>> f = join([linear(0.0, 1.0, 2), constant(1.0), cosine_decay(1.0, 2)], boundaries=[2, 4])
        >>> [float(f(torch.tensor(c))) for c in range(7)]
        [0.0, 0.5, 1.0, 1.0, 1.0, 0.5, 0.0]
    """
    owner = "join"
    if not isinstance(schedules, Sequence) or not schedules:
        raise ValueError(f"{owner}: `schedules` must be a non-empty sequence of schedules, got {schedules!r}")
    for i, f in enumerate(schedules):
        if not callable(f) or isinstance(f, torch.Tensor):
            raise TypeError(f"{owner}: `schedules[{i}]` must be a schedule f(count), got {type(f).__name__}")
    if not isinstance(boundaries, Sequence) or len(boundaries) != len(schedules) - 1:
        raise ValueError(
            f"{owner}: `boundaries` must be a sequence of len(schedules) - 1 = {len(schedules) - 1} counts, "
            f"got {boundaries!r}"
        )
    boundaries = [_steps(owner, f"boundaries[{i}]", b, low=0) for i, b in enumerate(boundaries)]
    ints = [b for b in boundaries if isinstance(b, int)]
    if len(ints) == len(boundaries) and ints != sorted(ints):
        raise ValueError(f"{owner}: `boundaries` must be non-decreasing, got {ints}")
    schedules = list(schedules)

    def schedule(count: torch.Tensor) -> torch.Tensor:
        count = _as_count(count)
        value = _wide_tensor(schedules[0](count), count)
        for boundary, f in zip(boundaries, schedules[1:], strict=True):
            later = _wide_tensor(f(torch.clamp(count - boundary, min=0)), count)
            value = torch.where(count < boundary, value, later)
        return value

    return schedule
