"""Hyperparameter grids and seed ensembles as one ``torch.func.vmap``-ed program.

    configs = sweep.grid(lr=[0.01, 0.1], alpha=[0.1, 0.2, 0.4])   # K = 6 rows, one tensor per name
    results = sweep.vmap_configs(train, configs)                   # train(lr=..., alpha=...) once, batched
    rows    = sweep.rows(configs)                                  # [{"lr": 0.01, "alpha": 0.1}, ...]

``train`` is an ordinary function of keyword hyperparameters that builds its learner from them
(tensors inside the vmap) and returns a pytree; every leaf of ``results`` gains a leading axis K.
Stacked initial parameters (``tree.stack`` of K inits) go into ``configs`` too, so seeds and
ensembles are just another axis.

Example::

    >>> import torch
    >>> from purelearn import sweep
    >>> configs = sweep.grid(lr=[0.5, 0.25], alpha=[1.0, 2.0, 3.0])
    >>> configs["lr"].shape, sweep.rows(configs)[1]
    (torch.Size([6]), {'lr': 0.5, 'alpha': 2.0})
    >>> sweep.vmap_configs(lambda lr, alpha: lr * alpha, configs)
    tensor([0.5000, 1.0000, 1.5000, 0.2500, 0.5000, 0.7500])
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import optree
import torch

__all__ = ["grid", "zip_configs", "product", "vmap_configs", "rows", "size"]


def _as_values(name: str, values: Any) -> list[float]:
    if isinstance(values, torch.Tensor):
        values = values.tolist()
    if isinstance(values, (int, float)) and not isinstance(values, bool):
        values = [values]
    if not isinstance(values, Sequence) or isinstance(values, str) or len(values) == 0:
        raise ValueError(f"grid: `{name}` must be a non-empty list of numbers, got {values!r}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"grid: `{name}` must hold numbers, got {v!r}")
    return list(values)


def grid(dtype: torch.dtype | None = None, device: torch.device | str | None = None,
         **axes: Sequence[float]) -> dict[str, torch.Tensor]:
    """The Cartesian product of ``axes`` as 1-D tensors of length K = Π len(axis).

    The last axis varies fastest. Integer-only axes (e.g. ``seed``) become int64, others
    ``dtype`` (default: torch's default float dtype).
    """
    if not axes:
        raise ValueError("grid: give at least one hyperparameter axis, e.g. grid(lr=[0.1, 0.01])")
    values = {name: _as_values(name, v) for name, v in axes.items()}
    combos = list(itertools.product(*values.values()))
    out = {}
    for i, name in enumerate(values):
        column = [c[i] for c in combos]
        is_int = all(isinstance(v, int) for v in values[name])
        out[name] = torch.tensor(column, dtype=torch.int64 if is_int else (dtype or torch.get_default_dtype()),
                                 device=device)
    return out


def size(configs: dict[str, Any]) -> int:
    """K, the shared leading size of every leaf in ``configs`` (``ValueError`` if they disagree)."""
    leaves = optree.tree_leaves(configs)
    if not leaves:
        raise ValueError("configs: no tensors given")
    sizes = {leaf.shape[0] if isinstance(leaf, torch.Tensor) and leaf.dim() else None for leaf in leaves}
    if None in sizes:
        raise ValueError("configs: every leaf must be a tensor with a leading config axis")
    if len(sizes) != 1:
        raise ValueError(f"configs: leaves disagree on the number of configs: {sorted(sizes)}")
    return sizes.pop()


def zip_configs(**columns: Any) -> dict[str, Any]:
    """Configs given row-aligned (no product): each value a tensor/pytree with the same leading K."""
    size(columns)
    return dict(columns)


def product(*configs: dict[str, Any]) -> dict[str, Any]:
    """The Cartesian product of config sets (each a dict of leading-axis-K_i columns or pytrees).

    K = Π K_i rows, the last set varying fastest, e.g. seeds crossed with a grid::

        sweep.product({"params": tree.stack(inits)}, sweep.grid(lr=[0.1, 0.01]))
    """
    if not configs:
        raise ValueError("product: give at least one config set")
    names: set[str] = set()
    for c in configs:
        clash = names & set(c)
        if clash:
            raise ValueError(f"product: {sorted(clash)} appear in more than one config set; give each name in "
                             "one set only (both would be crossed)")
        names |= set(c)
    sizes = [size(c) for c in configs]
    out: dict[str, Any] = {}
    for i, c in enumerate(configs):
        before = math.prod(sizes[:i])
        after = math.prod(sizes[i + 1:])
        for name, column in c.items():
            out[name] = optree.tree_map(
                lambda a: a.repeat_interleave(after, dim=0).repeat(before, *([1] * (a.dim() - 1))), column)  # noqa: B023
    return out


def vmap_configs(fn: Callable[..., Any], configs: dict[str, Any], *, chunk_size: int | None = None,
                 **fixed: Any) -> Any:
    """Run ``fn(**config, **fixed)`` for all K configs as one batched program (``torch.func.vmap``).

    ``configs`` values are tensors or pytrees with a leading axis K (e.g. from :func:`grid`, or
    ``tree.stack`` of K parameter trees); ``fixed`` keyword arguments are shared, not batched.
    ``chunk_size`` bounds memory by running the configs in chunks.
    """
    size(configs)
    names = list(configs)

    def call(*batched: Any) -> Any:
        return fn(**dict(zip(names, batched, strict=True)), **fixed)

    return torch.func.vmap(call, in_dims=0, chunk_size=chunk_size)(*(configs[n] for n in names))


def rows(configs: dict[str, torch.Tensor]) -> list[dict[str, float]]:
    """The configs as a list of plain dicts (1-D tensor columns only), for tables and CSV."""
    k = size(configs)
    out = []
    for i in range(k):
        row = {}
        for name, col in configs.items():
            if not isinstance(col, torch.Tensor) or col.dim() != 1:
                continue
            row[name] = col[i].item()
        out.append(row)
    return out
