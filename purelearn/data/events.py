r"""Event-camera data through tonic: events binned to count frames, once, cached.

Events are tonic's format: a numpy structured array with the fields ``x``, ``y``, ``t`` (µs) and
``p`` (polarity, 0/1 or bool), sorted by ``t``; audio-like data has no ``y``. ``sensor_size`` is
tonic's ``(W, H, P)``. :func:`to_frames` bins one recording into count frames [T, P, H, W]
(without ``y``: [T, P, W]) **equal to** ``tonic.transforms.ToFrame(sensor_size, n_time_bins=...)``
or ``ToFrame(sensor_size, time_window=...)`` on the same events (``tests/test_events.py``), without
a Python loop per event. tonic's rules, matched value for value:

- ``n_time_bins=n``: the bin width is ``w = (t[-1] - t[0]) // n`` (floor, in the type of ``t``);
  bin ``i`` counts the events with ``t[0] + i·w <= t < t[0] + (i+1)·w``. So the events at or after
  ``t[0] + n·w`` are dropped, the last event always among them, and a recording shorter than ``n``
  time units (``w = 0``; one event) gives ``n`` empty frames.
- ``time_window=tw``: windows of ``tw`` from ``start = t[0]`` (or ``start_time``) to
  ``end = t[-1]`` (or ``end_time``); their number is ``floor((end - start - tw) / tw) + 1``
  (``ceil`` with ``include_incomplete=True``), at least 1, so T depends on the recording.
- ``overlap`` as tonic's (``n_time_bins``: a fraction of a bin; ``time_window``: in µs): a window
  then counts an event once for every window that holds it.
- ``P = 1``: all events go to channel 0, and events of both polarities are an error (as tonic).

Where this differs from tonic: events must be sorted by ``t`` (tonic slices by index with a binary
search and gives meaningless frames otherwise; here a ``ValueError``); out-of-range ``x``, ``y`` or
``p`` are a ``ValueError`` (tonic raises ``IndexError`` or, for ``p = -1``, silently counts it in the
last channel); empty input gives zero frames of the usual shape and ``dtype`` (tonic returns float64
zeros shaped [T, P, W, H], even without ``y``, and its ``Compose`` returns an empty recording as it
is, not as frames); unsigned timestamps never wrap (tonic computes
``end - start - tw`` in uint64); the input is never modified (tonic sets ``p = 0`` in place for
``P = 1``).

**Downsampling** by an integer factor ``k`` sums the counts of each k×k block of pixels: pixel
``(x, y)`` goes to ``(x // k, y // k)`` of a [ceil(H/k), ceil(W/k)] frame (a last, partial block
where ``k`` does not divide the size). That is tonic's ``Downsample(spatial_factor=1/k)`` followed
by ``ToFrame`` with the sensor size divided by ``k`` (tonic truncates ``x·(1/k)``, which equals
``x // k`` for every factor and coordinate we tested, up to 16 and 4096).

Counts are integers in a compact dtype, never wrapped: :func:`to_frames` returns ``dtype`` (int16 by
default, tonic's) and raises ``OverflowError`` if a count does not fit; :func:`bin_dataset` stores
uint8 and widens to int16, then int32, only when a count needs it. Learners get floats per batch
(:meth:`Frames.dense`), never for the whole set. Resident size: N·T·P·H·W bytes, e.g. DVS Gesture
at 32×32, T=20: 1,077 + 264 recordings, 55 MB; N-MNIST at 34×34, T=10: 60,000 + 10,000, 1.6 GB.

:func:`load_tonic` reads ``tonic.datasets.NMNIST``, ``DVSGesture`` or ``CIFAR10DVS`` from files
already on disk (never downloading), bins every recording once with ``n_time_bins`` and caches the
frames (:mod:`purelearn.data.cache`); it returns a :class:`purelearn.data.Split` whose sets hold
:class:`Frames` (counts [N, T, P, H, W], a compact set densified per batch) with encoding
``"events"``. CIFAR10-DVS has no split in tonic: per class, a seed-0 permutation of its recordings
(in path order), the first 90% for training (9,000 / 1,000 for the full set).

>>> import numpy as np
>>> events = np.zeros(4, dtype=[("x", int), ("y", int), ("t", int), ("p", int)])
>>> events["x"], events["t"], events["p"] = [0, 1, 1, 3], [0, 10, 20, 40], [0, 1, 1, 0]
>>> frames = to_frames(events, (4, 1, 2), n_time_bins=2)  # w = 20: [0, 20) and [20, 40); t=40 dropped
>>> frames.shape, frames.dtype
((2, 2, 1, 4), dtype('int16'))
>>> frames[:, 1, 0].tolist()
[[0, 1, 0, 0], [0, 1, 0, 0]]
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from . import EVENTS, Dataset, Split, cache

__all__ = [
    "TONIC_DATASETS",
    "to_frames",
    "frame_shape",
    "Frames",
    "BinnedEvents",
    "bin_dataset",
    "load_tonic",
]

#: The tonic datasets :func:`load_tonic` reads: the folder under ``root/NAME`` that holds each
#: split's files (``None``: no split in tonic), the files' extension, the archive they come from, and
#: the default number of frames ``T`` (OTTT's and SLTT's: 20 for DVS Gesture, 10 for CIFAR10-DVS; 10 for N-MNIST).
TONIC_DATASETS: dict[str, dict[str, Any]] = {
    "NMNIST": {"T": 10, "folders": {True: "Train", False: "Test"}, "ext": ".bin",
               "archives": {True: "train.zip", False: "test.zip"}, "layout": "<digit>/*.bin"},
    "DVSGesture": {"T": 20, "folders": {True: "ibmGestureTrain", False: "ibmGestureTest"}, "ext": ".npy",
                   "archives": {True: "ibmGestureTrain.tar.gz", False: "ibmGestureTest.tar.gz"},
                   "layout": "user<NN>_<lighting>/<label>.npy"},
    "CIFAR10DVS": {"T": 10, "folders": {None: ""}, "ext": ".aedat4",
                   "archives": {None: "CIFAR10DVS.zip and the class zips inside it"},
                   "layout": "<class>/*.aedat4"},
}
TONIC_SPLIT_SEED = 0
TONIC_TRAIN_FRACTION = 0.9
_COUNT_DTYPES = (np.uint8, np.int16, np.int32)


# ----------------------------------------------------------------------------- binning


def _check_sensor(sensor_size: Sequence[int], downsample: int) -> tuple[int, int, int]:
    if len(sensor_size) != 3 or any(int(s) != s or s < 1 for s in sensor_size):
        raise ValueError(f"sensor_size must be tonic's (W, H, P), three positive integers, got {tuple(sensor_size)}")
    if int(downsample) != downsample or downsample < 1:
        raise ValueError(f"downsample must be an integer factor >= 1, got {downsample!r}")
    return int(sensor_size[0]), int(sensor_size[1]), int(sensor_size[2])


def frame_shape(sensor_size: Sequence[int], downsample: int = 1, has_y: bool = True) -> tuple[int, ...]:
    """The shape of one frame: ``(P, ceil(H/k), ceil(W/k))``, or ``(P, ceil(W/k))`` without ``y``."""
    W, H, P = _check_sensor(sensor_size, downsample)
    k = int(downsample)
    return (P, -(-H // k), -(-W // k)) if has_y else (P, -(-W // k))


def _windows(t: np.ndarray, n_time_bins: int | None, time_window: float | None, overlap: float,
             include_incomplete: bool, start_time: float | None, end_time: float | None
             ) -> tuple[np.ndarray, np.ndarray]:
    """tonic's window starts and ends (``start <= t < end``) for non-empty sorted ``t``."""
    if n_time_bins is not None:
        width = (t[-1] - t[0]) // n_time_bins * (1 + overlap)
        starts = np.arange(n_time_bins) * (width * (1 - overlap)) + t[0]
        return starts, starts + width
    stride = time_window - overlap
    start = t[0] if start_time is None else start_time
    end = t[-1] if end_time is None else end_time
    ratio = (float(end) - float(start) - time_window) / stride
    n = max(int((math.ceil if include_incomplete else math.floor)(ratio) + 1), 1)
    starts = np.arange(n) * stride + start
    return starts, starts + time_window


