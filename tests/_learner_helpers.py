"""Shared helpers for the learner tests (FPTT, FPTT-dual, OTTT, SLTT, BPTT and the protocol).

- :data:`TOL`: the agreement the learner tests require with an oracle (SpikingJelly or a
  hand-written torch loop) after several sequences: 1e-5 in float32, 1e-10 in float64.
- :func:`sj_online`: SpikingJelly's ``learning.online_learning`` module (skips when not installed).
- :func:`sequences`: reproducible time-major ``(x_seq, y_seq)`` pairs.
- :data:`OPTIMIZERS`: the same optimizer as ``torch.optim`` and as ``purelearn.optim``.
- :func:`params_diff` / :func:`state_dict_diff`: purelearn params against a torch module.
- :func:`train_beside_sj_ottt`: a learner beside SpikingJelly's ``ottt_online_training``, sequence by sequence.
- :func:`snapshot` / :func:`assert_untouched`: purity checks (values and ``_version`` of leaves).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from types import ModuleType
from typing import Any, NamedTuple

import optree
import pytest
import torch
import torch.nn.functional as F

from purelearn import nn, optim

TOL: dict[torch.dtype, float] = {torch.float32: 1e-5, torch.float64: 1e-10}
DTYPES = [torch.float32, torch.float64]
DTYPE_IDS = ["float32", "float64"]


def sj_online() -> ModuleType:
    """SpikingJelly's ``activation_based.learning.online_learning`` (skip the test without it)."""
    return pytest.importorskip("spikingjelly.activation_based.learning.online_learning")


def sj_base() -> ModuleType:
    return pytest.importorskip("spikingjelly.activation_based.base")


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


