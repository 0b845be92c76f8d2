"""The data a run names: ``--data SPEC`` (and ``Config.data``) -> a :class:`~purelearn.data.Split`.

A SPEC is one of::

    digits | seq-digits                the bundled digits (rate-coded, T=16 / one pixel per step, T=64)
    PATH                                a user tensor file (purelearn.data.tensor_file)
    KIND:ARG[,NAME=VALUE...]            a reader of READERS, e.g.
        shd:DIR                         SHD from DIR/shd_{train,test}.h5 (purelearn.data.heidelberg)
        ssc:DIR                         SSC from DIR/ssc_{train,valid,test}.h5
        randman[:NAME=VALUE,...]        generated timing-only data (purelearn.data.synthetic)
        tonic:NAME:DIR                  an event-camera data set of tonic (NMNIST, DVSGesture, CIFAR10DVS)
                                        in DIR, binned to frames (purelearn.data.events; the tonic extra)

Options follow the argument after commas: ``shd:~/data/shd,dt=0.01,cache=none``. Trailing
``NAME=VALUE`` parts are options; the rest is the argument (a path may hold commas, but not a
part that looks like an option). Options of ``shd``/``ssc``: ``dt`` (bin width, seconds),
``span`` (seconds covered from 0), ``cache`` (a folder for the binned data, or ``none``); of
``randman``: those of :data:`purelearn.data.synthetic.DEFAULTS`; of ``tonic``: ``downsample`` (an
integer spatial factor) and ``cache``. T is ``load``'s argument
(``--T``). A new kind is one :class:`Reader` in :data:`READERS`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from . import synthetic
from .dataset import Split
from .digits import load_digits
from .heidelberg import load_heidelberg
from .tensor_file import load_tensor_file

__all__ = ["Spec", "Reader", "READERS", "NAMED", "parse", "load", "absolute", "short_name"]

_OPTION = re.compile(r"^[A-Za-z_]\w*=")


class Spec(NamedTuple):
    """A parsed ``KIND:ARG[,NAME=VALUE...]``: the kind, its argument and its options (strings)."""

    kind: str
    arg: str
    options: dict[str, str]

    def __str__(self) -> str:
        parts = [self.arg] if self.arg else []
        parts += [f"{k}={v}" for k, v in self.options.items()]
        return f"{self.kind}:{','.join(parts)}" if parts else self.kind


@dataclass(frozen=True)
class Reader:
    """How ``KIND:ARG`` loads: ``load(arg, options, T) -> Split``; ``options`` it takes and their
    types; whether ARG is required; ``absolute(arg)`` makes a relative ARG absolute."""

    load: Callable[[str, dict[str, Any], int | None], Split]
    options: dict[str, Callable[[str], Any]]
    needs_arg: bool = True
    absolute: Callable[[str], str] = os.path.abspath
    paths: tuple[str, ...] = ()  # options that are paths


def _cache_option(text: str) -> str | None:
    return None if text.lower() in ("none", "off", "no") else text


def _heidelberg(kind: str) -> Reader:
    def load(arg: str, options: dict[str, Any], T: int | None) -> Split:
        return load_heidelberg(kind, os.path.expanduser(arg), T, dt=options.get("dt"), span=options.get("span"),
                               cache_dir=options.get("cache", ""))
    return Reader(load, {"dt": float, "span": float, "cache": _cache_option}, paths=("cache",))


def _tonic_parts(arg: str) -> tuple[str, str]:
    name, _, folder = arg.partition(":")
    if not name or not folder:
        raise ValueError(f"--data tonic: give a data set and a folder, tonic:NAME:DIR, got tonic:{arg}")
    return name, folder


def _tonic(arg: str, options: dict[str, Any], T: int | None) -> Split:
    from .events import load_tonic  # needs numpy (and tonic): only when asked for

    name, folder = _tonic_parts(arg)
    return load_tonic(name, os.path.expanduser(folder), n_time_bins=T, downsample=options.get("downsample", 1),
                      cache_dir=options.get("cache", ""))


def _tonic_absolute(arg: str) -> str:
    name, folder = _tonic_parts(arg)
    return f"{name}:{os.path.abspath(os.path.expanduser(folder))}"


def _generated(arg: str, options: dict[str, Any], T: int | None) -> Split:
    return synthetic.load_randman(T, **options)


READERS: dict[str, Reader] = {
    "shd": _heidelberg("shd"),
    "ssc": _heidelberg("ssc"),
    "tonic": Reader(_tonic, {"downsample": int, "cache": _cache_option}, absolute=_tonic_absolute, paths=("cache",)),
    "randman": Reader(_generated, {name: type(v) for name, v in synthetic.DEFAULTS.items()}, needs_arg=False,
                      absolute=lambda arg: arg),
}
#: Names that are data sets themselves: ``name -> load(T)``.
NAMED: dict[str, Callable[[int | None], Split]] = {
    "digits": lambda T: load_digits("rate", T),
    "seq-digits": lambda T: load_digits("sequential", T),
}


def parse(text: str) -> Spec | None:
    """The :class:`Spec` of ``text``, or ``None`` if it names no reader (a name or a path)."""
    kind, _, rest = text.partition(":")
    if kind not in READERS:
        return None
    parts = rest.split(",") if rest else []
    split_at = len(parts)
    while split_at > 0 and _OPTION.match(parts[split_at - 1]):
        split_at -= 1
    options = dict(part.split("=", 1) for part in parts[split_at:])
    return Spec(kind, ",".join(parts[:split_at]), options)


def _typed(spec: Spec) -> dict[str, Any]:
    reader = READERS[spec.kind]
    unknown = sorted(set(spec.options) - set(reader.options))
    if unknown:
        raise ValueError(f"--data {spec.kind}: unknown option(s) {unknown}; {spec.kind} takes "
                         f"{', '.join(reader.options) or 'no options'}")
    typed = {}
    for name, text in spec.options.items():
        convert = reader.options[name]
        try:
            typed[name] = convert(text)
        except ValueError:
            what = {int: "an integer", float: "a number"}.get(convert, "a value")  # type: ignore[call-overload]
            raise ValueError(f"--data {spec.kind}: option `{name}` must be {what}, got {text!r}") from None
    return typed


def load(name: str, T: int | None = None) -> Split:
    """The data named ``name`` (module docstring); ``T`` the time steps (rate code) or frames (events)."""
    if name in NAMED:
        return NAMED[name](T)
    spec = parse(name)
    if spec is None:
        return load_tensor_file(name, T)
    reader = READERS[spec.kind]
    if reader.needs_arg and not spec.arg:
        raise ValueError(f"--data {spec.kind}: give a folder, {spec.kind}:DIR")
    return reader.load(spec.arg, _typed(spec), T)


def absolute(text: str) -> str:
    """``text`` with its paths absolute (a run's stored config must work from any folder)."""
    if text in NAMED:
        return text
    spec = parse(text)
    if spec is None:
        return os.path.abspath(os.path.expanduser(text))
    reader = READERS[spec.kind]
    options = {k: (os.path.abspath(os.path.expanduser(v)) if k in reader.paths and _cache_option(v) else v)
               for k, v in spec.options.items()}
    arg = reader.absolute(os.path.expanduser(spec.arg)) if spec.arg else spec.arg
    return str(Spec(spec.kind, arg, options))


def short_name(text: str) -> str:
    """A short name for ``text`` (output folder names): the kind, a named set, or the file's stem."""
    spec = parse(text)
    if spec is not None:
        return spec.kind
    return text if text in NAMED else os.path.splitext(os.path.basename(text))[0]
