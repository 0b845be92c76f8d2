r"""The one time-loop driver: a learner says what a sequence looks like, :func:`run` walks it.

A learner is a frozen object with::

    carry          = learner.init(params, states)
    plan           = learner.plan(carry, T)                    # the calls of `step` for T steps
    carry, out     = learner.step(carry, x, y, **call.options)  # one update (or forward pass)
    carry          = learner.end_sequence(carry)               # ready for the next sequence
    n              = learner.updates_per_sequence(T)           # optimizer updates in a sequence

A **plan** is a tuple of :class:`Call`\ s covering the time steps ``0 … T−1`` in order. A call
either feeds one step, ``x_seq[t]`` [N, ...] (``Call.t`` an int: the step returns a 0-d loss and
y [N, ...]), or a window, ``x_seq[a:b]`` [L, N, ...] (``Call.t`` a slice: it returns losses [L] and
y [L, N, ...]). ``Call.options`` are the step's static keyword arguments (``last=True`` at the
final call; ``backward=False`` for SLTT-K's forward-only steps)::

    per step           (OTTT, SLTT, FPTT)      steps(T)          t = 0, 1, …, T−1
    windows of L       (FPTT in windows)       windows(T, L)     [0, L), [L, 2L), …  (last may be shorter)
    the whole sequence (BPTT)                  windows(T, T)     [0, T)

:func:`run` walks a plan with any step function (the learner's own, or
:func:`purelearn.compile.step` of it): consecutive calls of the same shape and options go through
one :func:`~purelearn.scan.scan`, outputs are stacked time-major [T, ...], and the carry goes
through ``learner.end_sequence`` at the end. Nothing outside a learner asks what kind it is.

Example::

    >>> import torch, torch.nn.functional as F
    >>> from purelearn import nn, neurons, optim, online
    >>> model = nn.Sequential(nn.Linear(3, 2), neurons.LIF())
    >>> learner = online.fptt(model, F.mse_loss, optim.sgd(lr=0.1), window=2)
    >>> [call.t for call in learner.plan(None, 5)]
    [slice(0, 2, None), slice(2, 4, None), slice(4, 5, None)]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from .. import tree
from ..scan import scan
from ._checks import check_sequence

__all__ = ["StepOutput", "Call", "Learner", "steps", "windows", "steps_or_windows", "groups", "run", "walk",
           "check_plan"]


class StepOutput(NamedTuple):
    """What a step returns besides the carry: ``loss`` (the task loss l_t, 0-d, or [L] for a window)
    and ``y`` (the model's output, [N, ...] or [L, N, ...])."""

    loss: torch.Tensor
    y: torch.Tensor


class Call(NamedTuple):
    """One call of ``step`` in a sequence: time step ``t`` (an int) or window ``t`` (a slice with a
    step of 1), and the step's static keyword ``options`` as sorted ``(name, value)`` pairs."""

    t: int | slice
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def start(self) -> int:
        return self.t.start if isinstance(self.t, slice) else self.t

    @property
    def stop(self) -> int:
        return self.t.stop if isinstance(self.t, slice) else self.t + 1


def _options(**options: Any) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(options.items()))


def steps(T: int, backward: Any = None) -> tuple[Call, ...]:
    """One call per time step, ``last=True`` at ``T − 1``. ``backward``: a set of the steps that run a
    backward pass (the others get ``backward=False``), or None (no such option)."""
    def options(t: int) -> tuple[tuple[str, Any], ...]:
        if backward is None:
            return _options(last=t == T - 1)
        return _options(last=t == T - 1, backward=t in backward)

    return tuple(Call(t, options(t)) for t in range(T))


def windows(T: int, L: int) -> tuple[Call, ...]:
    """Consecutive windows of ``L`` steps (the last one ``T mod L`` long if L does not divide T),
    ``last=True`` at the final one. ``windows(T, T)`` is the whole sequence as one window."""
    return tuple(Call(slice(a, min(a + L, T)), _options(last=a + L >= T)) for a in range(0, T, L))


def steps_or_windows(T: int, window: int) -> tuple[Call, ...]:
    """:func:`steps` for ``window`` 1, else :func:`windows` of ``window`` steps."""
    return steps(T) if window == 1 else windows(T, window)


def groups(plan: tuple[Call, ...]) -> list[tuple[int, int, int | None, dict[str, Any]]]:
    """Runs of consecutive calls with one shape and options: ``(start, count, window length or None,
    options)``; each run becomes one scan (:func:`walk`)."""
    out: list[tuple[int, int, int | None, dict[str, Any]]] = []
    for call in plan:
        length = call.stop - call.start if isinstance(call.t, slice) else None
        if out:
            start, count, prev_length, options = out[-1]
            end = start + count * (prev_length or 1)
            if prev_length == length and options == dict(call.options) and end == call.start:
                out[-1] = (start, count + 1, length, options)
                continue
        out.append((call.start, 1, length, dict(call.options)))
    return out