def _counts(events: np.ndarray, sensor_size: Sequence[int], n_time_bins: int | None, time_window: float | None,
            overlap: float, include_incomplete: bool, start_time: float | None, end_time: float | None,
            downsample: int) -> np.ndarray:
    """The frames as int64 counts; validation of every argument and of the events."""
    W, H, P = _check_sensor(sensor_size, downsample)
    if (n_time_bins is None) == (time_window is None):
        raise ValueError("give exactly one of n_time_bins and time_window")
    if n_time_bins is not None and (isinstance(n_time_bins, bool) or int(n_time_bins) != n_time_bins
                                    or n_time_bins < 1):
        raise ValueError(f"n_time_bins must be an integer >= 1, got {n_time_bins!r}")
    if n_time_bins is not None and not 0 <= overlap < 1:
        raise ValueError(f"with n_time_bins, overlap is a fraction of a bin in [0, 1), got {overlap!r}")
    if time_window is not None and not (time_window > 0 and 0 <= overlap < time_window):
        raise ValueError(f"time_window must be > 0 and overlap in [0, time_window), got time_window={time_window!r}, "
                         f"overlap={overlap!r}")
    names = getattr(getattr(events, "dtype", None), "names", None) or ()
    if not isinstance(events, np.ndarray) or events.ndim != 1 or not {"x", "t", "p"} <= set(names):
        raise ValueError("events must be a 1-d numpy structured array with the fields x, t, p (and y), "
                         f"got {type(events).__name__} with fields {names}")
    has_y = "y" in names
    k = int(downsample)
    shape = frame_shape((W, H, P), k, has_y)
    if len(events) == 0:
        T = int(n_time_bins) if n_time_bins is not None else 1
        return np.zeros((T, *shape), dtype=np.int64)
    t = events["t"]
    if t.dtype.kind == "f" and not np.isfinite(t).all():
        raise ValueError("events: field 't' holds NaN or infinite timestamps")
    if (t[1:] < t[:-1]).any():
        raise ValueError("events must be sorted by t: events[np.argsort(events['t'], kind='stable')]")
    spatial = [("x", W)] + ([("y", H)] if has_y else [])
    for field, size in spatial:
        v = events[field]
        if v.dtype.kind not in "iu" or v.min() < 0 or v.max() >= size:
            raise ValueError(f"events: field {field!r} must hold integers in [0, {size}) for sensor_size "
                             f"{(W, H, P)}, got {v.dtype} values in [{v.min()}, {v.max()}]")
    p = events["p"].astype(np.int64)
    if P == 1:
        if np.unique(p).size > 1:
            raise ValueError("sensor_size has one polarity (P=1) but the events hold two")
        p = np.zeros_like(p)
    elif p.min() < 0 or p.max() >= P:
        raise ValueError(f"events: field 'p' must hold polarities in [0, {P}), got values in [{p.min()}, {p.max()}]")

    starts, ends = _windows(t, n_time_bins, time_window, overlap, include_incomplete, start_time, end_time)
    T = len(starts)
    # The windows holding t are lo..hi: the last one starting at or before t, the first one ending after t.
    hi = np.searchsorted(starts, t, side="right") - 1
    lo = np.searchsorted(ends, t, side="right")
    per_event = hi - lo + 1  # <= 0: in no window; > 1 only with overlap
    if per_event.max() <= 1:
        which = np.flatnonzero(per_event == 1)
        bins = hi[which]
    else:
        per_event = np.clip(per_event, 0, None)
        which = np.repeat(np.arange(len(t)), per_event)
        first = np.repeat(np.cumsum(per_event) - per_event, per_event)
        bins = lo[which] + (np.arange(len(which)) - first)
    index = bins * P + p[which]
    if has_y:
        index = index * shape[1] + events["y"][which].astype(np.int64) // k
    index = index * shape[-1] + events["x"][which].astype(np.int64) // k
    return np.bincount(index, minlength=T * math.prod(shape)).reshape(T, *shape)


