"""The one registry of what the application trains: algorithms, models, optimizers, schedules, defaults.

Training, sweeps, ``compare`` and the command line all read this module; nothing else in the
application asks which algorithm it has. Per algorithm (:class:`Algorithm`): the learner factory
(:mod:`purelearn.online`), the neuron it trains (``LIF``, ``OTTTLIF`` for OTTT's presynaptic trace,
``SLTTLIF`` whose temporal path is detached) and the one it puts in a recurrent layer (none for OTTT,
which has no recurrent form), the config fields its learner reads, the options only it takes, and
its defaults per kind of data.

**Defaults** (measured on the digits; Adam, cosine schedule). On the rate-coded digits (and user
data that is not sequential): lr 3e-3 for the learners that update at every step (FPTT, FPTT-dual,
OTTT_O) and 1e-2 for those that update once per sequence (OTTT_A, SLTT, SLTT-K, BPTT), alpha 0.1
(FPTT, FPTT-dual) and beta 0.5 (FPTT-dual), batch 64, no clipping, uniform loss and prediction
weights, and FPTT in SpikingJelly's form (an update per step, per-tensor mean regulariser, second
forward from the state after the step). On sequential data: the recurrent ``alif-rnn`` model, lr
3e-3 (OTTT_O 1e-3), batch 32, gradients clipped to norm 1, the prediction from the last quarter of
the steps (``late``), and FPTT / FPTT-dual in the paper's form (Kag & Saligrama): an update per
window of 8 steps, the squared-norm regulariser, the second forward from the state before the
window, and the loss on a ramp (its gradient stops at a window's start, so every window needs a loss
of its own; the others train best on ``late``). SLTT-K runs backward at K = T/4 steps.

On binned spike events (SHD, SSC, randman: encoding ``"events"``), initial defaults chosen on
generated randman data (8 epochs, seed 0), not on the real files: the sequential ones (learning
rates, FPTT in windows of 8 on a ramp, the others on ``late``, clipping at 1) with the ``srnn``
model and batches of 64. FPTT and FPTT-dual reach 97 % there, BPTT 79 %; SLTT, which drops the
temporal path by design, stays near chance on this timing-only task.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from .. import models, neurons, online, optim, schedules
from ..nn import Sequential
from . import task
from .errors import ConfigError

if TYPE_CHECKING:
    from .config import Config

__all__ = ["SEQUENTIAL", "OTHER", "EVENTS", "Algorithm", "ALGORITHMS", "OPTIMIZERS", "SCHEDULES", "OPTION_CHOICES",
           "DATA_DEFAULTS", "OPTIONS", "data_kind", "algorithm", "takers", "takes", "check_takes", "defaults",
           "default_model", "trains", "algorithms_for", "check_model", "build_model", "make_learner", "learner_for",
           "make_optimizer", "make_schedule"]

SEQUENTIAL, OTHER, EVENTS = "sequential", "other", "events"


def data_kind(encoding: str) -> str:
    """The kind of data whose defaults apply: ``"sequential"`` for the sequential encoding, ``"events"``
    for binned spike events (SHD, SSC, randman), else ``"other"``."""
    return {"sequential": SEQUENTIAL, "events": EVENTS}.get(encoding, OTHER)


@dataclass(frozen=True)
class Algorithm:
    """A training algorithm as the application knows it.

    ``summary`` is its one-line description (the command line's help). ``factory(model, loss_fn,
    optimizer, **kw)`` builds the learner, ``kw`` read from the config:
    ``reads`` maps each learner keyword to its config field (``None`` values are left out, so the
    learner's own default applies). ``options`` are the config fields that only this algorithm (and
    those that share them) takes: given to another algorithm they are refused, whichever they are.
    ``defaults[kind]`` are its defaults on that kind of data; a callable default is a function of
    the number of time steps T. ``graph_steps(config, T)``: how many time steps' activations its
    backward pass holds at once (BPTT: all T; FPTT: a window; the per-step learners: one), for the
    memory estimate of a run (:mod:`purelearn.app.memory`).
    """

    name: str
    summary: str
    factory: Callable[..., Any]
    neuron: models.NeuronFactory
    recurrent_neuron: models.NeuronFactory | None
    reads: Mapping[str, str] = field(default_factory=dict)
    options: tuple[str, ...] = ()
    defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    graph_steps: Callable[[Any, int], int] = lambda config, T: 1


def _fields(*names: str) -> dict[str, str]:
    return {name: name for name in names}


def _per_data(sequential: dict[str, Any], other: dict[str, Any], events: dict[str, Any] | None = None
              ) -> dict[str, dict[str, Any]]:
    """Defaults per kind of data; events (long sequences for a recurrent net) default to the sequential ones."""
    return {SEQUENTIAL: sequential, OTHER: other, EVENTS: sequential if events is None else events}


_FPTT_FORM = _per_data({"alpha": 0.1, "window": 8, "reduction": "sum", "second_forward": "pre"},
                       {"alpha": 0.1, "window": 1, "reduction": "mean", "second_forward": "post"})


def _window(config: Any, T: int) -> int:
    return min(config.window or 1, T)


def _k(T: int) -> int:
    return max(1, T // 4)


ALGORITHMS: dict[str, Algorithm] = {a.name: a for a in (
    Algorithm("fptt", "FPTT: an update per step (or per window), regularised towards a running average",
              online.fptt, neurons.LIF, models.adaptive_lif,
              reads=_fields("alpha", "window", "reduction", "second_forward"),
              options=("alpha", "window", "reduction", "second_forward"),
              defaults=_per_data({"lr": 3e-3, "weighting": "ramp", **_FPTT_FORM[SEQUENTIAL]},
                                 {"lr": 3e-3, **_FPTT_FORM[OTHER]}),
              graph_steps=_window),
    Algorithm("fptt-dual", "FPTT in the authors' running-mean and dual-variable form",
              online.fptt_dual, neurons.LIF, models.adaptive_lif,
              reads=_fields("alpha", "beta", "window"), options=("alpha", "beta", "window"),
              defaults=_per_data({"lr": 3e-3, "weighting": "ramp", "alpha": 0.1, "beta": 0.5, "window": 8},
                                 {"lr": 3e-3, "alpha": 0.1, "beta": 0.5, "window": 1}),
              graph_steps=_window),
    Algorithm("ottt", "OTTT_O: presynaptic traces, an update per step",
              functools.partial(online.ottt, online=True), neurons.OTTTLIF, None,
              defaults=_per_data({"lr": 1e-3}, {"lr": 3e-3})),
    Algorithm("ottt-a", "OTTT_A: presynaptic traces, gradients summed, an update per sequence",
              functools.partial(online.ottt, online=False), neurons.OTTTLIF, None,
              defaults=_per_data({"lr": 3e-3}, {"lr": 1e-2})),
    Algorithm("sltt", "SLTT: the spatial path only, gradients summed over the sequence",
              online.sltt, neurons.SLTTLIF, neurons.SLTTLIF,
              defaults=_per_data({"lr": 3e-3}, {"lr": 1e-2})),
    Algorithm("sltt-k", "SLTT-K: SLTT with a backward pass at `k` random steps only",
              online.sltt, neurons.SLTTLIF, neurons.SLTTLIF,
              reads={"k": "k", "seed": "data_seed"}, options=("k",),
              defaults=_per_data({"lr": 3e-3, "k": _k}, {"lr": 1e-2, "k": _k})),
    Algorithm("bptt", "BPTT: backpropagation through the whole sequence, the offline baseline",
              online.bptt, neurons.LIF, models.adaptive_lif,
              defaults=_per_data({"lr": 3e-3}, {"lr": 1e-2}), graph_steps=lambda config, T: T),
)}

#: Every config field that only some algorithms take (the union of their ``options``).
OPTIONS: tuple[str, ...] = tuple(dict.fromkeys(name for a in ALGORITHMS.values() for name in a.options))

#: Defaults per kind of data that do not depend on the algorithm (an algorithm's own override them).
DATA_DEFAULTS: dict[str, dict[str, Any]] = _per_data(
    {"model": "alif-rnn", "clip": 1.0, "batch_size": 32, "weighting": "late", "predict": "late"},
    {"model": "mlp", "clip": 0.0, "batch_size": 64, "weighting": "uniform", "predict": "uniform"},
    {"model": "srnn", "clip": 1.0, "batch_size": 64, "weighting": "late", "predict": "late"})

#: The choices of the algorithms' string options.
OPTION_CHOICES: dict[str, tuple[str, ...]] = {"reduction": ("mean", "sum"), "second_forward": ("post", "pre")}

#: ``name -> (lr -> optimizer)``; ``lr`` may be a number, a tensor or a schedule.
OPTIMIZERS: dict[str, Callable[[Any], optim.GradientTransformation]] = {
    "adam": optim.adam,
    "sgd": functools.partial(optim.sgd, momentum=0.9),
    "adamw": functools.partial(optim.adamw, weight_decay=1e-2),
}


def _cosine(lr: Any, epochs: int, warmup: int, every: int) -> schedules.Schedule:
    if warmup == 0:
        return schedules.cosine_decay(lr, decay_steps=epochs, every=every)
    return schedules.warmup_cosine_decay(lr, warmup, epochs, init_value=lr / (warmup + 1), every=every)


def _constant(lr: Any, epochs: int, warmup: int, every: int) -> schedules.Schedule:
    if warmup == 0:
        return schedules.constant(lr)
    return schedules.linear(lr / (warmup + 1), lr, warmup, every=every)


#: ``name -> (lr, epochs, warmup, every) -> schedule``: the learning rate over a run of ``epochs``
#: epochs of ``every`` updates each, constant within an epoch. ``cosine``: ``lr · ½(1 + cos(π e / E))``
#: at epoch e of E; ``constant``: ``lr``. A warm-up of W epochs first rises linearly, ``lr · (e + 1) /
#: (W + 1)`` at epoch e < W (the cosine then runs over the remaining E − W epochs).
SCHEDULES: dict[str, Callable[[Any, int, int, int], schedules.Schedule]] = {"cosine": _cosine, "constant": _constant}


def algorithm(name: str) -> Algorithm:
    """The registry entry ``name`` (``ConfigError`` on ``algo`` if there is none)."""
    if name not in ALGORITHMS:
        raise ConfigError("algo", f"`algo` must be one of {', '.join(ALGORITHMS)}, got {name!r}")
    return ALGORITHMS[name]


def takers(option: str) -> tuple[str, ...]:
    """The algorithms that take config field ``option`` (empty for a field every algorithm takes)."""
    return tuple(name for name, a in ALGORITHMS.items() if option in a.options)


def takes(algo: str, option: str) -> bool:
    """Whether ``algo`` takes config field ``option`` (every algorithm takes the fields not in :data:`OPTIONS`)."""
    return option not in OPTIONS or option in algorithm(algo).options


def check_takes(algo: str, option: str) -> None:
    """``ConfigError`` on ``option`` if it was given although ``algo`` does not take it."""
    if not takes(algo, option):
        raise ConfigError(option, f"`{option}` only applies to `algo` {' or '.join(takers(option))}, "
                                  f"got `algo` {algo}")


def defaults(algo: str, encoding: str, T: int, model: str | None = None) -> dict[str, Any]:
    """The default config values of ``algo`` on data of ``encoding`` with T steps, ``tau`` that of
    ``model`` (default: the data's model); options ``algo`` does not take are absent."""
    kind = data_kind(encoding)
    merged = {**DATA_DEFAULTS[kind], **algorithm(algo).defaults[kind]}
    merged["tau"] = models.DEFAULT_TAU[model or merged["model"]]
    return {name: value(T) if callable(value) else value for name, value in merged.items()}


def default_model(encoding: str) -> str:
    """The model trained on data of ``encoding`` unless one is given (``alif-rnn`` for sequential data)."""
    return DATA_DEFAULTS[data_kind(encoding)]["model"]


def _neuron(algo: str, model: str) -> models.NeuronFactory | None:
    spec = algorithm(algo)
    return spec.recurrent_neuron if model in models.RECURRENT else spec.neuron


def trains(algo: str, model: str) -> bool:
    """Whether ``algo`` can train ``model`` (OTTT has no recurrent form)."""
    return _neuron(algo, model) is not None


def algorithms_for(model: str) -> list[str]:
    """Every algorithm that can train ``model``, in registry order."""
    return [name for name in ALGORITHMS if trains(name, model)]


def check_model(algo: str, model: str, step_shape: tuple[int, ...]) -> None:
    """``ConfigError`` on ``model`` unless ``algo`` can train it on steps of ``step_shape``."""
    if not trains(algo, model):
        others = " or ".join(m for m in models.MODELS if trains(algo, m))
        raise ConfigError("model", f"`model` {model!r} cannot be trained with {algo} ({algo.upper()} has no "
                                   f"recurrent form); use `model` {others}, or another `algo`")
    try:
        models.check_steps(model, step_shape)
    except ValueError as err:
        raise ConfigError("model", f"`model` {err}; use `model` mlp") from None


def build_model(model: str, algo: str, step_shape: tuple[int, ...], num_classes: int, *,
                tau: float | torch.Tensor | None = None, hidden: int | None = None) -> Sequential:
    """The architecture ``model`` with the neuron that ``algo`` trains (:func:`purelearn.models.build`)."""
    check_model(algo, model, step_shape)
    return models.build(model, step_shape, num_classes, _neuron(algo, model), tau=tau, hidden=hidden)


def make_learner(algo: str, model: Sequential, optimizer: optim.GradientTransformation, *,
                 loss_fn: task.LossFn = task.loss_fn, data_parallel: Any = None, **options: Any) -> Any:
    """The learner of ``algo`` with the per-step ``loss_fn`` (:func:`purelearn.app.task.loss_fn`).

    ``options`` are learner keywords that ``algo`` reads (``alpha``, ``window``, ``k``, ...); ``None``
    values are left out (the learner's defaults apply), others it does not read are refused.
    ``data_parallel`` (every learner takes it) averages the learner's gradients over ranks.
    """
    spec = algorithm(algo)
    given = {name: value for name, value in options.items() if value is not None}
    unknown = sorted(set(given) - set(spec.reads))
    if unknown:
        raise TypeError(f"make_learner: {algo} does not take {', '.join(unknown)}; it takes "
                        f"{', '.join(spec.reads) or 'no options'}")
    if data_parallel is not None:
        given["data_parallel"] = data_parallel
    return spec.factory(model, loss_fn, optimizer, **given)


def learner_for(config: Config, model: Sequential, optimizer: optim.GradientTransformation,
                data_parallel: Any = None, **values: Any) -> Any:
    """The learner of a resolved ``config``; ``values`` replace config fields (e.g. ``alpha`` as a tensor);
    ``data_parallel`` (:class:`purelearn.distributed.DataParallel`) averages its gradients over ranks."""
    spec = algorithm(config.algo)
    options = {kw: values.get(name, getattr(config, name)) for kw, name in spec.reads.items()}
    return make_learner(config.algo, model, optimizer, data_parallel=data_parallel, **options)


def make_optimizer(name: str, lr: Any, clip: float | None = None) -> optim.GradientTransformation:
    """``adam``, ``sgd`` (momentum 0.9) or ``adamw`` (weight decay 0.01) with learning rate ``lr`` (a
    number, tensor or schedule); with ``clip`` > 0 the gradients are first clipped to that global norm."""
    if name not in OPTIMIZERS:
        raise ConfigError("optimizer", f"`optimizer` must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
    opt = OPTIMIZERS[name](lr)
    return optim.chain(optim.clip_by_global_norm(clip), opt) if clip else opt


def make_schedule(name: str, lr: Any, epochs: int, *, warmup: int = 0, every: int = 1) -> schedules.Schedule:
    """The learning-rate schedule ``name`` (:data:`SCHEDULES`) over ``epochs`` epochs of ``every`` updates."""
    if name not in SCHEDULES:
        raise ConfigError("schedule", f"`schedule` must be one of {', '.join(SCHEDULES)}, got {name!r}")
    return SCHEDULES[name](lr, epochs, warmup, every)
