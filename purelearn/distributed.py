r"""Data parallelism over ``torch.distributed``: the all-reduce a learner does inside its pure step.

Each of K ranks (processes started by ``torchrun``) holds the same carry and takes its shard of
every batch; a learner given ``data_parallel=DataParallel()`` averages each gradient it takes over
the ranks before using it, so every rank applies the gradient of the **global** batch and the
carries stay identical by construction — the one-process math up to float rounding::

    g = Σ_r n_r · g_r / Σ_r n_r          (loss a mean over the batch; n_r: rank r's shard size)
    g = Σ_r g_r                          (``loss_reduction="sum"``: the loss sums over the batch)

The reduction is one ``all_reduce`` of one flat buffer (per dtype and device), wrapped as a
functional operator (``purelearn::all_reduce``: a copy is reduced, the input untouched) with a
batching rule, so it is a pure function of its inputs: it runs in eager code, under
``torch.func.vmap`` (the configs' buffers reduce together) and inside ``torch.compile`` (an opaque
node of the graph, also inside the scan of a whole-sequence program). torch's own
``_functional_collectives.all_reduce`` has no batching rule: under ``vmap`` it silently returns its
input unreduced. Which
quantities each learner averages is listed in its ``data_parallel`` docs (FPTT: the task gradient and
``grad_last``; the accumulating learners: the summed gradient, once per sequence).

Without a process group, or with one rank, every function here is the identity: a learner with
``data_parallel`` set runs unchanged in one process.

Example (two processes, ``torchrun --nproc-per-node 2 script.py``)::

    import torch.distributed as dist
    from purelearn import distributed, online
    dist.init_process_group("gloo")
    dp = distributed.DataParallel()
    learner = online.fptt(model, loss_fn, optimizer, data_parallel=dp)
    x_local = distributed.shard(x_seq, dim=1)         # this rank's part of the global batch
    carry, outs = learner.run(carry, x_local, distributed.shard(y_seq, dim=1))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import optree
import torch
import torch.distributed as dist

from .random import hash32

__all__ = ["DataParallel", "RanksDisagree", "CollectiveFailed", "collective", "active", "rank", "world_size",
           "shard", "shard_bounds", "checksums"]

LOSS_REDUCTIONS = ("mean", "sum")


class RanksDisagree(RuntimeError):
    """The ranks' copies of what must be identical (params, optimizer state) differ."""


class CollectiveFailed(RuntimeError):
    """A collective over the ranks failed: another rank stopped (crashed, or raised and left), or the
    process group's timeout passed while waiting for it."""


