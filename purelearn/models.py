"""Named architectures, built around a neuron factory: the models know no training algorithm.

Every model ends with a **non-spiking readout**: a ``Linear`` layer (``srnn``: followed by a leaky
integrator, :class:`purelearn.neurons.LI`, whose output is its membrane); its output at step t,
[N, classes], is the per-step logit vector that the training loss and the prediction use (see
:mod:`purelearn.app.task`).

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
``srnn``     ``Flatten → Recurrent(neuron, D, 128) → Recurrent(neuron, 128, 128) → Linear(128, C) → LI``:
             the spiking recurrent network of Yin et al. (2021, 2023) for SHD/SSC, two recurrent
             layers (with :func:`adaptive_lif`: ALIF, trained time constants, tau_m from 10) and a
             leaky non-spiking readout (:data:`READOUT_TAU`, trained). Initial recurrent-layer weights
             scaled as ``alif-rnn``'s (:data:`INIT_GAIN`).
``vgg``      OTTT's VGG (Xiao et al. 2022), :func:`vgg`: ``[WSConv2d(3×3, pad 1) → neuron → Scale(2.74)]``
             blocks with 2×2 average pooling, widths h·(1, 2, A, 4, 4, A, 8, 8, A, 8, 8) (h = 16; the
             paper's VGG-11 is h = 64), then a global average pooling → Flatten → Linear(8h, C). Images
             [c, H, W] with H, W >= 8.
``resnet``   SLTT's pre-activation ResNet (Meng et al. 2023), :func:`resnet`: ``Conv2d(c, h, 3×3)``, then per
             block ``BatchNorm2d → neuron → Residual(Conv2d(3×3, stride) → BatchNorm2d → neuron →
             Conv2d(3×3), shortcut: the block's spikes, or a 1×1 Conv2d where the shape changes)``, in
             four stages of widths h·(1, 2, 4, 8) and strides (1, 2, 2, 2), one block each (h = 16; the
             paper's ResNet-18 is h = 64, two blocks per stage); then ``BatchNorm2d → neuron → global
             average pooling → Flatten → Linear(8h, C)``. Images [c, H, W].
=========== =========================================================================================

``neuron`` is a factory called as ``neuron(tau=tau)`` (``mlp``, ``conv``, ``vgg``, ``resnet``: one call
per spiking layer) or ``neuron(tau=tau, surrogate=...)`` (the recurrent layer of ``alif-rnn``); a neuron class
such as :class:`purelearn.neurons.LIF` is one (``srnn``'s readout is an ``LI`` whatever the factory). Which
neuron a training algorithm needs is
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
           "READOUT_TAU", "MIN_SIDE", "VGG_LAYOUT", "WS_SCALE", "RESNET_STAGES", "RESNET_BLOCKS", "NeuronFactory",
           "adaptive_lif", "vgg", "resnet", "check_steps", "build", "init", "learns_tau"]

NeuronFactory = Callable[..., Any]
"""``neuron(tau=..., [surrogate=...]) -> a neuron``, e.g. a neuron class."""

MODELS = ("mlp", "conv", "alif-rnn", "srnn", "vgg", "resnet")
#: The models whose neuron sits in a recurrent layer (:class:`purelearn.nn.Recurrent`).
RECURRENT = ("alif-rnn", "srnn")
DEFAULT_TAU = {"mlp": 2.0, "conv": 2.0, "alif-rnn": 5.0, "srnn": 10.0, "vgg": 2.0, "resnet": 2.0}
HIDDEN = {"mlp": 256, "conv": 16, "alif-rnn": 128, "srnn": 128, "vgg": 16, "resnet": 16}
#: The smallest image side each image model takes (``vgg``: three 2×2 poolings).
MIN_SIDE = {"conv": 4, "vgg": 8, "resnet": 1}
#: Factors on ``alif-rnn``'s initial recurrent-layer weights: (input columns, recurrent columns and bias).
#: torch's U(±1/√fan_in) is far too small for one pixel per step to drive ALIF neurons over threshold
#: (almost no spikes, nothing learns); these factors were chosen on the sequential digits with BPTT
#: (BPTT, 30 epochs, seed 0: input ×10 and fixed time constants 68.9 % test accuracy; ×20 with trained
#: time constants and the steeper surrogate below 75.8 %, and FPTT in windows 71.9 %, 74.9 % over three
#: seeds where fixed time constants give it 66.4 %).
#: ``srnn`` takes the same factors: on randman (5 spikes per unit and second, 10-ms frames) BPTT and FPTT
#: learn nothing in 8 epochs at torch's scale, and ×20 / ×2 beat ×10 and ×40 (BPTT, seed 0).
INIT_GAIN = {"alif-rnn": (20.0, 2.0), "srnn": (20.0, 2.0)}
#: ALIF's adaptation time constant in :func:`adaptive_lif` (long: the threshold remembers the whole digit).
ALIF_TAU_ADP = 600.0
#: The slope of ``alif-rnn``'s sigmoid surrogate (SpikingJelly's default is 4; ALIF's threshold is 0.1, a
#: tenth of LIF's, so a steeper surrogate keeps the gradient to membranes near the threshold).
ALIF_SURROGATE_ALPHA = 8.0
#: The initial time constant (in steps) of ``srnn``'s leaky readout, a trained parameter.
READOUT_TAU = 20.0


def adaptive_lif(tau: float | torch.Tensor = 5.0, surrogate: Surrogate | None = None) -> neurons.ALIF:
    """The adaptive LIF neuron of ``alif-rnn``: ALIF with trained time constants, tau_m from ``tau``."""
    extra = {} if surrogate is None else {"surrogate": surrogate}
    return neurons.ALIF(tau_m=tau, tau_adp=ALIF_TAU_ADP, learn_tau=True, **extra)


#: OTTT's VGG: the authors' ``online_spiking_vgg11_ws`` (cfg ``A``; SpikingJelly's ``ottt_spiking_vggws``)
#: with widths as multiples of ``hidden`` (64 there), "A" a 2×2 average pooling.
VGG_LAYOUT: tuple[int | str, ...] = (1, 2, "A", 4, 4, "A", 8, 8, "A", 8, 8)
#: The fixed scale after every neuron of OTTT's weight-standardised VGG.
WS_SCALE = 2.74
#: SLTT's ResNet stages: (width as a multiple of ``hidden``, stride of the stage's first block).
RESNET_STAGES = ((1, 1), (2, 2), (4, 2), (8, 2))
#: Residual blocks per stage: one each by default; the SLTT paper's ResNet-18 has (2, 2, 2, 2).
RESNET_BLOCKS = (1, 1, 1, 1)


def _image(name: str, step_shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(step_shape) != 3:
        raise ValueError(f"{name!r} needs image steps [channels, H, W], got {list(step_shape)}")
    return step_shape  # type: ignore[return-value]


def _classifier(channels: int, h: int, w: int, num_classes: int) -> tuple[nn.Layer, ...]:
    """Global average pooling of [N, channels, h, w] → Flatten → Linear(channels, C)."""
    return nn.AvgPool2d((h, w)), nn.Flatten(), nn.Linear(channels, num_classes)


def vgg(step_shape: tuple[int, ...], num_classes: int, neuron: NeuronFactory, *, tau: float | torch.Tensor = 2.0,
        hidden: int = 16, layout: tuple[int | str, ...] = VGG_LAYOUT) -> nn.Sequential:
    """OTTT's VGG (Xiao et al., NeurIPS 2022) for image steps [c, H, W]: for every width m in ``layout``
    ``WSConv2d(·, m·hidden, 3, pad 1) → neuron → Scale(2.74)``, for every "A" ``AvgPool2d(2)``, then
    ``AvgPool2d`` over what is left (the authors' ``AdaptiveAvgPool2d(1)``, ``fc_hw=1``) → Flatten →
    ``Linear(last width, C)``.

    As the authors' ``models/spiking_vgg.py`` (pkuxmq/OTTT-SNN): every conv, the first included, is
    weight-standardised (:class:`~purelearn.nn.WSConv2d`, gain trained), the classifier is a plain
    Linear, average (not max) pooling, no BatchNorm; with OTTT's neuron the Scale multiplies spike
    and trace (:func:`purelearn.online.ottt.wire`). ``hidden=64`` is their VGG-11 (64, 128, A, 256,
    256, A, 512, 512, A, 512, 512) for CIFAR-10 (T = 6) and, on 2-channel 48×48 frames, CIFAR10-DVS
    (T = 10); they train with OTTT's LIF (tau 2, soft reset), sigmoid surrogate of slope 4, SGD lr 0.1,
    cosine schedule. Here initialisation is torch's (they draw kaiming-normal conv weights, which the
    standardisation makes nearly irrelevant, and N(0, 0.01) classifier weights).
    """
    c, h, w = _image("vgg", step_shape)
    layers: list[nn.Layer] = []
    for m in layout:
        if m == "A":
            layers.append(nn.AvgPool2d(2))
            h, w = h // 2, w // 2
        elif isinstance(m, int) and not isinstance(m, bool) and m > 0:
            layers += [nn.WSConv2d(c, m * hidden, 3, padding=1), neuron(tau=tau), nn.Scale(WS_SCALE)]
            c = m * hidden
        else:
            raise ValueError(f"vgg: `layout` holds positive ints (widths in units of `hidden`) and 'A' (pooling), "
                             f"got {m!r}")
    if h < 1 or w < 1:
        raise ValueError(f"vgg: steps {list(step_shape)} are too small for {layout.count('A')} 2x2 poolings")
    return nn.Sequential(*layers, *_classifier(c, h, w, num_classes))


def resnet(step_shape: tuple[int, ...], num_classes: int, neuron: NeuronFactory, *, tau: float | torch.Tensor = 2.0,
           hidden: int = 16, blocks: tuple[int, ...] = RESNET_BLOCKS) -> nn.Sequential:
    """SLTT's pre-activation spiking ResNet (Meng et al., ICCV 2023) for image steps [c, H, W]::

        Conv2d(c, h, 3, pad 1, no bias)
        per block:  BatchNorm2d → neuron → Residual(body:     Conv2d(3, stride, pad 1) → BatchNorm2d →
                                                              neuron → Conv2d(3, pad 1),
                                                    shortcut: identity, or Conv2d(1, stride) where the
                                                              width or the stride changes)
        BatchNorm2d → neuron → AvgPool2d over what is left → Flatten → Linear(8h, C)

    ``blocks[i]`` blocks in stage i of :data:`RESNET_STAGES` (widths h·(1, 2, 4, 8), first strides
    1, 2, 2, 2). As the authors' ``PreActBlock`` (qymeng94/SLTT, ``models/spiking_resnet.py``), the
    shortcut takes the block's *spikes* (the output of its first neuron), not the block's input, and
    the stream between blocks is the sum of convolutions and shortcuts, a real value; their final
    ``AvgPool2d(4)`` on CIFAR's 4×4 is the global average pooling here. ``hidden=64, blocks=(2, 2, 2,
    2)`` is their ResNet-18 ((3, 4, 6, 3): ResNet-34) for CIFAR-10/100 (T = 6); they train SLTT's LIF
    (tau 1.1, no input decay, soft reset), a triangle surrogate, SGD lr 0.1, cosine schedule; dropout
    (0 for CIFAR) is left out, initialisation is torch's (theirs: kaiming-normal convs). BatchNorm
    keeps its running statistics in the states (:class:`purelearn.nn.BatchNorm2d`); training needs
    more than one value per channel, so a batch of 1 fails at the last stage when it is 1×1.
    """
    c, h, w = _image("resnet", step_shape)
    if len(blocks) != len(RESNET_STAGES) or not all(isinstance(b, int) and not isinstance(b, bool) and b > 0
                                                    for b in blocks):
        raise ValueError(f"resnet: `blocks` must be {len(RESNET_STAGES)} positive ints, one per stage, got {blocks!r}")
    layers: list[nn.Layer] = [nn.Conv2d(c, hidden, 3, padding=1, bias=False)]
    c = hidden
    for (m, first_stride), n in zip(RESNET_STAGES, blocks, strict=True):
        for b in range(n):
            stride, width = (first_stride if b == 0 else 1), m * hidden
            body = nn.Sequential(nn.Conv2d(c, width, 3, stride=stride, padding=1), nn.BatchNorm2d(width),
                                 neuron(tau=tau), nn.Conv2d(width, width, 3, padding=1))
            shortcut = nn.Sequential(nn.Conv2d(c, width, 1, stride=stride)) if stride != 1 or c != width else None
            layers += [nn.BatchNorm2d(c), neuron(tau=tau), nn.Residual(body, shortcut)]
            c, h, w = width, -(-h // stride), -(-w // stride)
    return nn.Sequential(*layers, nn.BatchNorm2d(c), neuron(tau=tau), *_classifier(c, h, w, num_classes))


def check_steps(name: str, step_shape: tuple[int, ...]) -> None:
    """``ValueError`` if model ``name`` is unknown or cannot take steps of shape ``step_shape``."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    if name in MIN_SIDE and (len(step_shape) != 3 or min(step_shape[1:]) < MIN_SIDE[name]):
        raise ValueError(f"{name!r} needs image steps [channels, H, W] with H, W >= {MIN_SIDE[name]}, got "
                         f"{list(step_shape)}")


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
    if name == "vgg":
        return vgg(step_shape, num_classes, neuron, tau=tau, hidden=hidden)
    if name == "resnet":
        return resnet(step_shape, num_classes, neuron, tau=tau, hidden=hidden)
    recurrent = neuron(tau=tau, surrogate=Sigmoid(alpha=ALIF_SURROGATE_ALPHA))
    if name == "alif-rnn":
        return nn.Sequential(nn.Flatten(), nn.Recurrent(recurrent, features, hidden), nn.Linear(hidden, num_classes))
    return nn.Sequential(nn.Flatten(), nn.Recurrent(recurrent, features, hidden),
                         nn.Recurrent(recurrent, hidden, hidden), nn.Linear(hidden, num_classes),
                         neurons.LI(tau=READOUT_TAU, learn_tau=True))


def init(name: str, model: nn.Sequential, generator: torch.Generator | None, example: torch.Tensor
         ) -> tuple[Any, Any]:
    """``model.init(generator, example)``; for ``alif-rnn`` and ``srnn`` every recurrent layer's weights
    are then scaled by :data:`INIT_GAIN`: the input columns of ``rc.weight`` by 20, the recurrent
    columns and the bias by 2."""
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
