"""The configuration of a training run: one dataclass, validated field by field.

    config = Config(algo="fptt", data="seq-digits", epochs=30)
    config.validate()                       # ConfigError("lr", "`lr` must be a number > 0, got -1"), ...
    config = config.resolved(split)         # every None filled in from the registry's defaults

``None`` means "the default for this algorithm and data" (:mod:`purelearn.app.registry`). The
config is stored in checkpoints and ``metrics.json`` (:meth:`Config.to_dict`); a checkpoint written
before an option existed is read with :func:`from_stored`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch

from .. import data, models, validate
from . import registry, task
from .errors import ConfigError

__all__ = ["INT_MAX", "DEVICE_TYPES", "Config", "ConfigError", "from_stored", "check_tau"]

#: Integer fields and their least allowed value; every one is at most :data:`INT_MAX`.
_INTEGERS = {"epochs": 1, "batch_size": 1, "T": 1, "k": 1, "hidden": 1, "limit": 1, "window": 1, "warmup": 0,
             "seed": 0, "data_seed": 0}
#: The largest integer a field may hold: torch's int64 (seeds reach ``torch.Generator.manual_seed``;
#: sizes such as ``T`` and ``hidden`` are refused far below it, by the memory estimate of a run).
INT_MAX = 2**63 - 1
#: The device types a run can train on (``meta`` holds shapes, no values).
DEVICE_TYPES = ("cpu", "cuda", "mps")
#: Number fields and their bound: (low, strict).
_NUMBERS = {"lr": (0.0, True), "alpha": (0.0, True), "beta": (0.0, True), "tau": (0.0, True), "clip": (0.0, False)}


@dataclass
class Config:
    """Everything that defines a training run (stored in checkpoints and metrics.json).

    ``None`` means "the default for this algorithm/data" and is resolved by :meth:`resolved`; an
    option that only some algorithms take (``alpha``, ``beta``, ``window``, ``reduction``,
    ``second_forward``, ``k``: :data:`registry.OPTIONS`) must be ``None`` for the others, and stays
    ``None`` when resolved. ``warmup``: epochs of linear learning-rate warm-up before the schedule
    (0: none). Integers are at most :data:`INT_MAX`; ``device`` one of :data:`DEVICE_TYPES` that
    this machine has.
    """

    algo: str = "fptt"
    data: str = "digits"
    model: str | None = None
    epochs: int = 30
    batch_size: int | None = None
    lr: float | None = None
    alpha: float | None = None
    beta: float | None = None
    optimizer: str = "adam"
    clip: float | None = None
    schedule: str = "cosine"
    warmup: int = 0
    weighting: str | None = None
    predict: str | None = None
    window: int | None = None
    reduction: str | None = None
    second_forward: str | None = None
    seed: int = 0
    data_seed: int | None = None
    device: str = "cpu"
    compile: bool = False
    T: int | None = None
    k: int | None = None
    tau: float | None = None
    hidden: int | None = None
    limit: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (JSON-able)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        """The config of ``d`` (missing fields take their defaults; unknown ones are refused)."""
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"config has unknown field(s) {unknown}")
        return cls(**d)

    def validate(self) -> Config:
        """Check every value; ``ConfigError`` naming the field, what is allowed and what was given."""
        optional = {f.name for f in dataclasses.fields(self) if f.default is None}
        _check_choice("algo", self.algo, tuple(registry.ALGORITHMS))
        _check_choice("optimizer", self.optimizer, tuple(registry.OPTIMIZERS))
        _check_choice("schedule", self.schedule, tuple(registry.SCHEDULES))
        choices = {"model": models.MODELS, "weighting": task.WEIGHTINGS, "predict": task.WEIGHTINGS,
                   **registry.OPTION_CHOICES}
        for name, allowed in choices.items():
            if getattr(self, name) is not None:
                _check_choice(name, getattr(self, name), allowed)
        for name in registry.OPTIONS:  # one rule for every option of some algorithms: given to another, refused
            if getattr(self, name) is not None:
                registry.check_takes(self.algo, name)
        for name, low in _INTEGERS.items():
            if not (name in optional and getattr(self, name) is None):
                _check_integer(name, getattr(self, name), low)
        for name, (low, strict) in _NUMBERS.items():
            if not (name in optional and getattr(self, name) is None):
                _check_number(name, getattr(self, name), low, strict)
        if self.warmup >= self.epochs:
            raise ConfigError("warmup", f"`warmup` must be less than `epochs` ({self.epochs}), got {self.warmup}")
        _check_device(self.device)
        return self

    def resolved(self, split: data.Split) -> Config:
        """A copy with every ``None`` default filled in for ``split`` (``ConfigError`` where the data
        rule a value out: a model the algorithm cannot train, ``k`` above T, ``tau`` of a LIF <= 1)."""
        c = copy.copy(self)
        ds = split.train
        c.model = c.model or registry.default_model(ds.encoding)
        registry.check_model(c.algo, c.model, ds.step_shape)
        for name, value in registry.defaults(c.algo, ds.encoding, ds.T, c.model).items():
            if getattr(c, name) is None:
                setattr(c, name, value)
        c.data_seed = c.seed if c.data_seed is None else c.data_seed
        c.T = ds.T
        if c.k is not None and c.k > ds.T:
            raise ConfigError("k", f"`k` must be at most T={ds.T}, got {c.k}")
        check_tau(c.model, c.tau)
        return c


def check_tau(model: str, tau: float) -> None:
    """``ConfigError`` on ``tau`` if it is not above 1 in a model of LIF neurons (in ``alif-rnn`` it is
    the initial value of a trained time constant)."""
    if model not in models.RECURRENT and tau <= 1:
        raise ConfigError("tau", f"`tau` must be > 1 for LIF neurons, got {tau!r}")


def from_stored(stored: dict[str, Any]) -> Config:
    """The run config stored in a checkpoint. One written before an algorithm option existed ran with
    the option's per-step form (the defaults on rate-coded data: FPTT and FPTT-dual per step in
    SpikingJelly's form) and predicted with its loss weights: it is resumed so. Options of other
    algorithms that earlier versions stored (``alpha`` and ``beta`` of a BPTT run) are cleared."""
    stored = dict(stored)
    stored.setdefault("predict", stored.get("weighting"))
    if stored.get("algo") in registry.ALGORITHMS:
        legacy = registry.defaults(stored["algo"], "rate", stored.get("T") or 1)
        for name in registry.ALGORITHMS[stored["algo"]].options:
            stored.setdefault(name, legacy[name])
        for name in registry.OPTIONS:  # earlier versions stored e.g. alpha and beta for every algorithm
            if not registry.takes(stored["algo"], name):
                stored[name] = None
    return Config.from_dict(stored)


def _check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(name, f"`{name}` must be one of {', '.join(allowed)}, got {value!r}")


def _check_integer(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= INT_MAX:
        too_large = isinstance(value, int) and not isinstance(value, bool) and value > INT_MAX
        bound = f"in {low}..{INT_MAX} (2**63 - 1)" if too_large else f">= {low}"
        raise ConfigError(name, f"`{name}` must be an integer {bound}, got {value!r}")


def _check_number(name: str, value: Any, low: float, strict: bool) -> None:
    number = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if not number or not (value > low if strict else value >= low):
        bound = f"{'>' if strict else '>='} {low:g}" + ("" if strict or name != "clip" else " (0: no clipping)")
        raise ConfigError(name, f"`{name}` must be a number {bound}, got {value!r}")
    if value > validate.FLOAT32_MAX:  # the learners compute in float32 at least: larger is infinite there
        raise ConfigError(name, f"`{name}` must be at most {validate.FLOAT32_MAX:.4g} (float32's largest finite "
                                f"number), got {value!r}")


def _check_device(name: Any) -> None:
    """``ConfigError`` on ``device`` unless it names a device of :data:`DEVICE_TYPES` that this machine has."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError("device", f"`device` must be a torch device such as cpu or cuda:0, got {name!r}") from None
    if device.type == "meta":
        raise ConfigError("device", f"`device` {name}: a meta device holds shapes, not values, so nothing can be "
                                    f"trained on it; use {', '.join(DEVICE_TYPES)} (cuda:N for the N-th GPU)")
    if device.type not in DEVICE_TYPES:
        raise ConfigError("device", f"`device` {name}: purelearn trains on {', '.join(DEVICE_TYPES)} (cuda:N for "
                                    f"the N-th GPU), got a {device.type} device")
    if device.type == "cpu" and device.index not in (None, 0):
        raise ConfigError("device", f"`device` {name}: the CPU is one device, cpu (torch.set_num_threads, "
                                    "`threads` on the command line, sets how many cores it uses)")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError("device", f"`device` {name}: CUDA is not available on this machine")
        if device.index is not None and device.index >= count:
            raise ConfigError("device", f"`device` {name}: this machine has {count} CUDA device(s), "
                                        f"cuda:0..cuda:{count - 1}")
    if device.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ConfigError("device", f"`device` {name}: MPS is not available on this machine")
        if device.index not in (None, 0):
            raise ConfigError("device", f"`device` {name}: MPS has one device, mps or mps:0")