def to_frames(events: np.ndarray, sensor_size: Sequence[int], *, n_time_bins: int | None = None,
              time_window: float | None = None, overlap: float = 0, include_incomplete: bool = False,
              start_time: float | None = None, end_time: float | None = None, downsample: int = 1,
              dtype: Any = np.int16) -> np.ndarray:
    """Events (structured ``x, y, t, p``, sorted by ``t``) -> count frames [T, P, H', W'] (no ``y``: [T, P, W']).

    Equal to ``tonic.transforms.ToFrame(sensor_size, n_time_bins=...)`` (or ``time_window=...``, with
    ``overlap``, ``include_incomplete``, ``start_time``, ``end_time`` as tonic's), after
    ``tonic.transforms.Downsample(spatial_factor=1/downsample)`` when ``downsample > 1``; rules and
    differences in the module docstring. ``sensor_size`` is tonic's ``(W, H, P)``; H' = ceil(H/k),
    W' = ceil(W/k). Counts are ``dtype`` (int16, tonic's); a count that does not fit raises
    ``OverflowError`` (nothing wraps).
    """
    counts = _counts(events, sensor_size, n_time_bins, time_window, overlap, include_incomplete, start_time,
                     end_time, downsample)
    dtype = np.dtype(dtype)
    if dtype.kind not in "iu":
        raise ValueError(f"dtype must be an integer dtype, got {dtype}")
    top = int(counts.max(initial=0))
    if top > np.iinfo(dtype).max:
        raise OverflowError(f"to_frames: a pixel counts {top} events in one frame, more than {dtype} holds "
                            f"({np.iinfo(dtype).max}); pass a wider dtype or more time bins")
    return counts.astype(dtype)


