"""What the learners see: :class:`Dataset`, :class:`Split` and one epoch of :func:`batches`.

A dataset holds its samples either as a tensor ``x`` [N, ...] that :func:`~purelearn.data.encode`
turns into spikes batch by batch, or in a **compact** form (:class:`Compact`, e.g. binned spike
counts, :class:`~purelearn.data.spikes.SpikeCounts`) that is densified batch by batch: a dense
float copy of the whole set is never made.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from ..checkpoint import hash_bytes
from .encodings import encode

__all__ = ["SPLIT_SEED", "Compact", "Dataset", "Split", "seeded_split", "batches", "batch_indices", "take",
           "generator_state", "fingerprint"]

SPLIT_SEED = 0


class Compact(Protocol):
    """Samples kept compact and densified per batch: ``x[index]`` selects samples, ``x.dense()`` is
    the time-major float tensor [T, n, *step_shape] of the selected ones."""

    T: int

    def __len__(self) -> int: ...

    def __getitem__(self, index: torch.Tensor | slice) -> Compact: ...

    def dense(self, dtype: torch.dtype = torch.float32) -> torch.Tensor: ...

    @property
    def step_shape(self) -> tuple[int, ...]: ...

    @property
    def nbytes(self) -> int: ...

    def to(self, device: torch.device | str) -> Compact: ...


@dataclass(frozen=True)
class Dataset:
    """Samples before encoding: ``x`` [N, ...] (or [N, T, ...] for ``"none"``, or a :class:`Compact`
    set for ``"events"``), labels ``y`` [N]."""

    x: torch.Tensor | Compact
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
        if not isinstance(self.x, torch.Tensor):
            return self.x.step_shape
        if self.encoding == "none":
            return tuple(self.x.shape[2:])
        if self.encoding == "sequential":
            return (1,)
        return tuple(self.x.shape[1:])

    @property
    def nbytes(self) -> int:
        """Bytes resident in memory: the samples (as stored, before encoding) and the labels."""
        return int(self.x.nbytes) + self.y.element_size() * self.y.numel()


@dataclass(frozen=True)
class Split:
    """A named train/test pair with the number of classes.

    ``valid``: a validation set where the data has one (SSC); ``classes``: the class names where the
    data has them; ``info``: where the data came from and how it was prepared (files, binning,
    dropped spikes, cache), for reports.
    """

    name: str
    train: Dataset
    test: Dataset
    num_classes: int
    valid: Dataset | None = None
    classes: tuple[str, ...] = ()
    info: Mapping[str, Any] = field(default_factory=dict)

    def limit(self, n: int | None) -> Split:
        """The first ``n`` training and the first ``max(n // 4, 1)`` test (and validation) samples."""
        if n is None:
            return self
        if n < 1:
            raise ValueError(f"limit must be >= 1, got {n}")

        def first(ds: Dataset, k: int) -> Dataset:
            return ds.subset(torch.arange(min(k, len(ds))))

        k = max(n // 4, 1)
        return Split(self.name, first(self.train, n), first(self.test, k), self.num_classes,
                     None if self.valid is None else first(self.valid, k), self.classes, self.info)


def seeded_split(n: int, n_train: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(train indices, test indices)``: the first ``n_train`` of ``torch.randperm(n)`` seeded with
    :data:`SPLIT_SEED`, and the rest."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
    return perm[:n_train], perm[n_train:]


def batches(ds: Dataset, batch_size: int, generator: torch.Generator | None, shuffle: bool = True
            ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of time-major batches ``(x_seq [T, B, ...], labels [B])``.

    With ``shuffle`` the order is ``torch.randperm(N, generator=generator)``; the rate encoding then
    draws each batch's spikes from the same generator, batch after batch. The last batch may be
    smaller. The generator's state after the epoch is all a resumed run needs. Compact samples are
    densified here, one batch at a time.
    """
    for index in batch_indices(len(ds), batch_size, generator, shuffle):
        yield encode(ds.x[index], ds.encoding, ds.T, generator), ds.y[index]


def batch_indices(n: int, batch_size: int, generator: torch.Generator | None, shuffle: bool = True
                  ) -> list[torch.Tensor]:
    """The sample indices of one epoch's batches, as :func:`batches` draws them (before any spikes)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    return list(order.split(batch_size))


def take(x: torch.Tensor | Compact, start: int, stop: int) -> torch.Tensor:
    """Samples ``start:stop`` of an encoded set, time-major [T, n, ...]: ``x[:, start:stop]`` of a
    tensor [T, N, ...] (a view), the densified samples of a :class:`Compact` set."""
    if isinstance(x, torch.Tensor):
        return x[:, start:stop]
    return x[start:stop].dense()


def generator_state(generator: torch.Generator) -> torch.Tensor:
    """A copy of the generator's state (a uint8 tensor), for checkpoints."""
    return generator.get_state().clone()


def _feed(h: Any, obj: Any) -> None:
    """Feed ``obj`` to hash ``h``: tensors by dtype, shape and bytes; dataclasses (compact sets) and
    sequences by their items; anything else by its ``repr``."""
    if isinstance(obj, torch.Tensor):
        h.update(f"tensor|{obj.dtype}|{tuple(obj.shape)}\0".encode())
        hash_bytes(h, obj)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        h.update(f"{type(obj).__name__}(".encode())
        for f in dataclasses.fields(obj):
            h.update(f"{f.name}=".encode())
            _feed(h, getattr(obj, f.name))
        h.update(b")")
    elif isinstance(obj, (list, tuple)):
        h.update(f"{type(obj).__name__}[{len(obj)}]".encode())
        for item in obj:
            _feed(h, item)
    else:
        h.update(f"{obj!r}\0".encode())


def fingerprint(split: Split) -> str:
    """``"sha256:..."`` of what a run trains and tests on: the samples, labels, encoding and T of every
    set (compact sets by their tensors), the number of classes and their names; not ``info`` (file
    paths, cache hits), so a copy of the same data in another folder has the same fingerprint.

    One pass over the bytes held (hashlib's SHA-256: well under a second for SHD's binned sets)."""
    h = hashlib.sha256()
    for ds in (split.train, split.test, split.valid):
        _feed(h, None if ds is None else (ds.x, ds.y, ds.encoding, ds.T))
    _feed(h, (split.num_classes, split.classes))
    return "sha256:" + h.hexdigest()
