"""torch / SpikingJelly interop: :func:`from_torch`, :func:`to_state_dict`, :func:`from_state_dict`.

A purelearn ``params`` tree is keyed like ``torch.nn.Sequential.state_dict`` (``params["0"]["weight"]``
is ``"0.weight"``), so weights move both ways without renaming.

Example::

    >>> import torch
    >>> from purelearn.interop import from_torch, to_state_dict
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 2))
    >>> model, params, states = from_torch(net, torch.zeros(1, 3))
    >>> sorted(to_state_dict(params)) == sorted(net.state_dict())
    True
"""

from __future__ import annotations

from typing import Any

import torch

from .. import neurons as _neurons
from .. import surrogate as _surrogate
from ..layer import Layer, Params, tensor_input
from ..neurons import Neuron
from ..nn.dropout import Dropout
from ..nn.linear import Conv2d, Linear
from ..nn.normalization import BatchNorm1d, BatchNorm2d, BatchNormState, Scale, WSConv2d, WSLinear
from ..nn.pooling import AvgPool2d, MaxPool2d
from ..nn.recurrent import Recurrent
from ..nn.sequential import Sequential
from ..nn.shape import Flatten, Identity

__all__ = ["from_torch", "to_state_dict", "from_state_dict"]


def _buffers(states: Params | None) -> dict[str, Any]:
    """The states torch keeps as module buffers, keyed like ``state_dict`` (``"1.running_mean"``):
    BatchNorm's running statistics. Neuron memories and dropout keys are no buffers and are left out."""
    if states is None:
        return {}
    if not isinstance(states, dict):
        raise TypeError(f"to_state_dict: `states` must be a dict of layer states, got {type(states).__name__}")
    out: dict[str, Any] = {}
    for k, s in states.items():
        if isinstance(s, BatchNormState):
            out[k] = dict(s._asdict())
        elif isinstance(s, dict):  # a residual block's chains: "3.body.1.running_mean"
            nested = {name: b for name, chain in s.items() if (b := _buffers(chain))}
            if nested:
                out[k] = nested
    return out


def _with_buffers(states: Params, buffers: dict[str, Any]) -> Params:
    """``states`` with every BatchNorm state read from ``buffers`` (a residual block's too)."""
    return {k: BatchNormState(**buffers[k]) if isinstance(s, BatchNormState)
            else _with_buffers(s, buffers[k]) if isinstance(s, dict) and k in buffers else s
            for k, s in states.items()}


def to_state_dict(params: Params, states: Params | None = None) -> dict[str, torch.Tensor]:
    """Flatten ``params`` into ``torch.nn.Module.state_dict`` keys (``"0.weight"``, ``"3.rc.bias"``).

    With ``states``, BatchNorm's running statistics join them (``"1.running_mean"``,
    ``"1.running_var"``, ``"1.num_batches_tracked"``), so ``module.load_state_dict`` restores those too.
    """
    out: dict[str, torch.Tensor] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(node, torch.Tensor):
            out[prefix] = node.detach().clone()
        else:
            raise TypeError(f"to_state_dict: leaf {prefix!r} is a {type(node).__name__}, expected a tensor")

    walk("", params)
    walk("", _buffers(states))
    return out


def from_state_dict(state_dict: dict[str, torch.Tensor], like: Params, states: Params | None = None
                    ) -> Any:
    """Inverse of :func:`to_state_dict`: a params tree with ``like``'s structure, dtype and device.

    With ``states`` (a model's states), returns ``(params, states)``, BatchNorm's running statistics
    read from ``state_dict`` as well (its keys must then include them); other states are kept.
    """
    flat = to_state_dict(like, states)
    if set(flat) != set(state_dict):
        raise ValueError(
            f"from_state_dict: `state_dict` keys {sorted(state_dict)} do not match the model's {sorted(flat)}"
        )

    def build(prefix: str, node: Any) -> Any:
        if isinstance(node, dict):
            return {k: build(f"{prefix}.{k}" if prefix else str(k), v) for k, v in node.items()}
        src = state_dict[prefix]
        if tuple(src.shape) != tuple(node.shape):
            raise ValueError(f"from_state_dict: {prefix!r} has shape {tuple(src.shape)}, expected {tuple(node.shape)}")
        return src.detach().to(dtype=node.dtype, device=node.device).clone()

    params = build("", like)
    if states is None:
        return params
    return params, _with_buffers(states, build("", _buffers(states)))


