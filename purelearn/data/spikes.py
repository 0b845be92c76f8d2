r"""Spike events, binned into time frames and kept compact.

**Raw events** (:class:`Spikes`): the spikes of N samples concatenated sample after sample,
``times`` [S] (seconds), ``units`` [S] and ``lengths`` [N] (spikes per sample), with ``labels`` [N]
— the layout of the Heidelberg files (:mod:`purelearn.data.heidelberg`), flattened.

**Binning** (:func:`bin_spikes`) into T frames of width ``dt`` seconds, covering ``[0, T·dt]``::

    bin(t) = min(⌊t / dt⌋, T − 1)        for finite t with 0 <= t <= T·dt   (the last frame is closed)
    counts[n, bin(t), unit] += 1

Spikes with a NaN/inf time are dropped and counted (``nonfinite``), and so are spikes outside the
span (``outside``); neither is ever binned. The computation is vectorised: one ``torch.unique`` over
the keys ``(n·T + bin)·U + unit`` of all spikes, no loop per spike.

**Compact counts** (:class:`SpikeCounts`): the non-zero counts only, in CSR layout::

    offsets [N + 1] int64      sample n's events are offsets[n]:offsets[n+1]
    time    [E] int16          frame (int32 when T > 32767)
    unit    [E] int16          input unit
    count   [E] uint8          spikes of that unit in that frame (int16 / int32 when a count needs more)

5 bytes per non-zero (frame, unit) pair and 8 per sample. ``counts[index]`` selects samples and
``counts.dense()`` builds the float frames [T, n, units] of just those: datasets stay compact and
batches are densified on the fly (:func:`purelearn.data.batches`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

__all__ = ["Spikes", "BinStats", "SpikeCounts", "bin_spikes", "concat", "select", "smallest_int"]


class Spikes(NamedTuple):
    """Raw spike events of N samples: ``times`` [S] float (seconds), ``units`` [S] int64, ``lengths``
    [N] int64 (spikes per sample; sample n's spikes follow sample n−1's), ``labels`` [N] int64."""

    times: torch.Tensor
    units: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor


class BinStats(NamedTuple):
    """What binning dropped: spikes with NaN/inf times (``nonfinite``) and finite ones outside
    ``[0, T·dt]`` (``outside``)."""

    nonfinite: int = 0
    outside: int = 0

    def plus(self, other: BinStats) -> BinStats:
        """Both counts added."""
        return BinStats(self.nonfinite + other.nonfinite, self.outside + other.outside)


def smallest_int(largest: int) -> torch.dtype:
    """The smallest of uint8, int16, int32, int64 that holds 0..``largest``."""
    for dtype in (torch.uint8, torch.int16, torch.int32):
        if largest <= torch.iinfo(dtype).max:
            return dtype
    return torch.int64


def _sample_ids(lengths: torch.Tensor) -> torch.Tensor:
    """[sum(lengths)]: the sample of every event, ``repeat_interleave(arange(N), lengths)``."""
    return torch.repeat_interleave(torch.arange(lengths.numel(), device=lengths.device), lengths)


@dataclass(frozen=True, eq=False)
class SpikeCounts:
    """Binned spike counts of N samples in CSR layout (see the module docstring); T frames of ``dt``
    seconds over ``units`` input units. Densify with :meth:`dense`."""

    offsets: torch.Tensor
    time: torch.Tensor
    unit: torch.Tensor
    count: torch.Tensor
    T: int
    units: int
    dt: float

    def __len__(self) -> int:
        return self.offsets.numel() - 1

    @property
    def step_shape(self) -> tuple[int, ...]:
        """One frame of one sample: ``(units,)``."""
        return (self.units,)

    @property
    def nbytes(self) -> int:
        """Bytes held by the four tensors."""
        return sum(t.element_size() * t.numel() for t in (self.offsets, self.time, self.unit, self.count))

    @property
    def lengths(self) -> torch.Tensor:
        """Events (non-zero counts) per sample, [N] int64."""
        return self.offsets[1:] - self.offsets[:-1]

    def spikes_per_sample(self) -> torch.Tensor:
        """Binned spikes per sample (the sum of its counts), [N] int64."""
        total = torch.zeros(len(self), dtype=torch.int64, device=self.count.device)
        return total.index_add_(0, _sample_ids(self.lengths), self.count.long())

    def __getitem__(self, index: torch.Tensor | slice) -> SpikeCounts:
        """The samples ``index`` (a slice with step 1, or an int64 index tensor [n]), in that order."""
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                raise ValueError(f"SpikeCounts: a slice must have step 1, got {step}")
            stop = max(start, stop)
            a, b = int(self.offsets[start]), int(self.offsets[stop])
            return SpikeCounts(self.offsets[start:stop + 1] - a, self.time[a:b], self.unit[a:b], self.count[a:b],
                               self.T, self.units, self.dt)
        index = torch.as_tensor(index, dtype=torch.int64, device=self.offsets.device).reshape(-1)
        starts = self.offsets[index]
        lengths = self.offsets[index + 1] - starts
        position = _gather_positions(starts, lengths)
        offsets = torch.cat([lengths.new_zeros(1), torch.cumsum(lengths, 0)])
        return SpikeCounts(offsets, self.time[position], self.unit[position], self.count[position],
                           self.T, self.units, self.dt)

    def dense(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The counts as frames [T, N, units] of ``dtype``."""
        out = torch.zeros(self.T, len(self), self.units, dtype=dtype, device=self.count.device)
        out[self.time.long(), _sample_ids(self.lengths), self.unit.long()] = self.count.to(dtype)
        return out

    def to(self, device: torch.device | str) -> SpikeCounts:
        """The same counts on ``device``."""
        return SpikeCounts(self.offsets.to(device), self.time.to(device), self.unit.to(device),
                           self.count.to(device), self.T, self.units, self.dt)


