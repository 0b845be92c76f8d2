"""``scan``: the shape of every time loop, with ``jax.lax.scan`` semantics.

    carry, ys = scan(f, carry, xs)        # f(carry, x_t) -> (carry, y_t); ys stacked along axis 0

``xs`` is a pytree whose leaves share a leading axis of length T (T >= 1); ``x_t`` is the same
pytree sliced at ``t``. ``ys`` has ``f``'s output structure with a leading axis of T.

Example::

    >>> import torch
    >>> from purelearn import scan
    >>> carry, ys = scan(lambda c, x: (c + x, c + x), torch.tensor(0.0), torch.arange(4.0))
    >>> carry, ys
    (tensor(6.), tensor([0., 1., 3., 6.]))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optree
import torch

__all__ = ["scan"]


def scan(f: Callable[[Any, Any], tuple[Any, Any]], carry: Any, xs: Any, length: int | None = None) -> tuple[Any, Any]:
    """Loop ``f`` over the leading axis of ``xs``, threading ``carry``; return ``(carry, stacked ys)``.

    ``xs=None`` with ``length`` runs ``f(carry, None)`` ``length`` times. Raises ``ValueError`` if the
    leaves of ``xs`` disagree on their leading size or if it is 0.
    """
    leaves, spec = optree.tree_flatten(xs)
    if leaves:
        sizes = {leaf.shape[0] if isinstance(leaf, torch.Tensor) and leaf.dim() else None for leaf in leaves}
        if None in sizes:
            raise ValueError("scan: every leaf of `xs` must be a tensor with a leading (time) axis")
        if len(sizes) != 1:
            raise ValueError(f"scan: leaves of `xs` disagree on their leading size: {sorted(sizes)}")
        (n,) = sizes
        if length is not None and length != n:
            raise ValueError(f"scan: `length`={length} but `xs` has leading size {n}")
    elif length is None:
        raise ValueError("scan: give `xs` with a leading axis or an explicit `length`")
    else:
        n = length
    if n == 0:
        raise ValueError("scan: the scanned axis has length 0; expected at least one step")
    ys = []
    for t in range(n):
        x_t = optree.tree_unflatten(spec, [leaf[t] for leaf in leaves]) if leaves else None
        carry, y = f(carry, x_t)
        ys.append(y)
    return carry, optree.tree_map(lambda *y: torch.stack(y), *ys)
