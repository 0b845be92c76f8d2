r"""Randman: generated spike data whose classes differ only in spike *timing* (no files needed).

After Zenke & Vogels (2021), "The remarkable robustness of surrogate gradient learning for
instilling complex function in spiking neural networks" (random manifolds), written from its
description. Each class c is a smooth random map of a latent cube ``[0, 1]^dim`` into
``[0, 1]^M``, M = ``units · spikes``::

    g_cm(u) = Σ_{d < dim} Σ_{j = 1..freqs} j^(−alpha) · a_cmdj · sin(2π (j · b_cmdj · u_d + φ_cmdj))
    f_cm(u) = clamp((g_cm(u) − lo_cm) / (hi_cm − lo_cm), 0, 1)

with ``a, b, φ ~ U(0, 1)`` per class and coordinate, and ``lo``, ``hi`` the least and largest
``g_cm`` over 1,000 reference points of the cube (larger ``alpha``: smoother manifolds). A sample of
class c draws ``u ~ U(0, 1)^dim``; coordinate m is a spike of unit ``m mod units`` at time
``duration · f_cm(u)`` seconds. Every unit fires exactly ``spikes`` times in every sample, so the
spike counts carry no information: a model that ignores time is at chance.

:func:`randman` returns the raw :class:`~purelearn.data.spikes.Spikes` of ``classes × samples``
samples, shuffled (all draws from one generator seeded with ``seed``); :func:`load_randman` splits
them 80/20 (:func:`~purelearn.data.dataset.seeded_split`) and bins them into T frames (default
100) over ``[0, duration]``. :func:`~purelearn.data.heidelberg.write_shd` writes them in the
SHD layout (``units <= 700``); :func:`write_randman_shd` writes one generation, split as
:func:`load_randman` splits it, as ``DIR/shd_train.h5`` and ``DIR/shd_test.h5``, so that
``--data shd:DIR`` reads the same frames as ``--data randman`` with the same options.

Defaults (:data:`DEFAULTS`): 10 classes of 100 samples, 100 units firing 5 times each in 1 s
(0.05 spikes per unit per 10-ms frame: sparse like cochlea spikes, and dense enough for the
``srnn`` defaults to learn), a one-dimensional manifold with ``alpha=2`` and 3 frequencies.
"""

from __future__ import annotations

import inspect
import math
import os
from pathlib import Path
from typing import Any

import torch

from .. import validate
from .dataset import Dataset, Split, seeded_split
from .encodings import EVENTS
from .heidelberg import DEFAULT_BINS, UNITS, write_shd
from .spikes import Spikes, bin_spikes, select

__all__ = ["DEFAULTS", "randman", "load_randman", "write_randman_shd"]

_LEAST = {"classes": 2, "units": 1, "samples": 1, "dim": 1, "freqs": 1, "spikes": 1, "seed": 0}
REFERENCE_POINTS = 1000
TRAIN_FRACTION = 0.8


def _check(options: dict[str, Any]) -> None:
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"randman: unknown option(s) {unknown}; options are {', '.join(DEFAULTS)}")
    for name, least in _LEAST.items():
        v = options[name]
        if name == "seed":  # a float such as 1.5 is refused, never truncated; at most 2**63 - 1
            try:
                validate.seed("randman", v)
            except TypeError as err:  # every randman option error is a ValueError (--data reports them)
                raise ValueError(str(err)) from None
        elif isinstance(v, bool) or not isinstance(v, int) or v < least:
            raise ValueError(f"randman: option `{name}` must be an integer >= {least}, got {v!r}")
    for name, strict in (("alpha", False), ("duration", True)):
        v = options[name]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not (
                v > 0 if strict else v >= 0):
            raise ValueError(f"randman: option `{name}` must be a finite number {'>' if strict else '>='} 0, got {v!r}")


def _embed(a: torch.Tensor, b: torch.Tensor, phi: torch.Tensor, alpha: float, u: torch.Tensor) -> torch.Tensor:
    """``g(u)`` [n, M] of one class with coefficients [M, dim, freqs] at points ``u`` [n, dim]."""
    j = torch.arange(1, a.shape[-1] + 1, dtype=u.dtype)
    phase = 2 * math.pi * (j * b * u[:, None, :, None] + phi)          # [n, M, dim, freqs]
    return (j ** -alpha * a * torch.sin(phase)).sum(dim=(2, 3))


