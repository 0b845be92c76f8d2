"""Named architectures, built around a neuron factory: the models know no training algorithm.

Every model ends with a **non-spiking linear readout** (a ``Linear`` layer, no neuron after it):
its output at step t, [N, classes], is the per-step logit vector that the training loss and the
prediction use (see :mod:`purelearn.app.task`).

=========== =========================================================================================
``mlp``      ``Flatten → Linear(D, 256) → neuron → Linear(256, C)``; D = the features of one step
             (64 for the rate-coded digits: the 64-256-10 network).
``conv``     ``Conv2d(c, 16, 3, pad 1) → neuron → AvgPool 2 → Conv2d(16, 32, 3, pad 1) → neuron →
             AvgPool 2 → Flatten → Linear(32·⌊H/4⌋·⌊W/4⌋, C)``; steps must be images [c, H, W].
``alif-rnn`` ``Flatten → Recurrent(neuron, D, 128) → Linear(128, C)``: a recurrent layer for the
             sequential digits whose neuron gets a sigmoid surrogate of slope 8; with
             :func:`adaptive_lif` it is an adaptive-LIF layer with trained per-neuron time constants
             (``learn_tau``: tau_m from 5, tau_adp from 600). Its initial weights are torch's scaled
             up (input ×20, recurrent ×2: :func:`init`).
=========== =========================================================================================

``neuron`` is a factory called as ``neuron(tau=tau)`` (``mlp``, ``conv``: one call per spiking
layer) or ``neuron(tau=tau, surrogate=...)`` (the recurrent layer of ``alif-rnn``); a neuron class
such as :class:`purelearn.neurons.LIF` is one. Which neuron a training algorithm needs is
:mod:`purelearn.app.registry`'s business.

Example::

    >>> from purelearn import models, neurons
    >>> models.build("mlp", (64,), 10, neurons.LIF)[2]
    LIF(tau=2.0, decay_input=True, v_threshold=1.0, v_reset=0.0, detach_reset=False, surrogate=Sigmoid(alpha=4.0))
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from . import neurons, nn
from .surrogate import Sigmoid, Surrogate

__all__ = ["MODELS", "RECURRENT", "DEFAULT_TAU", "HIDDEN", "INIT_GAIN", "ALIF_TAU_ADP", "ALIF_SURROGATE_ALPHA",
           "NeuronFactory", "adaptive_lif", "check_steps", "build", "init", "learns_tau"]

NeuronFactory = Callable[..., Any]
"""``neuron(tau=..., [surrogate=...]) -> a neuron``, e.g. a neuron class."""

MODELS = ("mlp", "conv", "alif-rnn")
#: The models whose neuron sits in a recurrent layer (:class:`purelearn.nn.Recurrent`).
RECURRENT = ("alif-rnn",)
DEFAULT_TAU = {"mlp": 2.0, "conv": 2.0, "alif-rnn": 5.0}
HIDDEN = {"mlp": 256, "conv": 16, "alif-rnn": 128}
#: Factors on ``alif-rnn``'s initial recurrent-layer weights: (input columns, recurrent columns and bias).
#: torch's U(±1/√fan_in) is far too small for one pixel per step to drive ALIF neurons over threshold
#: (almost no spikes, nothing learns); these factors were chosen on the sequential digits with BPTT
#: (BPTT, 30 epochs, seed 0: input ×10 and fixed time constants 68.9 % test accuracy; ×20 with trained
#: time constants and the steeper surrogate below 75.8 %, and FPTT in windows 71.9 %, 74.9 % over three
#: seeds where fixed time constants give it 66.4 %).
INIT_GAIN = {"alif-rnn": (20.0, 2.0)}
#: ALIF's adaptation time constant in :func:`adaptive_lif` (long: the threshold remembers the whole digit).
ALIF_TAU_ADP = 600.0
#: The slope of ``alif-rnn``'s sigmoid surrogate (SpikingJelly's default is 4; ALIF's threshold is 0.1, a
#: tenth of LIF's, so a steeper surrogate keeps the gradient to membranes near the threshold).
ALIF_SURROGATE_ALPHA = 8.0


def adaptive_lif(tau: float | torch.Tensor = 5.0, surrogate: Surrogate | None = None) -> neurons.ALIF:
    """The adaptive LIF neuron of ``alif-rnn``: ALIF with trained time constants, tau_m from ``tau``."""
    extra = {} if surrogate is None else {"surrogate": surrogate}
    return neurons.ALIF(tau_m=tau, tau_adp=ALIF_TAU_ADP, learn_tau=True, **extra)


def check_steps(name: str, step_shape: tuple[int, ...]) -> None:
    """``ValueError`` if model ``name`` is unknown or cannot take steps of shape ``step_shape``."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    if name == "conv" and (len(step_shape) != 3 or step_shape[1] < 4 or step_shape[2] < 4):
        raise ValueError(f"'conv' needs image steps [channels, H, W] with H, W >= 4, got {list(step_shape)}")