def _gather_positions(starts: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """[sum(lengths)]: the positions ``starts[n] + 0 .. starts[n] + lengths[n] − 1``, n after n."""
    ends = torch.cumsum(lengths, 0)
    total = int(ends[-1]) if ends.numel() else 0
    return torch.arange(total, device=starts.device) + torch.repeat_interleave(starts - (ends - lengths), lengths)


def select(spikes: Spikes, index: torch.Tensor) -> Spikes:
    """The samples ``index`` (int64 [n]) of raw ``spikes``, in that order, each with its spikes in
    their order.

    >>> s = Spikes(torch.tensor([.1, .2, .3]), torch.tensor([0, 1, 2]), torch.tensor([2, 1]), torch.tensor([4, 5]))
    >>> select(s, torch.tensor([1, 0])).times
    tensor([0.3000, 0.1000, 0.2000])
    """
    index = torch.as_tensor(index, dtype=torch.int64).reshape(-1)
    n = spikes.lengths.numel()
    if index.numel() and (int(index.min()) < -n or int(index.max()) >= n):
        raise IndexError(f"select: index must lie in [-{n}, {n}) for {n} samples, got {index.tolist()}")
    index = index % max(n, 1)
    starts = torch.cat([spikes.lengths.new_zeros(1), torch.cumsum(spikes.lengths, 0)[:-1]])[index]
    lengths = spikes.lengths[index]
    position = _gather_positions(starts, lengths)
    return Spikes(spikes.times[position], spikes.units[position], lengths, spikes.labels[index])


def bin_spikes(spikes: Spikes, T: int, dt: float, units: int) -> tuple[SpikeCounts, BinStats]:
    """Bin raw ``spikes`` (units in 0..``units``−1) into T frames of ``dt`` seconds (see the module
    docstring); returns the compact counts and what was dropped."""
    times, unit, lengths = spikes.times.double(), spikes.units.long(), spikes.lengths.long()
    n = lengths.numel()
    sample = _sample_ids(lengths)
    finite = torch.isfinite(times)
    inside = finite & (times >= 0) & (times <= T * dt)
    stats = BinStats(int((~finite).sum()), int((finite & ~inside).sum()))
    frame = torch.clamp(torch.floor(times[inside] / dt).long(), max=T - 1)
    key = (sample[inside] * T + frame) * units + unit[inside]
    key, count = torch.unique(key, sorted=True, return_counts=True)
    per_sample = torch.bincount(key // (T * units), minlength=n)
    offsets = torch.cat([per_sample.new_zeros(1), torch.cumsum(per_sample, 0)])
    largest = int(count.max()) if count.numel() else 0
    counts = SpikeCounts(offsets, (key // units % T).to(torch.int16 if T <= 32767 else torch.int32),
                         (key % units).to(torch.int16), count.to(smallest_int(largest)), T, units, dt)
    return counts, stats


def concat(parts: list[SpikeCounts]) -> SpikeCounts:
    """The samples of ``parts`` one after the other (same T, units and dt); counts in the widest dtype."""
    first = parts[0]
    ends = torch.cumsum(torch.tensor([int(p.offsets[-1]) for p in parts]), 0)
    offsets = torch.cat([first.offsets[:1]] + [p.offsets[1:] + (ends[i - 1] if i else 0) for i, p in enumerate(parts)])
    count_dtype = max((p.count.dtype for p in parts), key=lambda d: torch.iinfo(d).bits)
    return SpikeCounts(offsets, torch.cat([p.time for p in parts]), torch.cat([p.unit for p in parts]),
                       torch.cat([p.count.to(count_dtype) for p in parts]), first.T, first.units, first.dt)
