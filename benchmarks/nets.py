"""The benchmark's networks and methods, built twice from the same weights: SpikingJelly 2.0.0
modules (the reference) and their purelearn twins (``purelearn.nn.from_torch``).

Nets (time-major data ``x`` [T, N, ...], targets ``y`` [T, N, out], loss ``F.mse_loss``):

- A, dense: Linear(700,256)–LIF–Linear(256,256)–LIF–Linear(256,20)–LIF, N=32, T=50
- B, small: Linear(64,32)–LIF–Linear(32,10)–LIF, N=16, T=16
- C, conv:  Conv2d(2,16,3,p=1)–LIF–AvgPool2d(2)–Conv2d(16,32,3,p=1)–LIF–AvgPool2d(2)–Flatten–
            Linear(32·8·8,10)–LIF on 2×32×32 inputs, N=16, T=10

The hidden neurons are ``OTTTLIFNode`` inside ``layer.OTTTSequential`` for OTTT, ``SLTTLIFNode``
(all neurons) in a plain ``nn.Sequential`` for SLTT, and ``LIFNode`` otherwise. Every method
uses SGD (lr 0.01, momentum 0.9), as ``torch.optim.SGD`` and ``purelearn.optim.sgd``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as tnn
import torch.nn.functional as F

warnings.filterwarnings("ignore")
logging.getLogger("torch._library.triton").setLevel(logging.ERROR)

from spikingjelly.activation_based import functional, layer, neuron  # noqa: E402
from spikingjelly.activation_based.learning import online_learning as sj_ol  # noqa: E402

from purelearn import nn, online, optim  # noqa: E402

LR, MOMENTUM, FPTT_ALPHA = 0.01, 0.9, 0.1


@dataclass(frozen=True)
class NetSpec:
    name: str
    x_shape: tuple[int, ...]
    out: int
    N: int
    T: int
    description: str


NETS = {
    "A": NetSpec("A", (700,), 20, 32, 50, "dense 700-256-256-20"),
    "B": NetSpec("B", (64,), 10, 16, 16, "small 64-32-10"),
    "C": NetSpec("C", (2, 32, 32), 10, 16, 10, "conv 2x32x32 → 16c → 32c → 10"),
}

#: method → hidden neuron family and the ``purelearn.online`` factory
METHODS = ["fptt", "fptt_dual", "ottt_o", "ottt_a", "sltt", "sltt_k", "bptt"]
LABELS = {"fptt": "FPTT", "fptt_dual": "FPTT-dual", "ottt_o": "OTTT-O", "ottt_a": "OTTT-A", "sltt": "SLTT",
          "sltt_k": "SLTT-K", "bptt": "BPTT"}


def family(method: str) -> str:
    return "ottt" if method.startswith("ottt") else "sltt" if method.startswith("sltt") else "lif"


def sj_module(net: str, fam: str, seed: int = 0) -> tnn.Module:
    """The SpikingJelly network ``net`` with hidden neurons of family ``fam`` (lif / ottt / sltt)."""
    torch.manual_seed(seed)
    hidden = {"lif": neuron.LIFNode, "ottt": neuron.OTTTLIFNode, "sltt": neuron.SLTTLIFNode}[fam]
    last = neuron.SLTTLIFNode if fam == "sltt" else neuron.LIFNode
    if net == "A":
        mods = [tnn.Linear(700, 256), hidden(), tnn.Linear(256, 256), hidden(), tnn.Linear(256, 20), last()]
    elif net == "B":
        mods = [tnn.Linear(64, 32), hidden(), tnn.Linear(32, 10), last()]
    else:
        mods = [tnn.Conv2d(2, 16, 3, padding=1), hidden(), tnn.AvgPool2d(2), tnn.Conv2d(16, 32, 3, padding=1), hidden(),
                tnn.AvgPool2d(2), tnn.Flatten(), tnn.Linear(32 * 8 * 8, 10), last()]
    return layer.OTTTSequential(*mods) if fam == "ottt" else tnn.Sequential(*mods)


def data(net: str, T: int | None = None, seed: int = 1, dtype: torch.dtype = torch.float32
         ) -> tuple[torch.Tensor, torch.Tensor]:
    spec = NETS[net]
    T = spec.T if T is None else T
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand((T, spec.N, *spec.x_shape), generator=g) < 0.3).to(dtype) * 1.5  # input spikes ×1.5
    y = torch.rand((T, spec.N, spec.out), generator=g).to(dtype)
    return x, y


def sltt_k(T: int) -> int:
    return max(1, T // 5)


def pl_learner(method: str, model: nn.Sequential, lr: Any = LR, alpha: Any = FPTT_ALPHA, T: int = 10) -> Any:
    opt = optim.sgd(lr=lr, momentum=MOMENTUM)
    if method == "fptt":
        return online.fptt(model, F.mse_loss, opt, alpha=alpha)
    if method == "fptt_dual":
        return online.fptt_dual(model, F.mse_loss, opt, alpha=alpha, beta=0.5)
    if method in ("ottt_o", "ottt_a"):
        return online.ottt(model, F.mse_loss, opt, online=method == "ottt_o")
    if method == "sltt":
        return online.sltt(model, F.mse_loss, opt)
    if method == "sltt_k":
        return online.sltt(model, F.mse_loss, opt, k=sltt_k(T), seed=0)
    return online.bptt(model, F.mse_loss, opt)


def sj_sequence(method: str, module: tnn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                w_ra: list[torch.Tensor] | None) -> None:
    """One training sequence with SpikingJelly's own function for ``method`` (BPTT: a hand loop)."""
    if method == "fptt":
        sj_ol.fptt_online_training(module, opt, x, y, F.mse_loss, FPTT_ALPHA, w_ra)
    elif method in ("ottt_o", "ottt_a", "sltt", "sltt_k"):
        module.train()
        sj_ol.ottt_online_training(module, opt, x.transpose(0, 1), y.transpose(0, 1), F.mse_loss,
                                   method == "ottt_o")
    elif method == "bptt":
        opt.zero_grad()
        loss = 0.0
        for t in range(x.shape[0]):
            loss = loss + F.mse_loss(module(x[t]), y[t])
        loss.backward()
        opt.step()
    else:
        raise ValueError(f"SpikingJelly has no {method}")
    functional.reset_net(module)


