r"""Datasets for the command line and notebooks: bundled digits, spike encodings, user tensor files.

Everything the learners see is **time-major**: a batch is ``x_seq`` [T, N, ...] with integer
labels [N]. Every random draw (the shuffle and the rate-coded spikes) comes from an explicit
``torch.Generator``, so a run is reproducible from its seed and resumable from the generator's
``get_state()``.

Bundled data: the handwritten digits of scikit-learn (``sklearn.datasets.load_digits``: 1,797
images of 8×8 pixels with intensities 0..16, ten classes; shipped inside the package, no network).
Pixels are scaled to [0, 1] (``intensity / 16``) and kept as images [N, 1, 8, 8]. The split is
fixed: ``torch.randperm(1797, generator=torch.Generator().manual_seed(0))``, its first 1,437 indices
are the training set and the last 360 the test set (:func:`digits_split`).

Encodings (:func:`encode`), from images ``x`` [N, ...] with values in [0, 1]:

- ``"rate"``: ``T`` Bernoulli spike frames, ``x_seq[t] ~ Bernoulli(x)`` independently per step
  and pixel: [T, N, ...], default T=16 (:func:`rate_encode`).
- ``"sequential"``: one pixel per step in row-major order, ``x_seq[t, n, 0] = x[n].flatten()[t]``:
  [D, N, 1] with D pixels per image (T=64 for the digits, the small analogue of sequential MNIST;
  :func:`sequential_encode`).
- ``"none"``: the data is already a sequence, ``x`` [N, T, ...] becomes [T, N, ...].

User data (:func:`load_tensor_file`) is a file written with ``torch.save`` of a dict::

    torch.save({"x": x, "y": y, "encoding": "rate"}, "mydata.pt")

- ``x``: a floating tensor, either [N, T, ...] already encoded (``encoding="none"``, the default;
  at least 3 dimensions, [N, T, features...]) or [N, ...] images to encode with ``"rate"``
  (values must lie in [0, 1]; they are spike probabilities) or ``"sequential"``.
- ``y``: int64 class labels [N], values in 0..C−1 (C = ``y.max() + 1`` classes).
- optional ``x_test``, ``y_test``: a test set of the same layout. Without them the file's samples
  are split by the seeded permutation ``torch.randperm(N, generator=torch.Generator().manual_seed(0))``:
  the first ``round(0.8·N)`` for training, the rest for testing.

A wrong layout raises ``ValueError`` naming the key, what was expected and what was found.
The file is read with ``torch.load(weights_only=True)``: plain tensors, strings and numbers only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

__all__ = [
    "ENCODINGS",
    "DIGITS_SIZE",
    "DIGITS_TRAIN",
    "DIGITS_TEST",
    "SPLIT_SEED",
    "Dataset",
    "Split",
    "load_digits_images",
    "digits_split",
    "load_digits",
    "rate_encode",
    "sequential_encode",
    "encode",
    "load_tensor_file",
    "load",
    "batches",
    "generator_state",
]

ENCODINGS = ("rate", "sequential", "none")
DIGITS_SIZE, DIGITS_TRAIN, DIGITS_TEST = 1797, 1437, 360
SPLIT_SEED = 0
USER_TRAIN_FRACTION = 0.8


@dataclass(frozen=True)
class Dataset:
    """Samples before encoding: ``x`` [N, ...] (or [N, T, ...] for ``"none"``), labels ``y`` [N]."""

    x: torch.Tensor
    y: torch.Tensor
    encoding: str
    T: int

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, index: torch.Tensor) -> Dataset:
        """The samples at ``index`` (same encoding)."""
        return Dataset(self.x[index], self.y[index], self.encoding, self.T)

    @property
    def step_shape(self) -> tuple[int, ...]:
        """The shape of one time step of one sample, ``x_seq.shape[2:]``."""
        if self.encoding == "none":
            return tuple(self.x.shape[2:])
        if self.encoding == "sequential":
            return (1,)
        return tuple(self.x.shape[1:])


@dataclass(frozen=True)
class Split:
    """A named train/test pair with the number of classes."""

    name: str
    train: Dataset
    test: Dataset
    num_classes: int

    def limit(self, n: int | None) -> Split:
        """The first ``n`` training and the first ``max(n // 4, 1)`` test samples (for quick runs)."""
        if n is None:
            return self
        if n < 1:
            raise ValueError(f"limit must be >= 1, got {n}")
        return Split(self.name, self.train.subset(torch.arange(min(n, len(self.train)))),
                     self.test.subset(torch.arange(min(max(n // 4, 1), len(self.test)))), self.num_classes)


# ----------------------------------------------------------------------------- encodings


def rate_encode(x: torch.Tensor, T: int, generator: torch.Generator) -> torch.Tensor:
    """Bernoulli rate code: [N, ...] probabilities in [0, 1] -> spikes [T, N, ...] (x's dtype)."""
    if T < 1:
        raise ValueError(f"rate_encode: T must be >= 1, got {T}")
    p = x.unsqueeze(0).expand(T, *x.shape)
    return torch.bernoulli(p, generator=generator)


def sequential_encode(x: torch.Tensor) -> torch.Tensor:
    """One pixel per step, row-major: [N, ...] -> [D, N, 1] with D = the pixels of one sample."""
    return x.reshape(x.shape[0], -1).T.unsqueeze(-1).contiguous()


def encode(x: torch.Tensor, encoding: str, T: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Samples ``x`` [N, ...] (for ``"none"`` [N, T, ...]) -> time-major ``x_seq`` [T, N, ...]."""
    if encoding == "rate":
        if generator is None:
            raise ValueError("encode: the rate encoding draws spikes; give an explicit torch.Generator")
        return rate_encode(x, T, generator)
    if encoding == "sequential":
        return sequential_encode(x)
    if encoding == "none":
        return x.transpose(0, 1)
    raise ValueError(f"encode: encoding must be one of {ENCODINGS}, got {encoding!r}")


# ----------------------------------------------------------------------------- digits


def _import_sklearn_digits() -> Any:
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError:
        raise ImportError(
            "the digits data set needs scikit-learn: pip install 'purelearn[data]' (or scikit-learn)"
        ) from None
    return sk_load_digits


def load_digits_images() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as images [1797, 1, 8, 8] float32 in [0, 1] and labels [1797] int64."""
    bunch = _import_sklearn_digits()()
    x = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.as_tensor(bunch.target, dtype=torch.int64)
    return x, y


def _seeded_split(n: int, n_train: int) -> tuple[torch.Tensor, torch.Tensor]:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
    return perm[:n_train], perm[n_train:]


def digits_split() -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed digits split: (train indices [1437], test indices [360]) of a seed-0 permutation."""
    return _seeded_split(DIGITS_SIZE, DIGITS_TRAIN)


def load_digits(encoding: str = "rate", T: int | None = None) -> Split:
    """The digits with the fixed split. ``"rate"``: T=16 by default; ``"sequential"``: T=64."""
    if encoding not in ("rate", "sequential"):
        raise ValueError(f"load_digits: encoding must be 'rate' or 'sequential', got {encoding!r}")
    if encoding == "sequential":
        if T not in (None, 64):
            raise ValueError(f"the sequential digits have T=64 (one step per pixel), got T={T}")
        T = 64
    T = 16 if T is None else T
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
    x, y = load_digits_images()
    train, test = digits_split()
    name = "digits" if encoding == "rate" else "seq-digits"
    return Split(name, Dataset(x[train], y[train], encoding, T), Dataset(x[test], y[test], encoding, T), 10)


# ----------------------------------------------------------------------------- user files


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {str(value.dtype).removeprefix('torch.')} tensor of shape {list(value.shape)}"
    return f"a {type(value).__name__}"


def _check_pair(path: str, x: Any, y: Any, encoding: str, xkey: str, ykey: str) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError(f"{path}: key {xkey!r} must be a floating-point tensor, got {_describe(x)}")
    if encoding == "none" and x.dim() < 3:
        raise ValueError(f"{path}: key {xkey!r} with encoding 'none' must be [N, T, features...] "
                         f"(at least 3 dimensions), got shape {list(x.shape)}")
    if encoding != "none" and x.dim() < 2:
        raise ValueError(f"{path}: key {xkey!r} with encoding {encoding!r} must be [N, features...] "
                         f"(at least 2 dimensions), got shape {list(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{path}: key {xkey!r} must hold at least one sample, got shape {list(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{path}: key {xkey!r} must be finite, got NaN or infinite values")
    if encoding == "rate" and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"{path}: key {xkey!r} with encoding 'rate' must hold spike probabilities in "
                         f"[0, 1], got values in [{x.min().item():g}, {x.max().item():g}]")
    if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.dim() != 1:
        raise ValueError(f"{path}: key {ykey!r} must be an int64 tensor of labels [N], got {_describe(y)}")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"{path}: key {ykey!r} must have one label per sample of {xkey!r} "
                         f"(N={x.shape[0]}), got {y.shape[0]} labels")
    if y.min() < 0:
        raise ValueError(f"{path}: key {ykey!r} must hold class labels >= 0, got {y.min().item()}")


def load_tensor_file(path: str | os.PathLike, T: int | None = None) -> Split:
    """Load a user data file (layout in the module docstring); ``T`` for the rate encoding (16)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"data file {path!r} does not exist")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets one clear message
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ValueError(f"{path}: not a readable torch.save file of plain tensors "
                         f"({type(err).__name__}: {first[:200]})") from None
    if not isinstance(blob, dict):
        raise ValueError(f"{path}: expected a dict with keys 'x', 'y' and optionally 'encoding', "
                         f"'x_test', 'y_test'; got {_describe(blob)}")
    allowed = {"x", "y", "encoding", "x_test", "y_test"}
    extra = sorted(set(map(str, blob)) - allowed)
    if extra:
        raise ValueError(f"{path}: unknown key(s) {extra}; expected keys {sorted(allowed)}")
    for key in ("x", "y"):
        if key not in blob:
            raise ValueError(f"{path}: key {key!r} is missing; expected keys 'x' [N, ...] and 'y' [N]")
    encoding = blob.get("encoding", "none")
    if encoding not in ENCODINGS:
        raise ValueError(f"{path}: key 'encoding' must be one of {list(ENCODINGS)}, got {encoding!r}")
    if ("x_test" in blob) != ("y_test" in blob):
        raise ValueError(f"{path}: keys 'x_test' and 'y_test' go together; got only "
                         f"{'x_test' if 'x_test' in blob else 'y_test'!r}")
    x, y = blob["x"], blob["y"]
    _check_pair(path, x, y, encoding, "x", "y")
    if encoding == "sequential" and T is not None and T != x[0].numel():
        raise ValueError(f"{path}: the sequential encoding has one step per feature, T={x[0].numel()}; "
                         f"got T={T}")
    if encoding == "rate":
        T = 16 if T is None else T
    elif encoding == "sequential":
        T = x[0].numel()
    else:
        if T is not None and T != x.shape[1]:
            raise ValueError(f"{path}: key 'x' is already encoded with T={x.shape[1]}; got T={T}")
        T = x.shape[1]
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
    x = x.float()
    if "x_test" in blob:
        xt, yt = blob["x_test"], blob["y_test"]
        _check_pair(path, xt, yt, encoding, "x_test", "y_test")
        if xt.shape[1:] != x.shape[1:]:
            raise ValueError(f"{path}: key 'x_test' must have the per-sample shape of 'x', "
                             f"{list(x.shape[1:])}, got {list(xt.shape[1:])}")
        train, test = Dataset(x, y, encoding, T), Dataset(xt.float(), yt, encoding, T)
        labels = torch.cat([y, yt])
    else:
        n = x.shape[0]
        if n < 2:
            raise ValueError(f"{path}: key 'x' needs at least 2 samples to split into train and test, got {n}")
        n_train = min(max(round(USER_TRAIN_FRACTION * n), 1), n - 1)
        tr, te = _seeded_split(n, n_train)
        full = Dataset(x, y, encoding, T)
        train, test = full.subset(tr), full.subset(te)
        labels = y
    name = os.path.basename(path)
    return Split(name, train, test, int(labels.max().item()) + 1)


def load(name: str, T: int | None = None) -> Split:
    """``"digits"`` (rate), ``"seq-digits"`` (sequential) or the path of a user file."""
    if name == "digits":
        return load_digits("rate", T)
    if name == "seq-digits":
        return load_digits("sequential", T)
    return load_tensor_file(name, T)


# ----------------------------------------------------------------------------- batches


def batches(ds: Dataset, batch_size: int, generator: torch.Generator | None, shuffle: bool = True
            ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of time-major batches ``(x_seq [T, B, ...], labels [B])``.

    With ``shuffle`` the order is ``torch.randperm(N, generator=generator)``; the rate encoding then
    draws each batch's spikes from the same generator, batch after batch. The last batch may be
    smaller. The generator's state after the epoch is all a resumed run needs.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(ds)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        index = order[start:start + batch_size]
        yield encode(ds.x[index], ds.encoding, ds.T, generator), ds.y[index]


def generator_state(generator: torch.Generator) -> torch.Tensor:
    """A copy of the generator's state (a uint8 tensor), for checkpoints."""
    return generator.get_state().clone()
