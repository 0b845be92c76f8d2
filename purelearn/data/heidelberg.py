r"""The Heidelberg spiking datasets, SHD and SSC, from the published HDF5 files (read with h5py).

``shd:DIR`` reads ``DIR/shd_train.h5`` and ``DIR/shd_test.h5``; ``ssc:DIR`` reads ``ssc_train.h5``,
``ssc_valid.h5`` and ``ssc_test.h5``: the files of the Zenke lab's "Heidelberg spiking datasets"
page (zenkelab.org/datasets, mirror compneuro.net/datasets), published gzipped (``*.h5.gz``:
gunzip them). Nothing is downloaded. Layout of each file (N samples)::

    spikes/times    [N] variable-length float arrays: the spike times of sample n, in seconds
    spikes/units    [N] variable-length unsigned ints: the unit (0..699) of each of those spikes
    labels          [N] integer class labels
    extra/keys      class names (optional here: labels must then be < len(keys))
    extra/speaker   [N] speaker ids (not used)

**Binning** (:func:`purelearn.data.spikes.bin_spikes`) into T frames of ``dt`` seconds over the
span ``[0, T·dt]``. Give at most two of ``T`` (``--T``), ``dt`` and ``span``: by default T = 100
and the span is the largest finite spike time in the data set's files, rounded up to 10 ms; with
``dt`` alone T = ⌈span / dt⌉; with T and ``dt`` the span is T·dt. Spikes with a NaN/inf time are
dropped, counted and reported once per load (a warning; ``purelearn data`` shows the counts), as
are spikes outside an explicit span (the summary shows them). The binned data are
:class:`~purelearn.data.spikes.SpikeCounts` (about 5 bytes per non-zero (frame, unit) pair),
cached on disk (:mod:`purelearn.data.cache`) keyed by the files and the options.

**Malformed files** raise ``ValueError`` naming the file and the key: a missing group or dataset,
a dataset that is not one variable-length array per sample, numbers of samples or of spikes in a
sample that disagree between ``spikes/times``, ``spikes/units`` and ``labels``, units outside
0..699, labels below 0 or not below ``len(extra/keys)``, and a file with no samples. A sample
without spikes is valid (silence: an all-zero input); a data set without any finite spike time
cannot be binned and is refused.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from . import cache
from .dataset import Dataset, Split
from .encodings import EVENTS
from .spikes import BinStats, SpikeCounts, Spikes, bin_spikes, concat

__all__ = ["UNITS", "PARTS", "DEFAULT_BINS", "SPAN_STEP", "CHUNK", "write_shd", "read_spikes", "resolve_bins",
           "load_heidelberg"]

#: Input units (cochlea channels) of SHD and SSC.
UNITS = 700
#: The files of each data set, ``DIR/{kind}_{part}.h5``.
PARTS = {"shd": ("train", "test"), "ssc": ("train", "valid", "test")}
TITLES = {"shd": "Spiking Heidelberg Digits", "ssc": "Spiking Speech Commands"}
PUBLISHED = ("the Zenke lab's \"Heidelberg spiking datasets\" page (zenkelab.org/datasets, mirror "
             "compneuro.net/datasets)")
DEFAULT_BINS = 100
#: The default span is the largest finite spike time rounded up to a multiple of this (seconds).
SPAN_STEP = 0.01
#: Samples read and binned at a time (bounds the memory of the raw spikes).
CHUNK = 1024


def _h5py() -> Any:
    try:
        import h5py
    except ImportError:
        raise ImportError("SHD/SSC files are read with h5py: pip install 'purelearn[data]' (or h5py)") from None
    return h5py


# ----------------------------------------------------------------------------- writing


def write_shd(path: str | os.PathLike, spikes: Spikes, *, keys: Sequence[str] | None = None,
              speakers: torch.Tensor | None = None) -> None:
    """Write ``spikes`` to ``path`` in the layout of the published SHD/SSC files (module docstring):
    times as variable-length arrays of ``spikes.times``'s float type, units as uint16, labels and
    speakers (default 0) as uint16, ``keys`` (class names) as byte strings."""
    h5py, np = _h5py(), _numpy()
    n = spikes.lengths.numel()
    bounds = torch.cumsum(spikes.lengths, 0)[:-1].tolist()

    def ragged(values: torch.Tensor, dtype: Any) -> Any:
        out = np.empty(n, dtype=object)
        for i, part in enumerate(np.split(values.numpy().astype(dtype), bounds)):
            out[i] = part
        return out

    time_dtype = spikes.times.numpy().dtype
    with h5py.File(path, "w") as f:
        group = f.create_group("spikes")
        group.create_dataset("times", data=ragged(spikes.times, time_dtype), dtype=h5py.vlen_dtype(time_dtype))
        group.create_dataset("units", data=ragged(spikes.units, np.uint16), dtype=h5py.vlen_dtype(np.uint16))
        f.create_dataset("labels", data=spikes.labels.numpy().astype(np.uint16))
        extra = f.create_group("extra")
        speaker = torch.zeros(n, dtype=torch.int64) if speakers is None else speakers
        extra.create_dataset("speaker", data=speaker.numpy().astype(np.uint16))
        if keys is not None:
            extra.create_dataset("keys", data=np.array([k.encode() for k in keys]))


def _numpy() -> Any:
    import numpy

    return numpy


# ----------------------------------------------------------------------------- reading


def _open(path: str) -> Any:
    h5py = _h5py()
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"{path}: not a readable HDF5 file ({' '.join(str(err).split())[:160]})") from None


def _dataset(f: Any, path: str, key: str, vlen: bool) -> Any:
    """``f[key]``, a 1-D dataset (of variable-length arrays if ``vlen``), or a ValueError naming it."""
    h5py = _h5py()
    obj = f.get(key)
    if not isinstance(obj, h5py.Dataset):
        what = "is missing" if obj is None else "is a group, not a dataset"
        raise ValueError(f"{path}: key {key!r} {what}; the SHD/SSC layout has spikes/times, spikes/units and "
                         "labels (one entry per sample)")
    if obj.ndim != 1 or (vlen and h5py.check_vlen_dtype(obj.dtype) is None):
        kind = "a variable-length array" if vlen else "a number"
        raise ValueError(f"{path}: key {key!r} must hold {kind} per sample, got a dataset of shape {obj.shape} "
                         f"and dtype {obj.dtype}")
    return obj


def _kind_check(path: str, key: str, dtype: Any, kinds: str, what: str) -> None:
    if dtype.kind not in kinds:
        raise ValueError(f"{path}: key {key!r} must hold {what}, got dtype {dtype}")


def _layout(f: Any, path: str) -> tuple[torch.Tensor, list[str]]:
    """Check the file's layout; ``(labels [N] int64, class names)``."""
    times, units = _dataset(f, path, "spikes/times", True), _dataset(f, path, "spikes/units", True)
    labels_ds = _dataset(f, path, "labels", False)
    _kind_check(path, "spikes/times", _h5py().check_vlen_dtype(times.dtype), "f", "floating-point times (seconds)")
    _kind_check(path, "spikes/units", _h5py().check_vlen_dtype(units.dtype), "ui", "integer unit ids")
    _kind_check(path, "labels", labels_ds.dtype, "ui", "integer class labels")
    n = labels_ds.shape[0]
    if n == 0:
        raise ValueError(f"{path}: key 'labels' holds no samples; a data file needs at least one")
    for key, ds in (("spikes/times", times), ("spikes/units", units)):
        if ds.shape[0] != n:
            raise ValueError(f"{path}: key {key!r} has {ds.shape[0]} samples but 'labels' has {n}")
    keys_ds = f.get("extra/keys")
    names = [k.decode() if isinstance(k, bytes) else str(k) for k in keys_ds[()]] if keys_ds is not None else []
    labels = torch.from_numpy(labels_ds[()].astype("int64"))
    out_of_range = (labels < 0) | (labels >= len(names)) if names else labels < 0
    bad = torch.nonzero(out_of_range).flatten()
    if bad.numel():
        i = int(bad[0])
        bound = f"0..{len(names) - 1} (extra/keys names {len(names)} classes)" if names else ">= 0"
        raise ValueError(f"{path}: key 'labels' must hold class labels {bound}, got {int(labels[i])} at sample {i}")
    return labels, names


