"""Checks of Python hyperparameters, flags, counts and seeds, shared by everything that takes them.

Neurons, surrogates, layers, optimizers, schedules and learners check the hyperparameters given as
Python numbers when they are built, with :func:`number`: a finite number inside float32's range (a
larger one is infinite in float32 arithmetic) and inside the owner's bounds. A divisor
(``reciprocal=True``, e.g. FPTT's ``alpha``) must also be at least float32's smallest normal number,
so that it does not underflow to 0 in float32 and its reciprocal stays finite. Messages name the
owner, the argument, the expected range and the value given (``ValueError``), or the expected type
(``TypeError``).

Tensors are left alone: their values may be batched under ``torch.func.vmap``, and a check would
need ``if`` on a tensor (a host synchronisation, and a failure under vmap); the math uses them as
they are.

Static options (``last``, ``online``, ``decay_input``, ...) are Python bools (:func:`flag`: the string
``"False"`` is not false); counts are Python ints in int64's range (:func:`integer`, a float such as
``1.5`` is refused, never truncated); seeds are ints in ``[0, 2**63 − 1]`` (:func:`seed`).

Example::

    >>> from purelearn import validate
    >>> validate.number("sgd", "lr", 0.1, low=0.0)
    0.1
    >>> validate.number("fptt", "alpha", float("inf"), low=0.0, low_open=True)
    Traceback (most recent call last):
    ...
    ValueError: fptt: `alpha` must be a finite number > 0, got inf
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch

__all__ = ["FLOAT32_MAX", "FLOAT32_TINY", "INT64_MAX", "number", "flag", "integer", "seed"]

FLOAT32_MAX = float(torch.finfo(torch.float32).max)
"""The largest finite float32, about 3.4e38: larger Python numbers are infinite in float32 arithmetic."""
FLOAT32_TINY = float(torch.finfo(torch.float32).tiny)
"""float32's smallest normal number, about 1.2e-38: a divisor below it underflows to 0 (or loses its
precision) in float32, and its reciprocal overflows."""
INT64_MAX = 2**63 - 1


def _range(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f" {'<' if high_open else '<='} {high:g}"
    return ""


def number(owner: str, name: str, value: Any, *, low: float | None = None, high: float | None = None,
           low_open: bool = False, high_open: bool = False, reciprocal: bool = False, tensors: bool = True,
           kinds: str = "a number or a tensor", alternative: str = "") -> Any:
    """``value`` as a float if it is a Python number that is finite in float32 and within the bounds
    (``[low, high]``; ``low_open`` / ``high_open`` exclude a bound; ``None``: unbounded); a tensor is
    returned as it is. ``reciprocal``: the value divides, so a nonzero one below float32's smallest
    normal number (:data:`FLOAT32_TINY`) is refused too. ``tensors=False``: a tensor is refused (the
    owner takes Python numbers only). ``kinds`` is what the ``TypeError`` says the argument may be,
    ``alternative`` what else the ``ValueError`` says it may be (e.g. ``"or None"``)."""
    if isinstance(value, torch.Tensor) and tensors:
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: `{name}` must be {kinds}, got {type(value).__name__}")
    x = float(value)
    expected = f"a finite number{_range(low, high, low_open, high_open)}{' ' + alternative if alternative else ''}"
    ok = math.isfinite(x) and (low is None or (x > low if low_open else x >= low)) and (
        high is None or (x < high if high_open else x <= high))
    if not ok:
        raise ValueError(f"{owner}: `{name}` must be {expected}, got {value!r}")
    if abs(x) > FLOAT32_MAX:
        raise ValueError(f"{owner}: `{name}` must be {expected} within float32's range (|x| <= {FLOAT32_MAX:.4g}; "
                         f"beyond it the number is infinite in float32 arithmetic), got {value!r}")
    if reciprocal and x != 0 and abs(x) < FLOAT32_TINY:
        raise ValueError(f"{owner}: `{name}` must be {expected} and at least {FLOAT32_TINY:.4g} (float32's smallest "
                         f"normal number: `{name}` divides, and below it it underflows to 0 and its reciprocal "
                         f"overflows), got {value!r}")
    return x


def flag(owner: str, name: str, value: Any) -> bool:
    """``value`` if it is a Python bool; ``TypeError`` otherwise (a string ``"False"`` is not false)."""
    if not isinstance(value, bool):
        raise TypeError(f"{owner}: `{name}` must be a bool (True or False), got {value!r}")
    return value


def integer(owner: str, name: str, value: Any, *, low: int | None = None, high: int = INT64_MAX,
            what: str = "") -> int:
    """``value`` if it is a Python int (not a bool; a float such as 1.5 is refused, not truncated) in
    ``[low, high]`` (``high`` at most int64's largest). ``what`` adds a description to the message."""
    detail = f" ({what})" if what else ""
    top = "2**63 - 1" if high == INT64_MAX else str(high)
    out_of_range = isinstance(value, numbers.Integral) and (low is not None and value < low or value > high)
    if low is None:
        bounds = f" <= {top}"
    elif high == INT64_MAX and not (out_of_range and value > high):
        bounds = f" >= {low}"
    else:
        bounds = f" in [{low}, {top}]"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: `{name}` must be an int{bounds}{detail}, got {type(value).__name__} {value!r}")
    if out_of_range:
        raise ValueError(f"{owner}: `{name}` must be an int{bounds}{detail}, got {value!r}")
    return int(value)


def seed(owner: str, value: Any, name: str = "seed") -> int:
    """A seed: a Python int in ``[0, 2**63 − 1]`` (what ``torch.Generator.manual_seed`` and an int64 key
    both hold)."""
    return integer(owner, name, value, low=0, what="a seed")