_SJ_SURROGATES = {"Sigmoid": _surrogate.Sigmoid, "ATan": _surrogate.ATan,
                  "PiecewiseQuadratic": _surrogate.PiecewiseQuadratic, "Rect": _surrogate.Rect}


def _convert_surrogate(sg: Any, where: str) -> _surrogate.Surrogate:
    name = type(sg).__name__
    if name not in _SJ_SURROGATES or getattr(sg, "spiking", True) is False:
        raise ValueError(f"from_torch: {where} uses surrogate {name}; supported: {sorted(_SJ_SURROGATES)}")
    return _SJ_SURROGATES[name](alpha=float(sg.alpha))


def _convert_neuron(m: Any, where: str) -> Neuron | None:
    name = type(m).__name__
    if name not in ("IFNode", "LIFNode", "OTTTLIFNode", "SLTTLIFNode"):
        return None
    common = dict(v_threshold=float(m.v_threshold),
                  v_reset=None if m.v_reset is None else float(m.v_reset),
                  detach_reset=bool(m.detach_reset),
                  surrogate=_convert_surrogate(m.surrogate_function, where))
    if name == "IFNode":
        return _neurons.IF(**common)
    cls = {"LIFNode": _neurons.LIF, "OTTTLIFNode": _neurons.OTTTLIF, "SLTTLIFNode": _neurons.SLTTLIF}[name]
    return cls(tau=float(m.tau), decay_input=bool(m.decay_input), **common)


_SUPPORTED = ("torch.nn.Linear", "torch.nn.Conv2d (zeros padding)", "torch.nn.AvgPool2d",
              "torch.nn.MaxPool2d", "torch.nn.Flatten", "torch.nn.Dropout", "torch.nn.Identity",
              "torch.nn.BatchNorm1d / BatchNorm2d (and spikingjelly's)",
              "spikingjelly IFNode / LIFNode / OTTTLIFNode / SLTTLIFNode",
              "spikingjelly layer.Dropout", "spikingjelly LinearRecurrentContainer",
              "spikingjelly WSConv2d / WSLinear (OTTT's ScaledWSConv2d / ScaledWSLinear) and Scale")

_WS_NAMES = ("WSConv2d", "ScaledWSConv2d", "WSLinear", "ScaledWSLinear")


def _convert_batch_norm(m: Any, where: str) -> Layer:
    if not m.track_running_stats:
        raise ValueError(f"from_torch: {where} {type(m).__name__} must track running statistics "
                         "(track_running_stats=True); purelearn's BatchNorm keeps them in its state")
    cls = BatchNorm1d if isinstance(m, torch.nn.BatchNorm1d) else BatchNorm2d
    momentum = None if m.momentum is None else float(m.momentum)
    return cls(m.num_features, eps=float(m.eps), momentum=momentum, affine=bool(m.affine))


def _convert_conv(m: Any, where: str) -> Layer:
    if m.padding_mode != "zeros" or isinstance(m.padding, str):
        raise ValueError(f"from_torch: {where} Conv2d must use zero padding given as ints, "
                         f"got padding={m.padding!r}, padding_mode={m.padding_mode!r}")
    args = (m.in_channels, m.out_channels, tuple(m.kernel_size), tuple(m.stride), tuple(m.padding),
            tuple(m.dilation), m.groups)
    if type(m).__name__ in _WS_NAMES:
        return WSConv2d(*args, bias=m.bias is not None, gain=m.gain is not None, eps=float(m.eps))
    return Conv2d(*args, bias=m.bias is not None)