def build(name: str, step_shape: tuple[int, ...], num_classes: int, neuron: NeuronFactory, *,
          tau: float | torch.Tensor | None = None, hidden: int | None = None) -> nn.Sequential:
    """The architecture ``name`` for steps of shape ``step_shape`` and C classes, spiking with ``neuron``.

    ``tau`` is the membrane time constant (default :data:`DEFAULT_TAU`), it may be a tensor (swept
    under vmap); ``hidden`` overrides the width (:data:`HIDDEN`).
    """
    check_steps(name, step_shape)
    tau = DEFAULT_TAU[name] if tau is None else tau
    hidden = HIDDEN[name] if hidden is None else hidden
    if hidden < 1:
        raise ValueError(f"hidden must be >= 1, got {hidden}")
    features = math.prod(step_shape)
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(features, hidden), neuron(tau=tau), nn.Linear(hidden, num_classes))
    if name == "conv":
        c, h, w = step_shape
        return nn.Sequential(
            nn.Conv2d(c, hidden, 3, padding=1), neuron(tau=tau), nn.AvgPool2d(2),
            nn.Conv2d(hidden, 2 * hidden, 3, padding=1), neuron(tau=tau), nn.AvgPool2d(2),
            nn.Flatten(), nn.Linear(2 * hidden * (h // 4) * (w // 4), num_classes),
        )
    recurrent = neuron(tau=tau, surrogate=Sigmoid(alpha=ALIF_SURROGATE_ALPHA))
    return nn.Sequential(nn.Flatten(), nn.Recurrent(recurrent, features, hidden), nn.Linear(hidden, num_classes))


def init(name: str, model: nn.Sequential, generator: torch.Generator | None, example: torch.Tensor
         ) -> tuple[Any, Any]:
    """``model.init(generator, example)``; for ``alif-rnn`` the recurrent layer's weights are then
    scaled by :data:`INIT_GAIN`: the input columns of ``rc.weight`` by 20, the recurrent columns and
    the bias by 2."""
    params, states = model.init(generator, example)
    if name in INIT_GAIN:
        input_gain, recurrent_gain = INIT_GAIN[name]
        for i, layer in enumerate(model.layers):
            if isinstance(layer, nn.Recurrent):
                rc = params[str(i)]["rc"]
                column = torch.full((rc["weight"].shape[1],), recurrent_gain, dtype=rc["weight"].dtype,
                                    device=rc["weight"].device)
                column[: layer.in_features] = input_gain
                params[str(i)]["rc"] = {"weight": rc["weight"] * column,
                                        **({"bias": rc["bias"] * recurrent_gain} if "bias" in rc else {})}
    return params, states


def learns_tau(model: nn.Sequential) -> bool:
    """Whether ``model`` trains a time constant (its ``tau`` is then an initial parameter value)."""
    inner = [layer.neuron if isinstance(layer, nn.Recurrent) else layer for layer in model.layers]
    return any(isinstance(neuron, neurons.ALIF) and neuron.learn_tau for neuron in inner)
