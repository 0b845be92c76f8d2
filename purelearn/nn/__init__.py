"""Layers and models as pure ``init`` / ``apply`` pairs (haiku's ``transform_with_state`` shape).

A model is a static description (a frozen object holding hyperparameters only) plus::

    params, states = model.init(generator, x_example)     # params: trained, states: memories
    y_t, states    = model.apply(params, states, x_t)      # one time step, pure
    states         = model.init_states(x_example)          # fresh memories for a new sequence
    states         = model.reset_states(states)            # the same, keeping dtype/device

``params`` and ``states`` are nested dicts keyed by the layer's index in the ``Sequential`` (the
keys of ``torch.nn.Sequential.state_dict``): ``params["0"]["weight"]``, ``states["1"].v``. Only
layers with parameters appear in ``params`` and only stateful layers in ``states``: each layer says
so itself (``layer.has_params``, ``layer.has_state``). Neurons (:mod:`purelearn.neurons`) are layers
of the same protocol (:class:`~purelearn.layer.Layer`), and no layer knows how it will be trained.

One module per concept, as in ``torch.nn``:

- :mod:`~purelearn.nn.linear`: ``Linear``, ``Conv2d``
- :mod:`~purelearn.nn.pooling`: ``AvgPool2d``, ``MaxPool2d``
- :mod:`~purelearn.nn.shape`: ``Flatten``, ``Identity``
- :mod:`~purelearn.nn.dropout`: ``Dropout``, ``DropoutState``
- :mod:`~purelearn.nn.recurrent`: ``Recurrent``, ``RecurrentState``
- :mod:`~purelearn.nn.normalization`: ``BatchNorm1d``, ``BatchNorm2d``, ``BatchNormState`` (running
  statistics in the state), ``WSConv2d``, ``WSLinear``, ``Scale`` (OTTT's scaled weight standardisation)
- :mod:`~purelearn.nn.residual`: ``Residual`` (``y = body(x) + shortcut(x)``), ``walk`` (nested layers)
- :mod:`~purelearn.nn.sequential`: ``Sequential``
- ``from_torch``, ``to_state_dict``, ``from_state_dict`` come from :mod:`purelearn.interop.torch`.

Example::

    >>> import torch
    >>> from purelearn import nn, neurons
    >>> model = nn.Sequential(nn.Linear(3, 2), neurons.LIF())
    >>> params, states = model.init(torch.Generator().manual_seed(0), torch.zeros(4, 3))
    >>> sorted(params["0"]), states["1"].v.shape
    (['bias', 'weight'], torch.Size([]))
"""

from ..interop.torch import from_state_dict, from_torch, to_state_dict
from ..layer import Layer
from .dropout import Dropout, DropoutState
from .linear import Conv2d, Linear
from .normalization import BatchNorm1d, BatchNorm2d, BatchNormState, Scale, WSConv2d, WSLinear
from .pooling import AvgPool2d, MaxPool2d
from .recurrent import Recurrent, RecurrentState
from .residual import Residual, walk
from .sequential import Sequential
from .shape import Flatten, Identity

__all__ = [
    "Layer",
    "Linear",
    "Conv2d",
    "AvgPool2d",
    "MaxPool2d",
    "Flatten",
    "Identity",
    "Dropout",
    "DropoutState",
    "Recurrent",
    "RecurrentState",
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNormState",
    "WSConv2d",
    "WSLinear",
    "Scale",
    "Residual",
    "walk",
    "Sequential",
    "from_torch",
    "to_state_dict",
    "from_state_dict",
]