def randman(classes: int = 10, units: int = 100, samples: int = 100, *, dim: int = 1, alpha: float = 2.0,
            freqs: int = 3, spikes: int = 5, duration: float = 1.0, seed: int = 0) -> Spikes:
    """``classes × samples`` samples of ``units`` units firing ``spikes`` times each (module docstring),
    shuffled; times float32 in [0, duration], each sample's spikes in time order."""
    _check(dict(classes=classes, units=units, samples=samples, dim=dim, alpha=alpha, freqs=freqs, spikes=spikes,
                duration=duration, seed=seed))
    g = torch.Generator().manual_seed(seed)
    m = units * spikes
    coefficients = torch.rand(3, classes, m, dim, freqs, generator=g, dtype=torch.float64)
    reference = torch.rand(REFERENCE_POINTS, dim, generator=g, dtype=torch.float64)
    latent = torch.rand(classes, samples, dim, generator=g, dtype=torch.float64)
    times = []
    for c in range(classes):
        a, b, phi = coefficients[:, c]
        ref = _embed(a, b, phi, alpha, reference)
        lo, hi = ref.min(0).values, ref.max(0).values
        f = torch.cat([(_embed(a, b, phi, alpha, u) - lo) / (hi - lo) for u in latent[c].split(256)])
        times.append(duration * f.clamp(0, 1))
    times = torch.cat(times).float()                                       # [N, M], class after class
    order = torch.randperm(classes * samples, generator=g)
    times, by_time = torch.sort(times[order], dim=1)
    unit = (torch.arange(m) % units)[by_time]
    labels = torch.arange(classes).repeat_interleave(samples)[order]
    return Spikes(times.reshape(-1), unit.reshape(-1), torch.full((classes * samples,), m), labels)


#: The generator's options and their defaults (those of :func:`randman`).
DEFAULTS: dict[str, Any] = {name: p.default for name, p in inspect.signature(randman).parameters.items()}


def _train_test(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    return seeded_split(n, min(max(round(TRAIN_FRACTION * n), 1), n - 1))


def load_randman(T: int | None = None, **options: Any) -> Split:
    """Generated randman data (``options`` as :func:`randman`'s, :data:`DEFAULTS`), split 80/20 and
    binned into T frames (default 100) over ``[0, duration]``; encoding ``"events"``."""
    opts = {**DEFAULTS, **options}
    _check(opts)
    T = DEFAULT_BINS if T is None else T
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be an integer >= 1, got {T!r}")
    raw = randman(**opts)
    counts, _ = bin_spikes(raw, T, opts["duration"] / T, opts["units"])
    n = raw.labels.numel()
    train, test = _train_test(n)
    full = Dataset(counts, raw.labels, EVENTS, T)
    info = {"title": "random manifolds, generated: the classes differ only in spike timing", "T": T,
            "dt": opts["duration"] / T, "span": opts["duration"], "span_rule": "the generator's duration",
            "options": opts, "cache": None, "cache_hit": False}
    return Split("randman", full.subset(train), full.subset(test), opts["classes"], info=info)


def write_randman_shd(folder: str | os.PathLike, *, overwrite: bool = False, **options: Any) -> tuple[Path, Path]:
    """Write randman data (``options`` as :func:`randman`'s) in the published SHD layout:
    ``folder/shd_train.h5`` and ``folder/shd_test.h5``, the 80/20 split of :func:`load_randman`,
    class names ``"class 0"``, ... Existing files are kept (``FileExistsError``) unless ``overwrite``.
    Returns the two paths. ``shd:folder`` then bins the same frames as ``randman`` with these
    options (its default span, the largest spike time rounded up to 10 ms, is ``duration`` when
    ``duration`` is a multiple of 10 ms and some spike reaches it).

    >>> import tempfile
    >>> train, test = write_randman_shd(tempfile.mkdtemp(), classes=3, units=20, samples=10)
    >>> train.name, test.name
    ('shd_train.h5', 'shd_test.h5')
    """
    opts = {**DEFAULTS, **options}
    _check(opts)
    if opts["units"] > UNITS:
        raise ValueError(f"write_randman_shd: option `units` must be <= {UNITS} (the SHD layout's units), "
                         f"got {opts['units']}")
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"write_randman_shd: folder {str(folder)!r} is not an existing directory")
    paths = (folder / "shd_train.h5", folder / "shd_test.h5")
    existing = [str(p) for p in paths if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"write_randman_shd: {', '.join(existing)} exist(s); pass overwrite=True to replace")
    raw = randman(**opts)
    keys = [f"class {c}" for c in range(opts["classes"])]
    for path, index in zip(paths, _train_test(raw.labels.numel()), strict=True):
        write_shd(path, select(raw, index), keys=keys)
    return paths
