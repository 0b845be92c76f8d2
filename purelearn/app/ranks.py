r"""Runs across ranks: how ``purelearn train`` and ``purelearn sweep`` behave under ``torchrun``.

``torchrun --nproc-per-node K -m purelearn train ...`` starts K processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and a rendezvous in their environment; :func:`from_environment` joins
them into one process group (gloo for CPU tensors, NCCL for CUDA ones where torch has it) with a
timeout on every collective, so a rank that stops never leaves the others waiting for long.

- **train**: every rank draws the same global batch (same order, same spikes) and trains on its
  shard (:func:`purelearn.distributed.shard`); the learner averages its gradients over the ranks, so
  the run is the one-process run up to float rounding. Rank 0 alone writes the run folder.
- **sweep**: the configurations are split across ranks; each rank trains its slice as one vmapped
  program; rank 0 gathers the rows and writes the table.

Errors: a mistake found before training (a config, the data, a run folder) is agreed on
(:meth:`Ranks.agree`): the rank that found it prints it, the others stop quietly with the same exit
code. A rank that fails during training exits; ``torchrun`` then stops the others, and without
``torchrun`` their next collective times out.

Example::

    ranks = from_environment(timeout_s=300)       # None in a plain process
    x_local = ranks.shard(x_seq, dim=1)
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from .. import distributed
from .errors import ConfigError

__all__ = ["Ranks", "StoppedByRank", "from_environment", "DEFAULT_TIMEOUT_S"]

#: How long a collective waits for the other ranks before it fails (``--dist-timeout``).
DEFAULT_TIMEOUT_S = 300.0


class StoppedByRank(Exception):
    """Another rank failed before training; it reported the error. ``exit_code``: its exit code."""

    def __init__(self, rank: int, message: str, exit_code: int) -> None:
        super().__init__(f"rank {rank} failed: {message}")
        self.rank, self.exit_code = rank, exit_code


@dataclass(frozen=True)
class Ranks:
    """This process's place among ``world`` ranks (``rank`` 0 writes the outputs)."""

    rank: int
    world: int
    local_rank: int = 0
    group: Any = None

    @property
    def writer(self) -> bool:
        """Whether this rank writes files and prints results (rank 0)."""
        return self.rank == 0

    @property
    def data_parallel(self) -> distributed.DataParallel:
        """What a learner takes to average its gradients over these ranks."""
        return distributed.DataParallel(self.group)

    def shard(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        """This rank's contiguous part of ``x`` along ``dim`` (a view; :func:`purelearn.distributed.shard`)."""
        return distributed.shard(x, dim, self.group)

    def bounds(self, n: int) -> tuple[int, int]:
        """``[start, stop)`` of this rank's part of ``n`` items."""
        return distributed.shard_bounds(n, self.world, self.rank)

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order, on every rank."""
        out: list[Any] = [None] * self.world
        distributed.collective(dist.all_gather_object, out, obj, group=self.group)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        box = [obj]
        distributed.collective(dist.broadcast_object_list, box, src=0, group=self.group)
        return box[0]

    def agree(self, error: BaseException | None, exit_code: int = 1) -> None:
        """A collective check point that every rank reaches once: if any rank brings an ``error``, the
        first such rank re-raises its own (the one message the job prints) and every other rank raises
        :class:`StoppedByRank` with its exit code; nothing happens otherwise."""
        reports = self.gather(None if error is None else (" ".join(str(error).split()) or type(error).__name__,
                                                          exit_code))
        failed = [(r, report) for r, report in enumerate(reports) if report is not None]
        if not failed:
            return
        rank, (message, code) = failed[0]
        if rank == self.rank and error is not None:
            raise error
        raise StoppedByRank(rank, message, code)

    def device(self, device: str) -> str:
        """``cuda`` without an index means this rank's GPU, ``cuda:LOCAL_RANK``; other devices as given."""
        return f"cuda:{self.local_rank}" if device == "cuda" else device


def _int_env(name: str) -> int:
    value = os.environ.get(name, "")
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(name, f"environment variable {name}={value!r} must be an integer (torchrun sets it)"
                          ) from None
    if number < 0:
        raise ConfigError(name, f"environment variable {name}={value!r} must be >= 0")
    return number


def from_environment(timeout_s: float = DEFAULT_TIMEOUT_S) -> Ranks | None:
    """The ranks ``torchrun`` (or another launcher setting ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
    ``MASTER_PORT``) started, joined into the default process group; None in a plain process or a
    world of one. Collectives fail after ``timeout_s`` seconds."""
    if "WORLD_SIZE" not in os.environ or _int_env("WORLD_SIZE") <= 1:
        return None
    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed; run one process")
    if not (isinstance(timeout_s, (int, float)) and 0 < timeout_s < float("inf")):
        raise ConfigError("dist_timeout", f"`dist_timeout` must be a number of seconds > 0, got {timeout_s!r}")
    rank, world = _int_env("RANK"), _int_env("WORLD_SIZE")
    local_rank = _int_env("LOCAL_RANK") if "LOCAL_RANK" in os.environ else 0
    if not dist.is_initialized():
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return Ranks(rank=rank, world=world, local_rank=local_rank)


def close(wait: bool = False) -> None:
    """Leave the process group (if one was joined); with ``wait`` (after a command every rank finished)
    first wait for all ranks, so none tears its connections down while another still uses them."""
    if dist.is_available() and dist.is_initialized():
        if wait:
            try:
                dist.barrier()
            except RuntimeError:
                pass  # a rank already gone: nothing left to wait for
        dist.destroy_process_group()