#: the SpikingJelly function each method is compared with (FPTT-dual has none: purelearn FPTT)
SJ_COUNTERPART = {"fptt": "fptt", "ottt_o": "ottt_o", "ottt_a": "ottt_a", "sltt": "sltt", "sltt_k": "sltt",
                  "bptt": "bptt"}


@dataclass
class Pair:
    """One method on one net: the SpikingJelly module + optimizer and the purelearn learner + carry."""

    net: str
    method: str
    x: torch.Tensor
    y: torch.Tensor
    sj: tnn.Module | None
    sj_opt: torch.optim.Optimizer | None
    w_ra: list[torch.Tensor] | None
    learner: Any
    carry: Any
    extra: dict[str, Any] = field(default_factory=dict)

    def sj_fn(self) -> Callable[[], None] | None:
        if self.sj is None:
            return None
        counterpart = SJ_COUNTERPART[self.method]
        return lambda: sj_sequence(counterpart, self.sj, self.sj_opt, self.x, self.y, self.w_ra)


def build_pair(net: str, method: str, T: int | None = None) -> Pair:
    """SpikingJelly and purelearn set up for ``method`` on ``net`` with the same initial weights."""
    x, y = data(net, T)
    fam = family(method)
    module = sj_module(net, fam)
    model, params, states = nn.from_torch(module, x[0])
    learner = pl_learner(method, model, T=x.shape[0])
    has_sj = method in SJ_COUNTERPART
    if has_sj and SJ_COUNTERPART[method] != method:  # SLTT-K against SJ's full SLTT
        module = sj_module(net, family(SJ_COUNTERPART[method]))
    sj_opt = torch.optim.SGD(module.parameters(), lr=LR, momentum=MOMENTUM) if has_sj else None
    w_ra = sj_ol.fptt_online_training_init_w_ra(sj_opt) if method == "fptt" else None
    return Pair(net, method, x, y, module if has_sj else None, sj_opt, w_ra, learner, learner.init(params, states))
