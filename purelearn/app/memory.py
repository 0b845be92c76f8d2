"""How much memory a run needs, estimated before anything large is allocated, and the check against the machine.

    memory.check(memory.estimate(config, split, model), config, device)        # before anything is allocated
    measured = memory.measure(model, carry, params, states, example)          # one sample, two steps
    memory.check(memory.estimate(config, split, model, measured=measured), config, device)

The estimate is a lower bound of what training holds at its peak:

- the parameters and one gradient per parameter; once ``measured``, the learner's whole carry
  (optimizer and algorithm state too);
- one dense batch [T, B, ...] (float32) and its targets [T, B, C];
- the encoded test set [T, N, ...] (a set held as tensors is encoded at once), or one evaluation
  batch of a compact set;
- once ``measured``: the neuron states of a batch, and the activations that autograd saves in one
  time step (measured on one sample, times the batch) times the steps whose graph the backward
  pass holds at once (``registry.Algorithm.graph_steps``: BPTT all T, FPTT and FPTT-dual a window,
  the per-step learners one);
- a sweep multiplies what each configuration holds (carry, gradients, states, activations) by the
  number of configurations, and adds its own terms (its pre-drawn batches).

The first check, from the parameter shapes the model's layers declare (nothing is allocated), stops
a ``--hidden`` or ``--T`` far beyond the machine; the second, once the parameters exist, one that
only the backward pass's activations make too large (BPTT at a large T). The machine's memory:
``MemAvailable`` of ``/proc/meminfo`` on the CPU (Linux), the free memory of
``torch.cuda.mem_get_info`` on CUDA; elsewhere (no ``/proc``, MPS) the check is skipped. A run
whose estimate exceeds it is refused with a :class:`ConfigError` on the option that scales the
largest term (``T``, ``hidden``, ``batch_size`` or ``window``), which the command line prints in one line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from .. import data, tree
from ..nn import Sequential
from . import registry
from .config import Config
from .errors import ConfigError

__all__ = ["TooLarge", "Term", "Estimate", "Measured", "size", "declared_param_bytes", "measure", "estimate",
           "available", "check"]

_FLOAT = 4  # bytes of a float32: the dtype every run trains in
#: The largest dense evaluation batch of a compact set, in elements (as :data:`loop.EVAL_DENSE_ELEMENTS`).
_EVAL_DENSE_ELEMENTS = 2**26


class TooLarge(ConfigError):
    """A run whose memory estimate exceeds the memory available (a :class:`ConfigError` on the option
    that scales the estimate's largest term)."""


@dataclass(frozen=True)
class Term:
    """One part of an estimate: what it is, its bytes, and the config fields that scale it (the first
    is the one a refusal names)."""

    what: str
    bytes: int
    fields: tuple[str, ...]


@dataclass(frozen=True)
class Estimate:
    """The terms of a run's memory; ``total`` their sum, in bytes."""

    terms: tuple[Term, ...]

    @property
    def total(self) -> int:
        return sum(t.bytes for t in self.terms)


class Measured(NamedTuple):
    """What :func:`measure` found, in bytes: the carry without its neuron states, the parameters, the
    neuron states of one sample, and the activations autograd saves in one time step of one sample."""

    carry: int
    params: int
    states_per_sample: int
    saved_per_sample_step: int


def size(n: float) -> str:
    """``n`` bytes in the largest binary unit that keeps a number >= 1 (``1.5 GiB``)."""
    for unit, power in (("EiB", 60), ("PiB", 50), ("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 2**power:
            return f"{n / 2**power:.1f} {unit}"
    return f"{int(n)} B"


def _nbytes(obj: Any) -> int:
    return sum(t.numel() * t.element_size() for t in tree.leaves(obj) if isinstance(t, torch.Tensor))


def declared_param_bytes(model: Sequential) -> int:
    """The float32 bytes of the parameters whose shapes ``model``'s layers declare (``param_shapes``;
    a size fixed only by the input counts as 1, a layer that declares none as 0: a lower bound),
    with nothing allocated."""
    def count(shapes: Any) -> int:
        if isinstance(shapes, dict):
            return sum(count(v) for v in shapes.values())
        if isinstance(shapes, tuple) and all(n is None or isinstance(n, int) for n in shapes):
            return math.prod(n or 1 for n in shapes)
        return 0

    return count(model.param_shapes()) * _FLOAT


def measure(model: Sequential, carry: Any, params: Any, states: Any, example: torch.Tensor) -> Measured:
    """Measure a learner's ``carry`` (as ``learner.init(params, states)`` made it) and two steps of
    ``model`` on ``example`` [1, ...], one sample: the second step's saved activations are counted
    (its states have their full shapes); a parameter, or a view of one, saved for the backward pass
    is no activation."""
    with torch.enable_grad():
        p = tree.map(lambda t: t.detach().requires_grad_(t.is_floating_point()), params)
        _, stepped = model.apply(p, states, example)
        own = {id(t) for t in tree.leaves(p)}
        saved = [0]

        def pack(t: torch.Tensor) -> torch.Tensor:
            base = t
            while base._base is not None:
                base = base._base
            if id(t) not in own and id(base) not in own:
                saved[0] += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model.apply(p, stepped, example)
    carry_states = getattr(carry, "states", None)
    return Measured(_nbytes(carry) - _nbytes(carry_states), _nbytes(params), _nbytes(stepped), saved[0])


def estimate(config: Config, split: data.Split, model: Sequential, configs: int = 1, extra: Sequence[Term] = (),
             measured: Measured | None = None) -> Estimate:
    """The memory a run of resolved ``config`` on ``split`` with ``model`` needs at least (see the module
    docstring); ``configs``: the configurations of a sweep trained at once, ``extra``: further terms,
    ``measured``: :func:`measure` of its carry and steps (without it: the declared parameters only)."""
    ds = split.train
    T, step = ds.T, tuple(ds.step_shape)
    features = math.prod(step)
    batch = max(1, min(config.batch_size, len(ds)))
    each = "" if configs == 1 else f" × {configs} configurations"
    dims = ", ".join(map(str, step))
    if measured is None:
        terms = [Term(f"parameters and their gradients{each}", configs * 2 * declared_param_bytes(model), ("hidden",))]
    else:
        terms = [Term(f"parameters, optimizer and algorithm state, gradients{each}",
                      configs * (measured.carry + measured.params), ("hidden",)),
                 Term(f"neuron states of a batch of {batch}{each}", configs * batch * measured.states_per_sample,
                      ("batch_size", "hidden"))]
        steps = registry.algorithm(config.algo).graph_steps(config, T)
        per_step = batch * measured.saved_per_sample_step
        if steps >= T and T > 1:
            what, fields = f"the graph of all T={T} steps for the backward pass", ("T", "batch_size", "hidden")
        elif steps > 1:
            what, fields = f"the graph of a window of {steps} steps for the backward pass", ("window", "batch_size",
                                                                                             "hidden")
        else:
            what, fields = "the graph of one step for the backward pass", ("batch_size", "hidden")
        detail = f" ({size(per_step)} per step{each})" if steps > 1 else each
        terms.append(Term(f"{what}{detail}", configs * steps * per_step, fields))
    terms.append(Term(f"one batch [T={T}, B={batch}, {dims}] and its targets",
                      T * batch * (features + split.num_classes) * _FLOAT, ("T", "batch_size")))
    test = split.test
    if isinstance(test.x, torch.Tensor):
        if test.encoding != "none":  # encoded at once (the "none" encoding is already [N, T, ...]: a view)
            terms.append(Term(f"the encoded test set [T={T}, N={len(test)}, {dims}]",
                              T * len(test) * features * _FLOAT, ("T",)))
    else:
        rows = max(1, min(1024, len(test), _EVAL_DENSE_ELEMENTS // max(1, T * features)))
        terms.append(Term(f"one evaluation batch [T={T}, {rows}, {dims}]", T * rows * features * _FLOAT, ("T",)))
    return Estimate((*terms, *extra))


def available(device: torch.device | str) -> tuple[int, str] | None:
    """``(bytes, where)``: the memory a run on ``device`` can still take — ``MemAvailable`` of
    ``/proc/meminfo`` on the CPU, the free memory of ``torch.cuda.mem_get_info`` on CUDA — or None
    where it is not known (no ``/proc``, other devices)."""
    device = torch.device(device)
    if device.type == "cuda":
        try:
            free, _ = torch.cuda.mem_get_info(device)
        except (RuntimeError, AssertionError):  # pragma: no cover - no usable CUDA
            return None
        return int(free), f"free on {device} (torch.cuda.mem_get_info)"
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "available on this machine (MemAvailable in /proc/meminfo)"
    except (OSError, ValueError, IndexError):
        return None
    return None


def check(need: Estimate, config: Config, device: torch.device | str, configs: int = 1) -> None:
    """:class:`TooLarge` if ``need`` exceeds the memory :func:`available` on ``device``, naming the
    option that scales its largest term, the estimate and its largest terms; nothing where the
    memory is not known."""
    have = available(device)
    if have is None or need.total <= have[0]:
        return
    terms = sorted(need.terms, key=lambda t: -t.bytes)
    top = terms[0]
    field = top.fields[0]
    value = getattr(config, field, None)
    parts = ", ".join(f"{t.what}: {size(t.bytes)}" for t in terms[:3] if t.bytes >= need.total / 100)
    names = [f"`{f}`" for f in top.fields]
    lower = (", ".join(names[:-1]) + " or " if len(names) > 1 else "") + names[-1]
    lower += ", or sweep fewer configurations" if configs > 1 else ""
    head = f"`{field}` {value}" if value is not None else f"`{field}`"
    raise TooLarge(field, f"{head} is too large: the run needs at least {size(need.total)} of memory ({parts}), "
                             f"more than the {size(have[0])} {have[1]}; lower {lower}")