def _convert_module(m: Any, where: str) -> Layer:
    tnn = torch.nn
    neuron = _convert_neuron(m, where)
    if neuron is not None:
        return neuron
    name = type(m).__name__
    if isinstance(m, tnn.Linear):
        if name in _WS_NAMES:
            return WSLinear(m.in_features, m.out_features, bias=m.bias is not None, gain=m.gain is not None,
                            eps=float(m.eps))
        return Linear(m.in_features, m.out_features, bias=m.bias is not None)
    if isinstance(m, tnn.Conv2d):
        return _convert_conv(m, where)
    if isinstance(m, (tnn.BatchNorm1d, tnn.BatchNorm2d)):
        return _convert_batch_norm(m, where)
    if name == "Scale" and isinstance(getattr(m, "scale", None), (int, float)):
        return Scale(float(m.scale))
    if isinstance(m, tnn.AvgPool2d):
        if m.ceil_mode or not m.count_include_pad or m.divisor_override is not None:
            raise ValueError(f"from_torch: {where} AvgPool2d must use ceil_mode=False, "
                             "count_include_pad=True and no divisor_override")
        return AvgPool2d(m.kernel_size, m.stride, m.padding)
    if isinstance(m, tnn.MaxPool2d):
        if m.ceil_mode or m.dilation not in (1, (1, 1)) or m.return_indices:
            raise ValueError(f"from_torch: {where} MaxPool2d must use ceil_mode=False, dilation=1, "
                             "return_indices=False")
        return MaxPool2d(m.kernel_size, m.stride, m.padding)
    if isinstance(m, tnn.Flatten):
        return Flatten(m.start_dim, m.end_dim)
    if isinstance(m, tnn.Dropout) or name == "Dropout":
        return Dropout(float(m.p))
    if isinstance(m, tnn.Identity):
        return Identity()
    if name == "LinearRecurrentContainer":
        inner = _convert_neuron(m.sub_module, f"{where}.sub_module")
        if inner is None:
            raise ValueError(f"from_torch: {where} LinearRecurrentContainer must wrap a spikingjelly "
                             f"neuron, got {type(m.sub_module).__name__}")
        rc = m.rc
        return Recurrent(inner, rc.in_features - rc.out_features, rc.out_features, bias=rc.bias is not None)
    raise ValueError(f"from_torch: {where} is a {name}, which is not supported; supported: {', '.join(_SUPPORTED)}")


def _check_ottt_layout(module: Any, layers: list[Layer]) -> None:
    """Refuse layouts where SpikingJelly's OTTTSequential would step a plain neuron twice per step."""
    if type(module).__name__ != "OTTTSequential":
        return
    source = None
    for i, layer in enumerate(layers):
        if isinstance(layer, _neurons.OTTTLIF):
            source = i
        elif isinstance(layer, Neuron) and source is not None:
            raise ValueError(
                f"from_torch: layer {i} ({type(layer).__name__}) receives OTTTLIF {source}'s spike+trace "
                "through parameter-free layers only; SpikingJelly's OTTTSequential applies such a neuron "
                "to both spike and trace, stepping it twice per time step. Put a parametric layer "
                "(Linear/Conv2d) before it, or use OTTTLIF."
            )
        elif layer.has_params:
            source = None


def from_torch(module: torch.nn.Module, x_example: torch.Tensor) -> tuple[Sequential, Params, Params]:
    """Convert a ``torch.nn.Sequential`` (or SpikingJelly ``OTTTSequential``) into purelearn.

    Returns ``(model, params, states)``: the same architecture, a copy of the module's weights in
    ``x_example``'s dtype and device, and states: fresh neuron memories, BatchNorm's running statistics
    copied from the module's buffers (the layers train; ``model.inference()`` evaluates, whatever
    the module's ``training`` flag). Neuron hyperparameters (tau, decay_input,
    v_threshold, v_reset, detach_reset, surrogate and its alpha) are carried over. Use
    ``to_state_dict(params, states)`` to write trained weights and statistics back (``module.load_state_dict``).
    """
    if not isinstance(module, torch.nn.Sequential):
        raise TypeError(f"from_torch: `module` must be a torch.nn.Sequential, got {type(module).__name__}")
    x_example = tensor_input(x_example, "from_torch")
    layers = [_convert_module(m, f"layer {i}") for i, m in enumerate(module)]
    _check_ottt_layout(module, layers)
    model = Sequential(*layers)
    template, fresh = model.init(None, x_example)
    sd = {k: v for k, v in module.state_dict().items() if k in to_state_dict(template, fresh)}
    params, states = from_state_dict(sd, template, fresh)
    return model, params, states