@dataclass(frozen=True, eq=False)
class Frames:
    """Count frames of N recordings, ``counts`` [N, T, P, H, W] (or [N, T, P, W]) in an integer dtype:
    a :class:`~purelearn.data.Compact` set, densified per batch by :meth:`dense`."""

    counts: torch.Tensor

    @property
    def T(self) -> int:
        """Frames per recording."""
        return int(self.counts.shape[1])

    def __len__(self) -> int:
        return int(self.counts.shape[0])

    def __getitem__(self, index: torch.Tensor | slice) -> Frames:
        return Frames(self.counts[index])

    def to(self, device: torch.device | str) -> Frames:
        """The same counts on ``device``."""
        return Frames(self.counts.to(device))

    def dense(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The selected recordings' frames, time-major [T, n, P, H, W], as ``dtype``."""
        return self.counts.transpose(0, 1).to(dtype, memory_format=torch.contiguous_format)

    @property
    def step_shape(self) -> tuple[int, ...]:
        """One frame: ``(P, H, W)``."""
        return tuple(self.counts.shape[2:])

    @property
    def nbytes(self) -> int:
        """Bytes held by the counts."""
        return self.counts.element_size() * self.counts.numel()

    def spikes_per_sample(self) -> torch.Tensor:
        """Binned events per recording, [N] int64."""
        return self.counts.flatten(1).sum(1, dtype=torch.int64)


class BinnedEvents(NamedTuple):
    """:func:`bin_dataset`'s result: the frames, labels [N] int64, per recording the events that
    tonic's rule leaves out of every frame (``outside`` [N] int64), and how many recordings had to be
    sorted (``unsorted``)."""

    frames: Frames
    labels: torch.Tensor
    outside: torch.Tensor
    unsorted: int


def bin_dataset(dataset: Any, sensor_size: Sequence[int], *, n_time_bins: int, downsample: int = 1,
                indices: Sequence[int] | None = None, progress: bool | None = None, desc: str = "binning"
                ) -> BinnedEvents:
    """Bin every ``(events, label)`` of ``dataset`` (any indexable, e.g. a tonic dataset) once.

    Frames [N, T, P, H', W'] as :func:`to_frames` (``n_time_bins``) in uint8, widened to int16 or
    int32 only if a count needs it. ``indices``: which samples, in that order (default all).
    Recordings not sorted by ``t`` are sorted (stably) first and counted in one warning.
    ``progress``: a tqdm bar (``None``: only on a terminal).
    """
    from tqdm import tqdm

    order = list(range(len(dataset))) if indices is None else [int(i) for i in indices]
    shape = frame_shape(sensor_size, downsample)
    frames = np.zeros((len(order), n_time_bins, *shape), dtype=_COUNT_DTYPES[0])
    labels, outside = np.zeros(len(order), dtype=np.int64), np.zeros(len(order), dtype=np.int64)
    unsorted = 0
    for row, i in enumerate(tqdm(order, desc=desc, disable=None if progress is None else not progress)):
        events, label = dataset[i]
        if len(events) > 1 and (events["t"][1:] < events["t"][:-1]).any():
            events, unsorted = events[np.argsort(events["t"], kind="stable")], unsorted + 1
        counts = _counts(events, sensor_size, n_time_bins, None, 0, False, None, None, downsample)
        top = int(counts.max(initial=0))
        while top > np.iinfo(frames.dtype).max:
            wider = _COUNT_DTYPES.index(frames.dtype.type) + 1
            if wider == len(_COUNT_DTYPES):
                raise OverflowError(f"{desc}: sample {i} counts {top} events in one pixel and frame; use more bins")
            frames = frames.astype(_COUNT_DTYPES[wider])
        frames[row] = counts
        labels[row] = int(label)
        outside[row] = len(events) - int(counts.sum())
    if unsorted:
        warnings.warn(f"{desc}: {unsorted} of {len(order)} recordings were not sorted by time; sorted them before "
                      "binning", stacklevel=2)
    return BinnedEvents(Frames(torch.from_numpy(frames)), torch.from_numpy(labels), torch.from_numpy(outside), unsorted)


# ----------------------------------------------------------------------------- tonic datasets


def _import_tonic() -> Any:
    try:
        import tonic
        import tonic.datasets
    except ImportError:
        raise ImportError("event-camera data needs tonic: pip install 'purelearn[tonic]'") from None
    return tonic


def _check_files(name: str, cls: Any, root: Path, train: bool | None) -> Path:
    """The folder of tonic's extracted files, or one line saying which files go where and where they come from."""
    spec = TONIC_DATASETS[name]
    folder = root / name / spec["folders"][train]
    if folder.is_dir() and next(folder.rglob(f"*{spec['ext']}"), None) is not None:
        return folder
    url = getattr(cls, "url", None) if train is None else getattr(cls, "train_url" if train else "test_url", None)
    raise FileNotFoundError(
        f"tonic:{name}: no {spec['ext']} files under {folder}; extract {spec['archives'][train]} there "
        f"({folder}/{spec['layout']}), as tonic.datasets.{name}(save_to={str(root)!r}) would: published at {url}")


def _offline(cls: Any) -> Any:
    """``cls`` that trusts our file check and never downloads (tonic downloads in the constructor)."""
    def download(self: Any) -> None:
        raise FileNotFoundError(f"tonic:{cls.__name__}: files missing under {self.location_on_system} "
                                "(purelearn never downloads)")
    return type(cls.__name__, (cls,), {"_check_exists": lambda self: True, "download": download,
                                       "__module__": __name__})


def _path_order(ds: Any) -> list[int]:
    """Sample indices sorted by file path (tonic lists some folders in file-system order)."""
    return sorted(range(len(ds)), key=lambda i: ds.data[i])


def _class_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per class (in class order), a seeded permutation of its samples; the first ``fraction`` train."""
    g = torch.Generator().manual_seed(seed)
    train, test = [], []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        perm = idx[torch.randperm(len(idx), generator=g)]
        n = round(fraction * len(idx))
        train.append(perm[:n])
        test.append(perm[n:])
    return torch.cat(train).sort().values, torch.cat(test).sort().values


def _part(b: BinnedEvents, index: torch.Tensor | slice = slice(None)) -> dict[str, Any]:
    return {"counts": b.frames.counts[index], "labels": b.labels[index], "outside": int(b.outside[index].sum()),
            "unsorted": b.unsorted}


def load_tonic(name: str, root: str | os.PathLike, *, n_time_bins: int | None = None, downsample: int = 1,
               cache_dir: str | None = "", progress: bool | None = None, **dataset_kwargs: Any) -> Split:
    """``tonic.datasets.NAME(save_to=root)`` binned to frames, cached: a :class:`~purelearn.data.Split`.

    ``name``: one of :data:`TONIC_DATASETS` (NMNIST, DVSGesture, CIFAR10DVS). ``root`` is tonic's
    ``save_to``: it holds ``NAME/`` with the extracted files (``root`` may also be that ``NAME``
    folder itself); nothing is downloaded, missing files raise ``FileNotFoundError`` in one line.
    Each split is binned once with :func:`bin_dataset` (``n_time_bins``, default the dataset's ``T``
    in :data:`TONIC_DATASETS`; ``downsample``) and cached
    (:mod:`purelearn.data.cache`; ``cache_dir``: "" the default folder, ``None`` no disk cache),
    keyed by the dataset, the recordings (path, size, mtime), the options, ``dataset_kwargs``
    (passed to tonic, e.g. NMNIST's ``first_saccade_only=True``) and tonic's version. The sets hold
    :class:`Frames` (uint8 counts unless a count needs more), encoding ``"events"``; labels int64;
    ``num_classes`` and ``classes`` are tonic's; ``info`` says what was binned, left out and cached.
    """
    tonic = _import_tonic()
    if name not in TONIC_DATASETS:
        raise ValueError(f"tonic: dataset must be one of {sorted(TONIC_DATASETS)}, got {name!r}; "
                         "other datasets: bin_dataset(dataset, sensor_size, n_time_bins=...)")
    if n_time_bins is None:
        n_time_bins = TONIC_DATASETS[name]["T"]
    if isinstance(n_time_bins, bool) or int(n_time_bins) != n_time_bins or n_time_bins < 1:
        raise ValueError(f"n_time_bins must be an integer >= 1, got {n_time_bins!r}")
    cls = getattr(tonic.datasets, name)
    sensor = tuple(int(s) for s in cls.sensor_size)
    shape = frame_shape(sensor, downsample)  # validates downsample
    T, k = int(n_time_bins), int(downsample)
    root = Path(root).expanduser().resolve()
    if root.name == name and not (root / name).exists():
        root = root.parent
    splits = list(TONIC_DATASETS[name]["folders"])
    folders = [str(_check_files(name, cls, root, train)) for train in splits]
    if name == "CIFAR10DVS":
        try:
            import aedat  # noqa: F401 - tonic reads .aedat4 with it
        except ImportError:
            raise ImportError("tonic:CIFAR10DVS reads .aedat4 files with the aedat package: "
                              "pip install aedat") from None
    offline = _offline(cls)
    datasets = {train: offline(save_to=str(root), **({} if train is None else {"train": train}), **dataset_kwargs)
                for train in splits}
    orders = {train: _path_order(ds) for train, ds in datasets.items()}
    listing = [cache.files_key([ds.data[i] for i in orders[train]]) for train, ds in datasets.items()]
    key = {"kind": "tonic", "dataset": name, "T": T, "downsample": k, "tonic": getattr(tonic, "__version__", "?"),
           "options": {o: repr(v) for o, v in sorted(dataset_kwargs.items())},
           "files": hashlib.sha256(json.dumps(listing).encode()).hexdigest()}
    entry = cache.entry(cache_dir or cache.default_dir(), f"tonic-{name}", key) if cache_dir is not None else None
    payload = cache.load(entry, key) if entry else None
    hit = payload is not None
    if payload is None:
        options = dict(sensor_size=sensor, n_time_bins=T, downsample=k, progress=progress)
        if None in datasets:
            b = bin_dataset(datasets[None], indices=orders[None], desc=f"tonic:{name}", **options)
            tr, te = _class_split(b.labels, TONIC_TRAIN_FRACTION, TONIC_SPLIT_SEED)
            parts = {"train": _part(b, tr), "test": _part(b, te)}
            parts["test"]["unsorted"] = 0  # counted once, with train
        else:
            parts = {part: _part(bin_dataset(datasets[train], indices=orders[train], desc=f"tonic:{name} {part}",
                                             **options)) for train, part in ((True, "train"), (False, "test"))}
        payload = {"parts": parts}
        if entry and not cache.save(entry, key, payload):
            entry = None
    parts = payload["parts"]
    sets = {part: Dataset(Frames(p["counts"]), p["labels"], EVENTS, T) for part, p in parts.items()}
    names = cls.classes if isinstance(cls.classes, list) else sorted(cls.classes, key=cls.classes.get)
    info = {"title": f"{name} (tonic.datasets.{name}), {T} frames of {shape}", "files": folders, "T": T,
            "downsample": k, "sensor_size": sensor,
            "binning": f"tonic.transforms.ToFrame(n_time_bins={T})" + (f" after Downsample(1/{k})" if k > 1 else ""),
            "dropped": {part: {"outside": p["outside"]} for part, p in parts.items()},
            "unsorted": sum(p["unsorted"] for p in parts.values()), "cache": entry, "cache_hit": hit}
    if None in datasets:
        info["split"] = (f"per class, a seed-{TONIC_SPLIT_SEED} permutation of its recordings in path order; "
                         f"the first {TONIC_TRAIN_FRACTION:.0%} train")
    return Split(f"tonic:{name}", sets["train"], sets["test"], len(names), classes=tuple(names), info=info)
