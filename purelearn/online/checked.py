"""An opt-in guard that stops training on a non-finite loss instead of training on it silently.

    learner = online.check_finite(online.fptt(model, loss_fn, optimizer))
    for i, (x_seq, y_seq) in enumerate(data):
        carry, outs = learner.run(carry, x_seq, y_seq, sequence=i)   # raises NonFiniteLossError

``run`` raises :class:`NonFiniteLossError` naming the first bad step ``t`` and the sequence index,
and discards the carry that sequence produced: the caller still holds the last carry computed from
finite losses (steps are pure, so nothing else changed). The check reads the losses on the host
(one synchronisation per sequence), so it is off by default and is not meant inside ``vmap``.

Example::

    >>> import torch, torch.nn.functional as F
    >>> from purelearn import nn, neurons, optim, online
    >>> model = nn.Sequential(nn.Linear(3, 2), neurons.LIF())
    >>> params, states = model.init(torch.Generator().manual_seed(0), torch.rand(2, 3))
    >>> learner = online.check_finite(online.ottt(model, F.mse_loss, optim.sgd(lr=0.1)))
    >>> carry = learner.init(params, states)
    >>> y = torch.rand(4, 2, 2); y[2] = float("nan")
    >>> try:
    ...     carry, outs = learner.run(carry, torch.rand(4, 2, 3), y, sequence=7)
    ... except online.NonFiniteLossError as err:
    ...     print(err.step, err.sequence)
    2 7
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .driver import StepOutput

__all__ = ["NonFiniteLossError", "CheckFinite", "check_finite"]


class NonFiniteLossError(FloatingPointError):
    """A non-finite loss, with where it happened: ``step`` (t within the sequence) and ``sequence``."""

    def __init__(self, loss: float, step: int | None, sequence: int | None) -> None:
        self.loss, self.step, self.sequence = loss, step, sequence
        where = f"step t={step}" if step is not None else "this step"
        if sequence is not None:
            where += f" of sequence {sequence}"
        super().__init__(f"non-finite loss {loss} at {where}; the carry from before this "
                         f"{'sequence' if step is not None and sequence is not None else 'call'} is kept")


def _first_bad(losses: torch.Tensor) -> int | None:
    bad = ~torch.isfinite(losses.detach().reshape(-1))
    return int(bad.nonzero()[0]) if bool(bad.any()) else None


@dataclass(frozen=True)
class CheckFinite:
    """Wraps a learner; ``step``/``run`` behave the same but raise on a non-finite loss."""

    learner: Any

    def init(self, params: Any, states: Any) -> Any:
        """The wrapped learner's ``init``."""
        return self.learner.init(params, states)

    def end_sequence(self, carry: Any) -> Any:
        """The wrapped learner's ``end_sequence``."""
        return self.learner.end_sequence(carry)

    def step(self, carry: Any, x_t: torch.Tensor, y_t: torch.Tensor, last: bool = False, *,
             t: int | None = None, sequence: int | None = None, **kwargs: Any) -> tuple[Any, StepOutput]:
        """``learner.step``; raises :class:`NonFiniteLossError` (``t``/``sequence`` label it)."""
        new_carry, out = self.learner.step(carry, x_t, y_t, last, **kwargs)
        if _first_bad(out.loss) is not None:
            raise NonFiniteLossError(float(out.loss), t, sequence)
        return new_carry, out

    def run(self, carry: Any, x_seq: torch.Tensor, y_seq: torch.Tensor, *, sequence: int | None = None
            ) -> tuple[Any, StepOutput]:
        """``learner.run``; raises :class:`NonFiniteLossError` at the first non-finite step loss."""
        new_carry, outs = self.learner.run(carry, x_seq, y_seq)
        t = _first_bad(outs.loss)
        if t is not None:
            raise NonFiniteLossError(float(outs.loss.reshape(-1)[t]), t, sequence)
        return new_carry, outs

    def __getattr__(self, name: str) -> Any:
        # model, optimizer, selected_steps, reset_params_to_mean, ... of the wrapped learner
        return getattr(self.learner, name)


def check_finite(learner: Any) -> CheckFinite:
    """Opt-in guard: the learner's ``step``/``run`` raise :class:`NonFiniteLossError` on a NaN/inf loss."""
    if not (hasattr(learner, "init") and hasattr(learner, "run")):
        raise TypeError(f"check_finite: `learner` must be a purelearn learner, got {type(learner).__name__}")
    return CheckFinite(learner)