def read_spikes(path: str, chunk: int = CHUNK) -> Iterator[Spikes]:
    """The file's samples as raw :class:`Spikes`, ``chunk`` samples at a time, checked on the way
    (``ValueError`` naming the key and the sample)."""
    np = _numpy()
    with _open(path) as f:
        labels, _ = _layout(f, path)
        times_ds, units_ds = f["spikes/times"], f["spikes/units"]
        for a in range(0, labels.numel(), chunk):
            t_arr, u_arr = times_ds[a:a + chunk], units_ds[a:a + chunk]
            lengths = np.fromiter(map(len, t_arr), dtype=np.int64, count=len(t_arr))
            unit_lengths = np.fromiter(map(len, u_arr), dtype=np.int64, count=len(u_arr))
            if (lengths != unit_lengths).any():
                i = int(np.nonzero(lengths != unit_lengths)[0][0])
                raise ValueError(f"{path}: key 'spikes/units' has {unit_lengths[i]} units in sample {a + i} but "
                                 f"'spikes/times' has {lengths[i]} times; every spike needs both")
            times = np.concatenate(t_arr).astype(np.float64) if lengths.sum() else np.zeros(0)
            units = np.concatenate(u_arr).astype(np.int64) if lengths.sum() else np.zeros(0, dtype=np.int64)
            bad = np.nonzero((units < 0) | (units >= UNITS))[0]
            if bad.size:
                i = int(np.searchsorted(np.cumsum(lengths), bad[0], side="right"))
                raise ValueError(f"{path}: key 'spikes/units' must hold units 0..{UNITS - 1}, got {units[bad[0]]} in "
                                 f"sample {a + i}")
            yield Spikes(torch.from_numpy(times), torch.from_numpy(units), torch.from_numpy(lengths),
                         labels[a:a + len(t_arr)])