def check_plan(owner: str, plan: Any, T: int) -> None:
    position = 0
    for call in plan:
        if not isinstance(call, Call) or call.start != position or call.stop <= call.start or (
                isinstance(call.t, slice) and call.t.step not in (None, 1)):
            raise ValueError(f"{owner}.plan: calls must cover the time steps 0..{T - 1} in order without gaps; "
                             f"got {call!r} at step {position}")
        position = call.stop
    if position != T:
        raise ValueError(f"{owner}.plan: the calls cover {position} of T={T} time steps")


def run(learner: Any, carry: Any, x_seq: torch.Tensor, y_seq: torch.Tensor,
        step: Callable[..., tuple[Any, StepOutput]] | None = None) -> tuple[Any, StepOutput]:
    """Walk ``learner.plan(carry, T)`` over time-major ``x_seq`` [T, N, ...], ``y_seq`` [T, N, ...] with
    ``step`` (default ``learner.step``); returns ``(learner.end_sequence(carry), outputs [T, ...])``."""
    owner = type(learner).__name__
    T = check_sequence(owner, x_seq, y_seq)
    plan = learner.plan(carry, T)
    check_plan(owner, plan, T)
    return walk(learner, plan, carry, x_seq, y_seq, learner.step if step is None else step)


def walk(learner: Any, plan: tuple[Call, ...], carry: Any, x_seq: torch.Tensor, y_seq: torch.Tensor,
         step: Callable[..., tuple[Any, StepOutput]], scan_fn: Callable[..., tuple[Any, Any]] = scan,
         plan_groups: list[tuple[int, int, int | None, dict[str, Any]]] | None = None) -> tuple[Any, StepOutput]:
    """:func:`run` of a checked ``plan``: runs of alike calls through ``scan_fn`` (``scan``'s
    signature; :mod:`purelearn.compile` passes torch's scan), the others one by one. ``plan_groups``:
    :func:`groups` of ``plan`` if already worked out (a compiled program does so outside its trace)."""
    pieces = []
    for start, count, length, options in groups(plan) if plan_groups is None else plan_groups:
        size = count * (length or 1)
        xs, ys = x_seq[start:start + size], y_seq[start:start + size]
        if length is not None:  # [count·L, ...] -> [count, L, ...]
            xs, ys = xs.unflatten(0, (count, length)), ys.unflatten(0, (count, length))
        if count == 1:
            carry, out = step(carry, xs[0], ys[0], **options)
            out = tree.map(lambda a: a.unsqueeze(0), out)
        else:
            carry, out = scan_fn(lambda c, xy, o=options: step(c, xy[0], xy[1], **o), carry, (xs, ys))
        if length is not None:
            out = tree.map(lambda a: a.flatten(0, 1), out)
        pieces.append(out)
    outs = pieces[0] if len(pieces) == 1 else tree.map(lambda *a: torch.cat(a), *pieces)
    return learner.end_sequence(carry), outs


class Learner:
    """What the learners share: ``run`` is :func:`run` over ``plan``, which is one call per step or per
    window of ``window`` steps unless a learner says otherwise; ``end_sequence`` gives fresh neuron
    states (a learner with per-sequence state of its own extends it).

    The learners here guard their boundary the same way, and a new one should too: ``init`` checks
    params and states against the model and detaches them (``_checks.check_init``,
    ``_grad.detach_inputs``), ``step`` is decorated with ``_grad.no_graph`` (no autograd graph in any
    carry or output) and refuses another learner's carry and non-bool static options first
    (``_checks.check_carry``, ``check_flag``)."""

    window: int = 1
    #: Whether ``plan(carry, T)`` is the same for every carry (SLTT-K draws its steps from the carry's
    #: seed, so its plan changes per sequence): :func:`purelearn.compile.run` compiles one program
    #: per sequence only for fixed plans.
    fixed_plan: bool = True

    def plan(self, carry: Any, T: int) -> tuple[Call, ...]:
        """One call per step (``window`` 1) or per window of ``window`` steps (the last may be shorter)."""
        return steps_or_windows(T, self.window)

    def updates_per_sequence(self, T: int) -> int:
        """Optimizer updates in a sequence of T steps: one per call of the plan."""
        return len(self.plan(None, T))

    def end_sequence(self, carry: Any) -> Any:
        """Ready for the next sequence: fresh neuron states; the rest kept."""
        return carry._replace(states=self.model.reset_states(carry.states))  # type: ignore[attr-defined]

    def run(self, carry: Any, x_seq: torch.Tensor, y_seq: torch.Tensor) -> tuple[Any, StepOutput]:
        """One time-major sequence ``x_seq`` [T, N, ...], ``y_seq`` [T, N, ...] (:func:`run`); outputs
        [T, ...], and a carry ready for the next sequence."""
        return run(self, carry, x_seq, y_seq)
