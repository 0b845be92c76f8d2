"""Counter-based randomness: a pure integer hash, so random draws are functions of a key tensor.

Dropout's masks and SLTT-K's choice of backward steps are both ``hash32`` of an index mixed with a
key (an int64 0-d tensor carried in a state). No generator is consumed, so the draws are
reproducible and work under ``torch.func.vmap`` and ``torch.compile``.

Example::

    >>> import torch
    >>> from purelearn.random import hash32
    >>> hash32(torch.tensor([0, 1, 2]))
    tensor([         0, 1753845952, 3507691905])
"""

from __future__ import annotations

import torch

__all__ = ["hash32"]

_MASK32 = 0xFFFFFFFF


def _mul32(x: torch.Tensor, m: int) -> torch.Tensor:
    # (x * m) mod 2**32 for x < 2**32, without int64 overflow: split m into 16-bit halves.
    return ((x * (m & 0xFFFF)) + (((x * (m >> 16)) & 0xFFFF) << 16)) & _MASK32


def hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer mix (lowbias32) of an int64 tensor; pure, works under vmap and compile."""
    x = x & _MASK32
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)
