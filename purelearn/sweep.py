"""Hyperparameter grids and seed ensembles as one ``torch.func.vmap``-ed program.

    configs = sweep.grid(lr=[0.01, 0.1], alpha=[0.1, 0.2, 0.4])   # K = 6 rows, one tensor per name
    results = sweep.vmap_configs(train, configs)                   # train(lr=..., alpha=...) once, batched
    rows    = sweep.rows(configs)                                  # [{"lr": 0.01, "alpha": 0.1}, ...]

``train`` is an ordinary function of keyword hyperparameters that builds its learner from them
(tensors inside the vmap) and returns a pytree; every leaf of ``results`` gains a leading axis K.
Stacked initial parameters (``tree.stack`` of K inits) go into ``configs`` too, so seeds and
ensembles are just another axis.

**A sweep as one learner** (:class:`Swept`, built by :func:`learners`): K learners, one per config,
with their carries stacked [K, ...] and one vmapped step, so the driver, ``learner.run`` and
:func:`purelearn.compile.run` (one compiled program per sequence, the vmapped step inside torch's
scan) take a whole sweep like a single learner::

    swept = sweep.learners(lambda lr, alpha: online.fptt(model, loss, optim.sgd(lr=lr), alpha=alpha), configs)
    carry, outs = compile.run(swept)(swept.init(params, states), x_seq, y_seq)   # outs.loss [T, K]

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

from .online.driver import Call, Learner, StepOutput

__all__ = ["grid", "zip_configs", "product", "vmap_configs", "rows", "size", "Swept", "learners"]


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


class Swept(Learner):
    """K learners as one: ``make(**config)`` for each of the K configs, carries stacked [K, ...].

    ``step`` is ``torch.func.vmap`` of the configs' steps over their carries (the inputs ``x``, ``y``
    are shared); outputs gain an axis K after time: ``loss`` [K] per step ([T, K] from the inherited ``run``),
    ``y`` [K, N, ...]. The plan is that of the first config's learner, and must be the same for
    all: learners whose plan changes per sequence (SLTT-K) cannot be swept this way. Build it with
    :func:`learners`.
    """

    #: Every carry leaf has a leading axis K (what :mod:`purelearn.compile` reads to grow fresh
    #: per-config states [K] to [K, N, ...] before the first step).
    stacked_carry = True

    def __init__(self, make: Callable[..., Any], configs: dict[str, Any]) -> None:
        if not callable(make):
            raise TypeError(f"sweep.learners: `make` must be callable (config -> learner), got {type(make).__name__}")
        self.k = size(configs)
        self.make = make
        self.configs = configs
        self.first = make(**optree.tree_map(lambda a: a[0], configs))
        for name in ("init", "step", "plan", "end_sequence"):
            if not callable(getattr(self.first, name, None)):
                raise TypeError(f"sweep.learners: `make` must return a learner (with {name}), got "
                                f"{type(self.first).__name__}")
        if not getattr(self.first, "fixed_plan", False):
            raise ValueError(f"sweep.learners: {type(self.first).__name__}'s plan changes from one sequence to the "
                             "next (it draws its steps from the carry), so K of them cannot share one vmapped plan; "
                             "use sweep.vmap_configs over whole runs instead")
        self._windows = isinstance(self.first.plan(None, 1)[0].t, slice)  # a call takes [L, N, ...]

    def _vmap(self, fn: Callable[..., Any], template: Any, *batched: Any, time_major: bool = False) -> Any:
        """``fn(learner_k, *batched_k)`` for every config k, stacked; its result has ``template``'s tree
        structure, whose non-tensor leaves (``None``) are taken from it (``vmap`` returns tensors only).
        With ``time_major`` the outputs (the second element) get K after their time axis."""
        pytree = torch.utils._pytree  # what torch's tracers read, so this runs inside compile.run too
        names = list(self.configs)
        leaves, spec = pytree.tree_flatten(template)
        is_tensor = [isinstance(leaf, torch.Tensor) for leaf in leaves]
        dims = [0] * len(leaves)
        if time_major:  # (carry, outputs): the outputs' leaves are the last ones
            n_out = len(pytree.tree_leaves(template[1]))
            dims[len(leaves) - n_out:] = [1] * n_out

        def call(*args: Any) -> tuple[torch.Tensor, ...]:
            config = dict(zip(names, args[:len(names)], strict=True))
            out = pytree.tree_leaves(fn(self.make(**config), *args[len(names):]))
            return tuple(leaf for leaf, t in zip(out, is_tensor, strict=True) if t)

        out_dims = tuple(d for d, t in zip(dims, is_tensor, strict=True) if t)
        in_dims = (0,) * len(names) + tuple(
            pytree.tree_map(lambda a: 0 if isinstance(a, torch.Tensor) else None, b) for b in batched)
        tensors = iter(torch.func.vmap(call, in_dims=in_dims, out_dims=out_dims)(
            *(self.configs[n] for n in names), *batched))
        return pytree.tree_unflatten([next(tensors) if t else leaf for leaf, t in zip(leaves, is_tensor, strict=True)],
                                     spec)

    def init(self, params: Any, states: Any, stacked: bool = False) -> Any:
        """The K carries [K, ...] from shared ``params``/``states`` (or, with ``stacked``, from params
        and states that already have a leading axis K: seeds, ensembles)."""
        if stacked:
            first = optree.tree_map(lambda a: a[0], (params, states))
            return self._vmap(lambda learner, p, s: learner.init(p, s), self.first.init(*first), params, states)
        return self._vmap(lambda learner: learner.init(params, states), self.first.init(params, states))

    def plan(self, carry: Any, T: int) -> tuple[Call, ...]:
        """The first config's plan (the same for every config: the sweep varies numbers, not shapes)."""
        return self.first.plan(None, T)

    def updates_per_sequence(self, T: int) -> int:
        return self.first.updates_per_sequence(T)

    def step(self, carry: Any, x: torch.Tensor, y: torch.Tensor, **options: Any) -> tuple[Any, StepOutput]:
        """Every config's step on its own carry, the inputs shared: the carries [K, ...] and outputs
        ``loss`` [K], ``y`` [K, N, ...] (for a window [L, N, ...]: ``loss`` [L, K], ``y`` [L, K, N, ...])."""
        window = self._windows
        template = (carry, StepOutput(x, x))  # the step keeps the carry's structure; outputs are tensors
        return self._vmap(lambda learner, c: learner.step(c, x, y, **options), template, carry, time_major=window)

    def end_sequence(self, carry: Any) -> Any:
        return self._vmap(lambda learner, c: learner.end_sequence(c), carry, carry)


def learners(make: Callable[..., Any], configs: dict[str, Any]) -> Swept:
    """A sweep of ``make(**config)`` over ``configs`` (:func:`grid`, :func:`zip_configs`, ...) as one
    learner; see :class:`Swept`.

    >>> import torch, torch.nn.functional as F
    >>> from purelearn import nn, neurons, online, optim
    >>> model = nn.Sequential(nn.Linear(3, 2), neurons.LIF())
    >>> params, states = model.init(torch.Generator().manual_seed(0), torch.rand(4, 3))
    >>> swept = learners(lambda lr: online.fptt(model, F.mse_loss, optim.sgd(lr=lr)), grid(lr=[0.1, 0.2, 0.4]))
    >>> carry, outs = swept.run(swept.init(params, states), torch.rand(5, 4, 3), torch.rand(5, 4, 2))
    >>> outs.loss.shape, carry.params["0"]["weight"].shape
    (torch.Size([5, 3]), torch.Size([3, 2, 3]))
    """
    return Swept(make, configs)