def sequences(n: int, T: int, x_shape: Sequence[int], y_shape: Sequence[int], dtype: torch.dtype,
              seed: int, scale: float = 3.0, batches: Sequence[int] | None = None
              ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``n`` time-major pairs ``x`` [T, N, *x_shape] (uniform in [0, scale)), ``y`` [T, N, *y_shape].

    ``batches`` gives N per sequence (default 3 for all).
    """
    g = torch.Generator().manual_seed(1000 + seed)
    batches = [3] * n if batches is None else list(batches)
    out = []
    for b in batches:
        x = torch.rand((T, b, *x_shape), generator=g, dtype=torch.float64).to(dtype) * scale
        y = torch.rand((T, b, *y_shape), generator=g, dtype=torch.float64).to(dtype)
        out.append((x, y))
    return out


# --------------------------------------------------------------------------------------------------
# Optimizers: the torch.optim one and its purelearn twin
# --------------------------------------------------------------------------------------------------


class OptPair(NamedTuple):
    torch: Callable[[Iterable[torch.Tensor]], torch.optim.Optimizer]
    ours: Callable[[], optim.GradientTransformation]


OPTIMIZERS: dict[str, OptPair] = {
    "sgd_momentum": OptPair(lambda ps: torch.optim.SGD(ps, lr=0.5, momentum=0.9),
                            lambda: optim.sgd(lr=0.5, momentum=0.9)),
    "adam": OptPair(lambda ps: torch.optim.Adam(ps, lr=0.01), lambda: optim.adam(lr=0.01)),
}


# --------------------------------------------------------------------------------------------------
# Comparisons with torch modules
# --------------------------------------------------------------------------------------------------


def state_dict_diff(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> float:
    """Largest absolute difference between two state dicts with the same keys and shapes."""
    assert set(ours) == set(theirs), f"keys differ: {sorted(ours)} vs {sorted(theirs)}"
    for k in ours:
        assert ours[k].shape == theirs[k].shape, f"{k}: {tuple(ours[k].shape)} vs {tuple(theirs[k].shape)}"
        assert ours[k].dtype == theirs[k].dtype, f"{k}: {ours[k].dtype} vs {theirs[k].dtype}"
    return max((ours[k] - theirs[k]).abs().max().item() for k in ours)


def params_diff(params: Any, net: torch.nn.Module) -> float:
    """Largest absolute difference between purelearn ``params`` and ``net``'s parameters."""
    theirs = {k: v.detach() for k, v in net.named_parameters()}
    return state_dict_diff(nn.to_state_dict(params), theirs)


def list_diff(ours: Any, net: torch.nn.Module, theirs: Sequence[torch.Tensor]) -> float:
    """``ours`` (a params-shaped tree) against a list aligned with ``net.parameters()`` (e.g. ``w_ra``)."""
    names = [k for k, _ in net.named_parameters()]
    assert len(names) == len(theirs)
    return state_dict_diff(nn.to_state_dict(ours), {k: t.detach() for k, t in zip(names, theirs, strict=True)})


def grads_diff(ours: Any, net: torch.nn.Module) -> float:
    """purelearn gradient tree against the ``.grad`` of ``net``'s parameters."""
    theirs = {k: p.grad.detach() for k, p in net.named_parameters()}
    return state_dict_diff(nn.to_state_dict(ours), theirs)


def train_beside_sj_ottt(sj: Any, net: torch.nn.Module, topt: torch.optim.Optimizer, learner: Any, carry: Any,
                         data: Sequence[tuple[torch.Tensor, torch.Tensor]], online: bool, tol: float
                         ) -> tuple[Any, Any]:
    """Train ``net`` with SpikingJelly's ``ottt_online_training`` (OTTT's loop, SLTT's too) and ``learner``
    from ``carry`` on each ``(x, y)`` of ``data``; per sequence, the summed losses and the outputs must
    agree to ``tol``. Returns the last ``(carry, outs)``."""
    ol = sj_online()
    for x, y in data:
        net.train()
        batch_loss, y_all = ol.ottt_online_training(net, topt, x.transpose(0, 1), y.transpose(0, 1), F.mse_loss,
                                                    online)
        sj.functional.reset_net(net)
        carry, outs = learner.run(carry, x, y)
        torch.testing.assert_close(outs.loss.sum(), batch_loss, rtol=0, atol=tol)
        torch.testing.assert_close(outs.y, y_all.transpose(0, 1), rtol=0, atol=tol)
    return carry, outs


def memories(net: torch.nn.Module) -> list[dict[str, Any]]:
    """Deep copies of the memories of every SpikingJelly ``MemoryModule`` in ``net``."""
    base = sj_base()
    return [copy.deepcopy(m._memories) for m in net.modules() if isinstance(m, base.MemoryModule)]


def restore_memories(net: torch.nn.Module, saved: list[dict[str, Any]]) -> None:
    base = sj_base()
    mods = [m for m in net.modules() if isinstance(m, base.MemoryModule)]
    assert len(mods) == len(saved)
    for m, s in zip(mods, saved, strict=True):
        m._memories = copy.deepcopy(s)


class LossRecorder:
    """``F.mse_loss`` that records every call's loss and output (clones: callers may add in place)."""

    def __init__(self) -> None:
        self.losses: list[torch.Tensor] = []
        self.ys: list[torch.Tensor] = []

    def __call__(self, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = F.mse_loss(y, target)
        self.losses.append(loss.detach().clone())
        self.ys.append(y.detach().clone())
        return loss


# --------------------------------------------------------------------------------------------------
# Purity
# --------------------------------------------------------------------------------------------------


def tensor_leaves(*trees: Any) -> list[torch.Tensor]:
    """All tensor leaves of ``trees`` (``None`` leaves and non-tensors skipped)."""
    return [leaf for leaf in optree.tree_leaves(trees) if isinstance(leaf, torch.Tensor)]


def snapshot(*trees: Any) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    """``(leaf, copy of its value, its _version)`` for every tensor leaf of ``trees``."""
    return [(t, t.detach().clone(), t._version) for t in tensor_leaves(*trees)]


def assert_untouched(snap: list[tuple[torch.Tensor, torch.Tensor, int]]) -> None:
    """Every leaf recorded by :func:`snapshot` still has its value and ``_version``."""
    assert snap, "nothing was recorded"
    for i, (t, value, version) in enumerate(snap):
        assert t._version == version, f"leaf {i} (shape {tuple(t.shape)}) was modified in place"
        assert torch.equal(t.detach(), value), f"leaf {i} (shape {tuple(t.shape)}) changed value"


def max_change(a: Any, b: Any) -> float:
    """Largest absolute difference between two same-structured trees of tensors."""
    la, lb = tensor_leaves(a), tensor_leaves(b)
    assert len(la) == len(lb)
    return max((x - y).abs().max().item() for x, y in zip(la, lb, strict=True))


