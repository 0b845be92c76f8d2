"""Spike encodings: samples [N, ...] -> time-major spikes [T, N, ...].

- ``"rate"``: ``T`` Bernoulli spike frames, ``x_seq[t] ~ Bernoulli(x)`` independently per step
  and pixel: [T, N, ...] (:func:`rate_encode`).
- ``"sequential"``: one pixel per step in row-major order, ``x_seq[t, n, 0] = x[n].flatten()[t]``:
  [D, N, 1] with D pixels per sample (:func:`sequential_encode`).
- ``"none"``: the data is already a sequence, ``x`` [N, T, ...] becomes [T, N, ...].
- ``"events"``: compact binned events (:class:`~purelearn.data.spikes.SpikeCounts`), densified:
  ``x.dense()`` [T, N, ...] (counts as floats).
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["ENCODINGS", "EVENTS", "rate_encode", "sequential_encode", "encode"]

#: The encodings of samples held as tensors (and of user files).
ENCODINGS = ("rate", "sequential", "none")
#: The encoding of compact binned events.
EVENTS = "events"


def rate_encode(x: torch.Tensor, T: int, generator: torch.Generator) -> torch.Tensor:
    """Bernoulli rate code: [N, ...] probabilities in [0, 1] -> spikes [T, N, ...] (x's dtype)."""
    if T < 1:
        raise ValueError(f"rate_encode: T must be >= 1, got {T}")
    p = x.unsqueeze(0).expand(T, *x.shape)
    return torch.bernoulli(p, generator=generator)


def sequential_encode(x: torch.Tensor) -> torch.Tensor:
    """One pixel per step, row-major: [N, ...] -> [D, N, 1] with D = the pixels of one sample."""
    return x.reshape(x.shape[0], -1).T.unsqueeze(-1).contiguous()


def encode(x: Any, encoding: str, T: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Samples ``x`` [N, ...] (for ``"none"`` [N, T, ...], for ``"events"`` a compact set) -> time-major
    ``x_seq`` [T, N, ...]."""
    if encoding == "rate":
        if generator is None:
            raise ValueError("encode: the rate encoding draws spikes; give an explicit torch.Generator")
        return rate_encode(x, T, generator)
    if encoding == "sequential":
        return sequential_encode(x)
    if encoding == "none":
        return x.transpose(0, 1)
    if encoding == EVENTS:
        return x.dense()
    raise ValueError(f"encode: encoding must be one of {(*ENCODINGS, EVENTS)}, got {encoding!r}")