def collective(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, a ``torch.distributed`` call, with a failure (a peer that closed its
    connection, a timeout) raised as :class:`CollectiveFailed`."""
    try:
        return fn(*args, **kwargs)
    except RuntimeError as err:
        reason = " ".join(str(err).split())[:240]
        raise CollectiveFailed(f"a collective over the ranks failed, most likely because another rank stopped (its "
                               f"own message says why): {reason}") from err


def active(group: Any = None) -> bool:
    """Whether a process group is initialised and spans more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1


def rank(group: Any = None) -> int:
    """This process's rank in ``group`` (0 without a process group)."""
    return dist.get_rank(group) if dist.is_available() and dist.is_initialized() else 0


def world_size(group: Any = None) -> int:
    """The number of ranks in ``group`` (1 without a process group)."""
    return dist.get_world_size(group) if dist.is_available() and dist.is_initialized() else 1


def shard_bounds(n: int, ranks: int, index: int) -> tuple[int, int]:
    """``[start, stop)`` of shard ``index`` of ``n`` items cut into ``ranks`` contiguous shards, the
    first ``n mod ranks`` one item longer (``torch.tensor_split``'s cut). Every shard must be
    non-empty: ``ValueError`` naming ``n`` and ``ranks`` if ``n < ranks``."""
    if n < ranks:
        raise ValueError(f"shard: a batch of {n} sample(s) cannot give each of {ranks} ranks at least one; use a "
                         f"batch of at least {ranks} samples")
    base, extra = divmod(n, ranks)
    start = index * base + min(index, extra)
    return start, start + base + (index < extra)


def shard(x: torch.Tensor, dim: int = 0, group: Any = None) -> torch.Tensor:
    """This rank's contiguous shard of ``x`` along ``dim`` (:func:`shard_bounds`; all of ``x`` in one
    process). A view, no copy."""
    start, stop = shard_bounds(x.shape[dim], world_size(group), rank(group))
    return x.narrow(dim, start, stop - start)


def _plain_eager() -> bool:
    """Outside every ``torch.func`` transform and ``torch.compile`` trace: in-place collectives apply."""
    return not (torch._C._are_functorch_transforms_active() or torch.compiler.is_compiling())


def _buckets(leaves: list[torch.Tensor]) -> dict[tuple[torch.dtype, torch.device], list[int]]:
    buckets: dict[tuple[torch.dtype, torch.device], list[int]] = {}
    for i, leaf in enumerate(leaves):
        buckets.setdefault((leaf.dtype, leaf.device), []).append(i)
    return buckets


@dataclass(frozen=True)
class DataParallel:
    """How a learner averages its gradients over the ranks of ``group`` (None: the default group).

    ``loss_reduction``: ``"mean"`` (the loss averages over the batch, as ``F.cross_entropy`` and
    ``F.mse_loss`` do by default: ranks are weighted by their shard sizes, so uneven shards give the
    global mean) or ``"sum"`` (the loss sums over the batch: the gradients are summed).
    """

    group: Any = None
    loss_reduction: str = "mean"

    def __post_init__(self) -> None:
        if self.loss_reduction not in LOSS_REDUCTIONS:
            raise ValueError(f"DataParallel: `loss_reduction` must be 'mean' or 'sum', got {self.loss_reduction!r}")
        if not dist.is_available():
            raise RuntimeError("DataParallel: this torch build has no torch.distributed")

    def gradient(self, grads: Any, count: int) -> Any:
        """``grads`` (a pytree of floating tensors) of this rank's ``count`` samples, reduced over the
        ranks: the count-weighted mean (``"mean"``) or the sum. The identity with one rank."""
        if not active(self.group):
            return grads
        leaves, spec = optree.tree_flatten(grads)
        if not leaves:
            return grads
        out: list[Any] = [None] * len(leaves)
        for (dtype, device), index in _buckets(leaves).items():
            if not dtype.is_floating_point:
                raise TypeError(f"DataParallel.gradient: gradients must be floating point, got {dtype}")
            if torch.compiler.is_compiling():  # per leaf: compiled loops refuse outputs cut from one buffer
                for i, reduced in zip(index, self._per_leaf([leaves[i] for i in index], count), strict=True):
                    out[i] = reduced
                continue
            sizes = [leaves[i].numel() for i in index]
            if _plain_eager():  # one fresh buffer, reduced in place: three passes over the gradients, no more
                flat = torch.empty(sum(sizes) + 1, dtype=dtype, device=device)
                torch.cat([leaves[i].reshape(-1) for i in index], out=flat[:-1])
                if self.loss_reduction == "mean":
                    flat[:-1].mul_(count)
                flat[-1] = count
                collective(dist.all_reduce, flat, op=dist.ReduceOp.SUM, group=self.group)
                flat = flat[:-1].div_(flat[-1]) if self.loss_reduction == "mean" else flat[:-1]
            else:  # under vmap or a trace: the functional operator
                flat = torch.cat([leaves[i].reshape(-1) for i in index])
                if self.loss_reduction == "mean":
                    weight = torch.full((1,), float(count), dtype=dtype, device=device)
                    flat = _all_reduce(torch.cat([flat * count, weight]), "sum", self.group)
                    flat = flat[:-1] / flat[-1]
                else:
                    flat = _all_reduce(flat, "sum", self.group)
            for i, piece in zip(index, torch.split(flat, sizes), strict=True):
                out[i] = piece.view(leaves[i].shape)
        return optree.tree_unflatten(spec, out)

    def _per_leaf(self, leaves: list[torch.Tensor], count: int) -> list[torch.Tensor]:
        if self.loss_reduction == "sum":
            return [_all_reduce(leaf, "sum", self.group) for leaf in leaves]
        total = _all_reduce(torch.full((), float(count), dtype=leaves[0].dtype, device=leaves[0].device), "sum",
                            self.group)
        return [_all_reduce(leaf * count, "sum", self.group) / total for leaf in leaves]

    def mean(self, tree: Any) -> Any:
        """The plain mean over the ranks of every floating leaf of ``tree`` (other leaves as they are):
        what evens out per-rank statistics such as BatchNorm's running averages."""
        if not active(self.group):
            return tree
        leaves, spec = optree.tree_flatten(tree)
        out = list(leaves)
        floating = [i for i, leaf in enumerate(leaves) if isinstance(leaf, torch.Tensor) and leaf.is_floating_point()]
        for _, members in _buckets([leaves[i] for i in floating]).items():
            index = [floating[m] for m in members]
            flat = _all_reduce(torch.cat([leaves[i].reshape(-1) for i in index]), "mean", self.group)
            for i, piece in zip(index, torch.split(flat, [leaves[i].numel() for i in index]), strict=True):
                out[i] = piece.view(leaves[i].shape)
        return optree.tree_unflatten(spec, out)

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` summed over the ranks (e.g. an epoch's loss sum, correct count and sample count)."""
        return _all_reduce(values, "sum", self.group) if active(self.group) else values

    def check_same(self, tree: Any, what: str) -> None:
        """Raise :class:`RanksDisagree` naming the leaves of ``tree`` whose bits differ between ranks
        (one all-gather of :func:`checksums`); nothing with one rank."""
        if not active(self.group):
            return
        paths, leaves, _ = optree.tree_flatten_with_path(tree)
        tensors = [(p, leaf) for p, leaf in zip(paths, leaves, strict=True) if isinstance(leaf, torch.Tensor)]
        if not tensors:
            return
        local = checksums([leaf for _, leaf in tensors])
        table = torch.empty((world_size(self.group), local.numel()), dtype=local.dtype, device=local.device)
        collective(dist.all_gather, list(table.unbind(0)), local, group=self.group)
        differs = (table != table[:1]).any(0).tolist()
        bad = [".".join(map(str, p)) or "(root)" for (p, _), d in zip(tensors, differs, strict=True) if d]
        if bad:
            shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
            raise RanksDisagree(f"the ranks' copies of {what} differ at {shown}: data parallelism keeps them identical "
                                "only if every rank runs the same program on the same carry (same config, same "
                                "checkpoint, same torch build)")


@torch.library.custom_op("purelearn::all_reduce", mutates_args=())
def _all_reduce_op(x: torch.Tensor, op: str, group_name: str) -> torch.Tensor:
    """``dist.all_reduce`` of a copy of ``x`` (``op`` "sum" or "mean"), as a functional operator."""
    out = x.clone(memory_format=torch.contiguous_format)
    collective(dist.all_reduce, out, op=dist.ReduceOp.SUM, group=_resolve(group_name))
    if op == "mean":
        out = out / dist.get_world_size(_resolve(group_name))
    return out


@_all_reduce_op.register_fake
def _(x: torch.Tensor, op: str, group_name: str) -> torch.Tensor:
    return torch.empty_like(x, memory_format=torch.contiguous_format)


@_all_reduce_op.register_vmap
def _(info: Any, in_dims: tuple[Any, ...], x: torch.Tensor, op: str, group_name: str) -> tuple[torch.Tensor, Any]:
    # the reduction is elementwise across ranks: a batch of buffers reduces as one larger buffer, every
    # rank holding the same batch (the same program). torch's own functional all_reduce has no batching
    # rule: under vmap its fallback returns the input unreduced.
    return _all_reduce_op(x, op, group_name), in_dims[0]


def _resolve(group_name: str) -> Any:
    return dist.group.WORLD if group_name == "" else dist.distributed_c10d._resolve_process_group(group_name)


def _all_reduce(x: torch.Tensor, op: str, group: Any) -> torch.Tensor:
    """All-reduce ``x`` (``op`` "sum" or "mean") over ``group`` (None: the default group): pure, and
    correct in eager code, under ``vmap`` and inside ``torch.compile``."""
    return _all_reduce_op(x, op, "" if group is None else group.group_name)


def checksums(tensors: list[torch.Tensor]) -> torch.Tensor:
    """One int64 per tensor, a function of its exact bits and their positions (equal tensors give equal
    checksums; a change of any bit changes it with near certainty): the cheap test that the ranks' copies
    are identical."""
    out = []
    for t in tensors:
        t = t.detach().contiguous().reshape(-1)
        if t.dtype == torch.bool:
            bits = t.to(torch.int64)
        elif t.is_complex():
            bits = torch.view_as_real(t).reshape(-1).view(_INT[t.real.element_size()]).to(torch.int64)
        else:
            bits = t.view(_INT[t.element_size()]).to(torch.int64)
        position = hash32(torch.arange(bits.numel(), dtype=torch.int64, device=bits.device)) * 2 + 1
        out.append((hash32(bits ^ (bits >> 32)) * position).sum() + math.prod(t.shape))
    return torch.stack(out) if out else torch.zeros(0, dtype=torch.int64)


_INT = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