def _max_time(paths: Sequence[str]) -> float:
    """The largest finite spike time in the files (a ValueError if there is none)."""
    largest = -math.inf
    for path in paths:
        for part in read_spikes(path):
            finite = part.times[torch.isfinite(part.times)]
            if finite.numel():
                largest = max(largest, float(finite.max()))
    if largest == -math.inf:
        raise ValueError(f"{', '.join(paths)}: key 'spikes/times' holds no finite spike time in any sample; "
                         "there is nothing to bin")
    return largest


def resolve_bins(T: int | None, dt: float | None, span: float | None, largest: Callable[[], float]
                 ) -> tuple[int, float, str]:
    """``(T, dt, how the span was chosen)`` from at most two of ``T``, ``dt``, ``span`` (module
    docstring); ``largest()`` is the largest spike time, called only when the span is defaulted."""
    given = [name for name, v in (("T", T), ("dt", dt), ("span", span)) if v is not None]
    if len(given) == 3:
        raise ValueError("give at most two of T, dt and span (the third follows: span = T·dt)")
    for name, value in (("dt", dt), ("span", span)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ValueError(f"option `{name}` must be a finite number of seconds > 0, got {value!r}")
    if T is not None and (isinstance(T, bool) or not isinstance(T, int) or T < 1):
        raise ValueError(f"T must be an integer >= 1, got {T!r}")
    if T is not None and dt is not None:
        return T, dt, "T·dt"
    rule = "given"
    if span is None:
        top = largest()
        span = max(math.ceil(round(top / SPAN_STEP, 6)) * SPAN_STEP, SPAN_STEP)
        rule = f"the largest spike time, {top:.4f} s, rounded up to {SPAN_STEP * 1000:g} ms"
    if dt is not None:
        return max(1, math.ceil(round(span / dt, 6))), dt, rule
    T = DEFAULT_BINS if T is None else T
    return T, span / T, rule


def _bin_file(path: str, T: int, dt: float) -> tuple[SpikeCounts, torch.Tensor, BinStats]:
    parts, labels, stats = [], [], BinStats()
    for raw in read_spikes(path):
        counts, s = bin_spikes(raw, T, dt, UNITS)
        parts.append(counts)
        labels.append(raw.labels)
        stats = stats.plus(s)
    return concat(parts), torch.cat(labels), stats


def _prepare(kind: str, paths: list[str], T: int | None, dt: float | None, span: float | None) -> dict[str, Any]:
    """Check, bin and describe every file of the data set: the payload that is cached."""
    names = []
    for path in paths:
        with _open(path) as f:
            names.append(_layout(f, path)[1])
    T, dt, rule = resolve_bins(T, dt, span, lambda: _max_time(paths))
    out: dict[str, Any] = {"T": T, "dt": dt, "span_rule": rule, "classes": names[0], "parts": {}}
    for part, path in zip(PARTS[kind], paths, strict=True):
        counts, labels, stats = _bin_file(path, T, dt)
        if names[0] and int(labels.max()) >= len(names[0]):
            raise ValueError(f"{path}: key 'labels' holds {int(labels.max())}, beyond the {len(names[0])} classes "
                             f"of {paths[0]}'s extra/keys")
        out["parts"][part] = {"offsets": counts.offsets, "time": counts.time, "unit": counts.unit,
                              "count": counts.count, "labels": labels, "nonfinite": stats.nonfinite,
                              "outside": stats.outside}
    return out


def _missing(kind: str, folder: str, path: str) -> FileNotFoundError:
    files = ", ".join(f"{kind}_{p}.h5" for p in PARTS[kind])
    hint = f" ({os.path.basename(path)}.gz is there: gunzip it)" if os.path.isfile(path + ".gz") else ""
    return FileNotFoundError(
        f"{path} does not exist{hint}: {kind}:DIR reads {files} from DIR ({folder}); they are published as .h5.gz on "
        f"{PUBLISHED}: download them and gunzip them into {folder}")


def load_heidelberg(kind: str, folder: str | os.PathLike, T: int | None = None, *, dt: float | None = None,
                    span: float | None = None, cache_dir: str | None = "") -> Split:
    """SHD (``kind="shd"``) or SSC (``"ssc"``) from ``folder``, binned (module docstring).

    ``cache_dir``: the folder of the binned cache ("": :func:`purelearn.data.cache.default_dir`;
    ``None``: no disk cache). Train, test (and SSC's validation) sets hold
    :class:`~purelearn.data.spikes.SpikeCounts`, encoding ``"events"``.
    """
    if kind not in PARTS:
        raise ValueError(f"load_heidelberg: `kind` must be one of {', '.join(PARTS)}, got {kind!r}")
    folder = os.path.abspath(os.fspath(folder))
    paths = [os.path.join(folder, f"{kind}_{part}.h5") for part in PARTS[kind]]
    for path in paths:
        if not os.path.isfile(path):
            raise _missing(kind, folder, path)
    key = {"kind": kind, "files": cache.files_key(paths), "T": T, "dt": dt, "span": span, "units": UNITS}
    entry = cache.entry(cache_dir or cache.default_dir(), kind, key) if cache_dir is not None else None
    payload = cache.load(entry, key) if entry else None
    hit = payload is not None
    if payload is None:
        payload = _prepare(kind, paths, T, dt, span)
        if entry and not cache.save(entry, key, payload):
            entry = None
    return _split(kind, paths, payload, entry, hit)


def _split(kind: str, paths: list[str], payload: dict[str, Any], entry: str | None, hit: bool) -> Split:
    T, dt, names = payload["T"], payload["dt"], tuple(payload["classes"])
    sets, dropped = {}, {}
    for part, p in payload["parts"].items():
        counts = SpikeCounts(p["offsets"], p["time"], p["unit"], p["count"], T, UNITS, dt)
        sets[part] = Dataset(counts, p["labels"], EVENTS, T)
        dropped[part] = {"nonfinite": p["nonfinite"], "outside": p["outside"]}
    nonfinite = {part: d["nonfinite"] for part, d in dropped.items() if d["nonfinite"]}
    if nonfinite:
        detail = ", ".join(f"{n} in {kind}_{part}.h5" for part, n in nonfinite.items())
        warnings.warn(f"{kind}: dropped {sum(nonfinite.values())} spikes with NaN/inf times ({detail}); they are "
                      "never binned", stacklevel=3)
    num_classes = len(names) or 1 + max(int(p["labels"].max()) for p in payload["parts"].values())
    info = {"title": TITLES[kind], "files": paths, "T": T, "dt": dt, "span": T * dt, "span_rule": payload["span_rule"],
            "dropped": dropped, "cache": entry, "cache_hit": hit}
    return Split(kind, sets["train"], sets["test"], num_classes, sets.get("valid"), names, info)
