"""NIR exchange: :func:`to_nir` and :func:`from_nir` (the ``nir`` package, ``pip install 'purelearn[nir]'``).

NIR (Pedersen et al., Nat. Commun. 2024) describes a spiking network as a graph of continuous-time
nodes; each library discretises it with its own time step ``dt`` (seconds). purelearn follows
SpikingJelly 2.0's ``nir_exchange`` (forward Euler, one step of ``dt`` per time step), so a graph
written by either is read by the other spike for spike::

    NIR LIF     tau·dv/dt = (v_leak − v) + r·I          Euler:  v ← v + (dt/tau)·(v_leak − v + r·I)
    purelearn   LIF(tau, decay_input, v_threshold, v_reset)
                tau_nir = tau·dt,  r = 1 (decay_input) or tau (not),  v_leak = v_reset
    NIR IF      dv/dt = r·I                              purelearn IF: r = 1/dt
    NIR LI      tau·dv/dt = (v_leak − v) + r·I           purelearn LI (v ← α·v + (1−α)·x, α = exp(−1/tau)):
                tau_nir = dt/(1 − α),  r = 1,  v_leak = 0

A neuron fires when ``v ≥ v_threshold`` (SpikingJelly's Heaviside; NIR's text says ``>``, which
differs only at equality).

Layers: ``Linear`` ↔ ``nir.Affine`` (``nir.Linear`` without bias), ``Conv2d`` ↔ ``nir.Conv2d``
(a bias-free Conv2d is written with a zero bias, as SpikingJelly does, and read back bias-free),
``AvgPool2d`` ↔ ``nir.AvgPool2d`` (``nir.SumPool2d`` is read as ``AvgPool2d`` then
``Scale(kh·kw)``), ``Flatten`` ↔ ``nir.Flatten`` (NIR's dims exclude the batch: ``start_dim − 1``),
``Scale`` ↔ ``nir.Scale``, ``Recurrent`` ↔ a cycle: ``Affine`` (input weights and bias) → neuron
→ ``Linear`` (recurrent weights) → the same neuron, the recurrent input being the neuron's output one
step earlier (NIR's way, and nirtorch's). ``Dropout`` and ``Identity`` are the identity at inference
and are left out; ``WSLinear`` / ``WSConv2d`` are written with the standardised weight they apply.

What NIR 1.0 cannot express is refused with a ``ValueError`` naming the layer and the reason: a soft
reset (``v_reset=None``: NIR neurons reset to ``v_reset``), ALIF's adaptive threshold, max
pooling, BatchNorm (fold it into the previous layer first), branches (``Residual``), a Flatten over
the batch. A node ``from_nir`` cannot read is refused with its name and the supported set.

Training-only choices are not part of NIR's dynamics: the surrogate gradient, ``detach_reset``, and
whether a LIF is SLTT's or OTTT's (they differ from ``LIF`` only in the backward pass). ``to_nir``
keeps them in each node's ``metadata["purelearn"]``, which other libraries ignore; ``from_nir``
restores them from there, and otherwise builds ``LIF`` / ``IF`` / ``LI`` with purelearn's defaults
(``Sigmoid`` surrogate, ``detach_reset=False``). A node ``from_nir`` reads with an input gain ``r``
other than the convention above (snnTorch writes ``r = tau/dt``, which is ``decay_input=False`` here;
other gains) gets a ``Scale(gain)`` layer before its neuron.

Example::

    >>> import torch
    >>> from purelearn import nn, neurons
    >>> from purelearn.interop import from_nir, to_nir
    >>> model = nn.Sequential(nn.Linear(3, 2), neurons.LIF(tau=2.0))
    >>> params, _ = model.init(torch.Generator().manual_seed(0), torch.zeros(1, 3))
    >>> graph = to_nir(model, params, torch.zeros(1, 3))
    >>> sorted(graph.nodes)
    ['0', '1', 'input', 'output']
    >>> model2, params2, states2 = from_nir(graph)
    >>> model2 == model and torch.equal(params2["0"]["weight"], params["0"]["weight"])
    True
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import torch

from .. import neurons as _neurons
from .. import surrogate as _surrogate
from .. import validate
from ..layer import Layer, Params, tensor_input
from ..nn.dropout import Dropout
from ..nn.linear import Conv2d, Linear
from ..nn.normalization import BatchNorm1d, BatchNorm2d, Scale
from ..nn.pooling import AvgPool2d, MaxPool2d
from ..nn.recurrent import Recurrent
from ..nn.residual import Residual
from ..nn.sequential import Sequential
from ..nn.shape import Flatten, Identity

__all__ = ["to_nir", "from_nir"]

#: What :func:`to_nir` writes (anything else is refused, naming the layer).
EXPORTED = ("Linear / WSLinear", "Conv2d / WSConv2d", "AvgPool2d", "Flatten (start_dim >= 1)", "Scale",
            "IF / LIF / SLTTLIF / OTTTLIF with a hard reset (v_reset a number)", "LI",
            "Recurrent around IF / LIF / LI", "Dropout and Identity (left out: the identity at inference)")
#: The NIR nodes :func:`from_nir` reads.
IMPORTED = ("Input", "Output", "Affine", "Linear", "Conv2d", "AvgPool2d", "SumPool2d", "Flatten", "Scale",
            "IF", "LIF", "LI", "NIRGraph (a subgraph, flattened)")


def _nir() -> Any:
    try:
        import nir
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ImportError("purelearn.interop.nir needs the `nir` package: pip install 'purelearn[nir]'") from e
    return nir


def _dt(owner: str, dt: Any) -> float:
    return validate.number(owner, "dt", dt, low=0.0, low_open=True, reciprocal=True, tensors=False,
                           kinds="a Python number (seconds per time step)")


# ============================================================================= export


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def _full(value: Any, shape: tuple[int, ...], where: str, name: str) -> np.ndarray:
    """A hyperparameter (number or tensor) as a float64 array of the neuron's shape."""
    array = _numpy(value).astype(np.float64) if isinstance(value, torch.Tensor) else np.asarray(float(value))
    try:
        return np.broadcast_to(array, shape).astype(np.float64)
    except ValueError:
        raise ValueError(f"to_nir: {where}: `{name}` of shape {array.shape} does not broadcast to the "
                         f"neuron shape {shape}") from None


def _surrogate_name(sg: _surrogate.Surrogate) -> str | None:
    return next((name for name, cls in _surrogate.NAMES.items() if type(sg) is cls), None)


def _neuron_metadata(layer: _neurons.Neuron, tau: Any) -> dict[str, Any]:
    """The training-only choices NIR does not carry, for :func:`from_nir` to restore."""
    meta: dict[str, Any] = {"layer": type(layer).__name__}
    if isinstance(tau, torch.Tensor):
        meta["tau"] = _numpy(tau).astype(np.float64)
    elif tau is not None:
        meta["tau"] = float(tau)
    if hasattr(layer, "detach_reset"):
        meta["detach_reset"] = bool(layer.detach_reset)
    sg = getattr(layer, "surrogate", None)
    if sg is not None and _surrogate_name(sg) is not None and not isinstance(sg.alpha, torch.Tensor):
        meta["surrogate"] = _surrogate_name(sg)
        meta["surrogate_alpha"] = float(sg.alpha)
    if isinstance(layer, _neurons.LI):
        meta["learn_tau"] = bool(layer.learn_tau)
        if layer.learn_tau and not isinstance(layer.tau, torch.Tensor):
            meta["tau_init"] = float(layer.tau)  # the hyperparameter; "tau" holds the trained params
    return {"purelearn": meta}


def _export_neuron(nir: Any, layer: Layer, params: Any, shape: tuple[int, ...], where: str, dt: float) -> Any:
    name = type(layer).__name__
    if isinstance(layer, _neurons.ALIF):
        raise ValueError(f"to_nir: {where} ({name}) has an adaptive threshold (beta·b_t, tau_adp) and resets by "
                         "subtracting it; NIR 1.0 has no node for either")
    if isinstance(layer, _neurons.LI):
        tau = params["tau"] if layer.learn_tau else layer.tau
        alpha = np.exp(-1.0 / _full(tau, shape, where, "tau"))
        return nir.LI(tau=dt / (1.0 - alpha), r=np.ones(shape), v_leak=np.zeros(shape),
                      metadata=_neuron_metadata(layer, tau))
    if not isinstance(layer, (_neurons.IF, _neurons.LIF)):
        raise ValueError(f"to_nir: {where} is a {name}, which NIR cannot express; supported: {', '.join(EXPORTED)}")
    if layer.v_reset is None:
        raise ValueError(f"to_nir: {where} ({name}) uses a soft reset (v_reset=None: V = H − S·V_th); NIR 1.0's "
                         "IF and LIF reset to v_reset and cannot express it. Use a hard reset (v_reset=0.0)")
    v_threshold = _full(layer.v_threshold, shape, where, "v_threshold")
    v_reset = np.full(shape, float(layer.v_reset))
    if isinstance(layer, _neurons.IF):
        return nir.IF(r=np.full(shape, 1.0 / dt), v_threshold=v_threshold, v_reset=v_reset,
                      metadata=_neuron_metadata(layer, None))
    tau = _full(layer.tau, shape, where, "tau")
    return nir.LIF(tau=tau * dt, r=np.ones(shape) if layer.decay_input else tau, v_leak=v_reset.copy(),
                   v_threshold=v_threshold, v_reset=v_reset, metadata=_neuron_metadata(layer, layer.tau))


def _affine(nir: Any, weight: torch.Tensor, bias: torch.Tensor | None) -> Any:
    return nir.Linear(weight=_numpy(weight)) if bias is None else nir.Affine(weight=_numpy(weight), bias=_numpy(bias))


def _export_layer(nir: Any, layer: Layer, params: Any, shape: tuple[int, ...], key: str, dt: float
                  ) -> tuple[dict[str, Any], list[tuple[str, str]], str, str] | None:
    """``(nodes, internal edges, entry node, exit node)`` for one layer, or ``None`` to leave it out."""
    where = f"layer {key}"
    name = type(layer).__name__
    if isinstance(layer, (Dropout, Identity)):
        return None
    if isinstance(layer, Linear):
        node = _affine(nir, layer.effective_weight(params), params.get("bias"))
    elif isinstance(layer, Conv2d):
        weight = _numpy(layer.effective_weight(params))
        bias = _numpy(params["bias"]) if layer.bias else np.zeros(weight.shape[0], dtype=weight.dtype)
        node = nir.Conv2d(input_shape=tuple(shape[1:]), weight=weight, stride=layer.stride, padding=layer.padding,
                          dilation=layer.dilation, groups=layer.groups, bias=bias,
                          metadata={"purelearn": {"layer": name, "bias": bool(layer.bias)}})
    elif isinstance(layer, AvgPool2d):
        node = nir.AvgPool2d(kernel_size=np.array(layer.kernel_size), stride=np.array(layer.stride),
                             padding=np.array(layer.padding))
    elif isinstance(layer, Flatten):
        start, end = (d if d < 0 else d - 1 for d in (layer.start_dim, layer.end_dim))
        if layer.start_dim == 0 or layer.start_dim < -len(shape):
            raise ValueError(f"to_nir: {where} (Flatten) flattens the batch axis (start_dim={layer.start_dim}); "
                             "NIR shapes have no batch axis")
        node = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=start, end_dim=end)
    elif isinstance(layer, Scale):
        node = nir.Scale(scale=np.full(shape, float(layer.scale)))
    elif isinstance(layer, Recurrent):
        rc = params["rc"]
        w_in, w_rec = rc["weight"][:, :layer.in_features], rc["weight"][:, layer.in_features:]
        neuron = _export_neuron(nir, layer.neuron, params.get("neuron"), (layer.out_features,),
                                f"{where} (Recurrent), its neuron", dt)
        names = (f"{key}.w_in", f"{key}.neuron", f"{key}.w_rec")
        nodes = dict(zip(names, (_affine(nir, w_in, rc.get("bias")), neuron, nir.Linear(weight=_numpy(w_rec))),
                         strict=True))
        return nodes, [(names[0], names[1]), (names[1], names[2]), (names[2], names[1])], names[0], names[1]
    elif isinstance(layer, _neurons.Neuron):
        node = _export_neuron(nir, layer, params, shape, where, dt)
    elif isinstance(layer, MaxPool2d):
        raise ValueError(f"to_nir: {where} (MaxPool2d): NIR 1.0 has no max pooling; use AvgPool2d")
    elif isinstance(layer, (BatchNorm1d, BatchNorm2d)):
        raise ValueError(f"to_nir: {where} ({name}): NIR 1.0 has no batch normalisation; fold it into the "
                         "previous Linear/Conv2d's weight and bias first")
    elif isinstance(layer, Residual):
        raise ValueError(f"to_nir: {where} (Residual) branches; to_nir writes chains of layers "
                         "(and nn.Recurrent's cycles)")
    else:
        raise ValueError(f"to_nir: {where} is a {name}, which NIR cannot express; supported: {', '.join(EXPORTED)}")
    return {key: node}, [], key, key


def to_nir(model: Sequential, params: Params, example_x: torch.Tensor, dt: float = 1e-4) -> Any:
    """``model`` with ``params`` as a ``nir.NIRGraph`` (write it with ``nir.write(path, graph)``).

    ``example_x`` [N, ...] (one time step) fixes the shapes; ``dt`` is the time step in seconds that
    turns purelearn's per-step constants into NIR's continuous ones (``tau_nir = tau·dt``, as
    SpikingJelly). Nodes are named by layer index (``"0"``, ``"1"``; a ``Recurrent`` layer ``k`` is
    ``"k.w_in"``, ``"k.neuron"``, ``"k.w_rec"``), between ``"input"`` and ``"output"``. Weights keep
    their dtype; neuron constants are float64. See the module docstring for the mapping and what is
    refused.
    """
    nir = _nir()
    dt = _dt("to_nir", dt)
    if not isinstance(model, Sequential):
        raise TypeError(f"to_nir: `model` must be a purelearn.nn.Sequential, got {type(model).__name__}")
    x = tensor_input(example_x, "to_nir")
    model.check_params(params)
    states = model.init_states(x)
    nodes: dict[str, Any] = {"input": nir.Input(input_type={"input": np.array(x.shape[1:])})}
    edges: list[tuple[str, str]] = []
    last = "input"
    h = x
    with torch.no_grad():
        for i, layer in enumerate(model.layers):
            key = str(i)
            exported = _export_layer(nir, layer, params.get(key), tuple(h.shape[1:]), key, dt)
            h, _ = layer.inference().apply(params.get(key), states.get(key), h)
            if exported is None:
                continue
            new_nodes, internal, entry, exit_ = exported
            nodes.update(new_nodes)
            edges += [(last, entry), *internal]
            last = exit_
    nodes["output"] = nir.Output(output_type={"output": np.array(h.shape[1:])})
    edges.append((last, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges)


# ============================================================================= import

_PASS = object()  # a subgraph's own input/output, spliced out when subgraphs are flattened


def _flatten_graph(nir: Any, graph: Any, prefix: str = "") -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Nodes and edges with every subgraph ``S`` replaced by its nodes (``"S.name"``), its own Input and
    Output nodes spliced out."""
    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    entry: dict[str, str] = {}
    exit_: dict[str, str] = {}
    for name, node in graph.nodes.items():
        full = prefix + str(name)
        if isinstance(node, nir.NIRGraph):
            sub_nodes, sub_edges = _flatten_graph(nir, node, full + ".")
            ins = [n for n in node.nodes if isinstance(node.nodes[n], nir.Input)]
            outs = [n for n in node.nodes if isinstance(node.nodes[n], nir.Output)]
            if len(ins) != 1 or len(outs) != 1:
                raise ValueError(f"from_nir: subgraph {full!r} must have one Input and one Output node, "
                                 f"got {len(ins)} and {len(outs)}")
            for n in (ins[0], outs[0]):
                sub_nodes[f"{full}.{n}"] = _PASS
            nodes.update(sub_nodes)
            edges += sub_edges
            entry[full], exit_[full] = f"{full}.{ins[0]}", f"{full}.{outs[0]}"
        else:
            nodes[full] = node
    edges += [(exit_.get(prefix + str(a), prefix + str(a)), entry.get(prefix + str(b), prefix + str(b)))
              for a, b in graph.edges]
    if prefix:
        return nodes, edges
    for name in [n for n, node in nodes.items() if node is _PASS]:  # splice the pass-through nodes out
        into = [a for a, b in edges if b == name]
        out = [b for a, b in edges if a == name]
        edges = [e for e in edges if name not in e] + [(a, b) for a in into for b in out]
        del nodes[name]
    return nodes, list(dict.fromkeys(edges))


def _chain(nir: Any, nodes: dict[str, Any], edges: list[tuple[str, str]]
           ) -> tuple[str, list[tuple[str, str | None]]]:
    """The input node and the path to the output: ``(node, its recurrent feedback node or None)``."""
    preds: dict[str, list[str]] = {n: [] for n in nodes}
    succs: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        if a not in nodes or b not in nodes:
            raise ValueError(f"from_nir: edge ({a!r}, {b!r}) names a node the graph does not have")
        succs[a].append(b)
        preds[b].append(a)
    inputs = [n for n, node in nodes.items() if isinstance(node, nir.Input)]
    outputs = [n for n, node in nodes.items() if isinstance(node, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(f"from_nir: the graph must have one Input and one Output node, got inputs {inputs} "
                         f"and outputs {outputs}")

    def feedback(n: str) -> list[str]:
        return [r for r in preds[n] if r != n and preds[r] == [n] and succs[r] == [n]
                and isinstance(nodes[r], (nir.Linear, nir.Affine))]

    shape_rule = ("purelearn reads chains (nn.Sequential) whose only cycles are recurrent weights around a "
                  "neuron (an Affine/Linear node from the neuron back into it: nn.Recurrent)")
    cur, path, seen = inputs[0], [], {inputs[0]}
    while True:
        nxt = [s for s in succs[cur] if s not in feedback(cur)]
        if len(nxt) != 1:
            raise ValueError(f"from_nir: node {cur!r} feeds {nxt}; {shape_rule}")
        nxt = nxt[0]
        fb = feedback(nxt)
        others = [p for p in preds[nxt] if p not in fb]
        if nxt in seen or others != [cur] or len(fb) > 1:
            raise ValueError(f"from_nir: node {nxt!r} ({type(nodes[nxt]).__name__}) takes input from "
                             f"{preds[nxt]}; {shape_rule}")
        if nxt == outputs[0]:
            break
        path.append((nxt, fb[0] if fb else None))
        seen.update([nxt, *fb])
        cur = nxt
    stray = sorted(set(nodes) - seen - {outputs[0]})
    if stray:
        raise ValueError(f"from_nir: nodes {stray} are not on the path from the input to the output; {shape_rule}")
    return inputs[0], path


def _uniform(value: Any, where: str, field: str) -> float:
    array = np.asarray(value, dtype=np.float64)
    if array.size == 0 or not np.all(array == array.flat[0]):
        raise ValueError(f"from_nir: node {where}: `{field}` must be the same for every neuron")
    return float(array.flat[0])


def _close(a: float, b: float) -> bool:
    return math.isfinite(a) and math.isfinite(b) and math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)


def _meta(node: Any) -> dict[str, Any]:
    meta = getattr(node, "metadata", None) or {}
    meta = meta.get("purelearn", {}) if isinstance(meta, dict) else {}
    return {k: (v.decode() if isinstance(v, bytes) else v.item() if isinstance(v, np.generic) else v)
            for k, v in meta.items()} if isinstance(meta, dict) else {}


def _hyper(value: Any, dtype: torch.dtype) -> Any:
    """A neuron constant: a float when uniform, else a tensor of the node's shape."""
    array = np.asarray(value, dtype=np.float64)
    if array.size and np.all(array == array.flat[0]):
        return float(array.flat[0])
    return torch.as_tensor(array, dtype=dtype)


def _from_meta(meta: dict[str, Any], key: str, computed: Any, dtype: torch.dtype) -> Any:
    """purelearn's exact value from the metadata where it agrees with what the NIR fields give."""
    if key not in meta:
        return computed
    exact = np.asarray(meta[key], dtype=np.float64)
    got = computed.cpu().numpy() if isinstance(computed, torch.Tensor) else np.asarray(computed)
    if exact.shape not in ((), got.shape) or not np.allclose(np.broadcast_to(exact, got.shape), got,
                                                             rtol=1e-6, atol=1e-12):
        return computed
    return float(exact) if exact.ndim == 0 else torch.as_tensor(exact, dtype=dtype)


def _training_options(meta: dict[str, Any], kinds: tuple[str, ...]) -> tuple[type | None, dict[str, Any]]:
    cls = getattr(_neurons, meta["layer"]) if meta.get("layer") in kinds else None
    options: dict[str, Any] = {}
    if "detach_reset" in meta:
        options["detach_reset"] = bool(meta["detach_reset"])
    if meta.get("surrogate") in _surrogate.NAMES and "surrogate_alpha" in meta:
        options["surrogate"] = _surrogate.get(meta["surrogate"], float(meta["surrogate_alpha"]))
    return cls, options


def _import_neuron(nir: Any, name: str, node: Any, dt: float, dtype: torch.dtype
                   ) -> tuple[float, _neurons.Neuron, Params | None]:
    """``(input gain, neuron, params)``; a gain other than 1 becomes a ``Scale`` before the neuron."""
    where = f"{name!r} ({type(node).__name__})"
    meta = _meta(node)
    if isinstance(node, nir.IF):
        cls, options = _training_options(meta, ("IF",))
        gain = _uniform(node.r, where, "r") * dt
        neuron = (cls or _neurons.IF)(v_threshold=_hyper(node.v_threshold, dtype),
                                      v_reset=_uniform(node.v_reset, where, "v_reset"), **options)
        return gain, neuron, None
    if isinstance(node, nir.LIF):
        cls, options = _training_options(meta, ("LIF", "SLTTLIF", "OTTTLIF"))
        v_reset = _uniform(node.v_reset, where, "v_reset")
        if not np.allclose(np.asarray(node.v_leak, dtype=np.float64), v_reset, rtol=1e-6, atol=1e-12):
            raise ValueError(f"from_nir: node {where}: `v_leak` must equal `v_reset` (purelearn's and "
                             "SpikingJelly's LIF leak towards the reset potential)")
        tau_steps = np.asarray(node.tau, dtype=np.float64) / dt
        if not np.all(tau_steps > 1.0):
            raise ValueError(f"from_nir: node {where}: tau/dt must be > 1 (a LIF that keeps part of its "
                             f"membrane), got tau = {np.min(node.tau)} with dt = {dt}")
        tau = _from_meta(meta, "tau", _hyper(tau_steps, dtype), dtype)
        r = np.asarray(node.r, dtype=np.float64)
        decay_input = not (np.allclose(r, tau_steps, rtol=1e-6, atol=1e-12)
                           and not np.allclose(r, 1.0, rtol=1e-6, atol=1e-12))
        gain = _uniform(r, where, "r") if decay_input else 1.0
        neuron = (cls or _neurons.LIF)(tau=tau, decay_input=decay_input,
                                       v_threshold=_hyper(node.v_threshold, dtype),
                                       v_reset=v_reset, **options)
        return gain, neuron, None
    if isinstance(node, nir.LI):
        if not np.allclose(np.asarray(node.v_leak, dtype=np.float64), 0.0, atol=1e-12):
            raise ValueError(f"from_nir: node {where}: `v_leak` must be 0 (purelearn's LI leaks towards 0)")
        alpha = 1.0 - dt / np.asarray(node.tau, dtype=np.float64)
        if not np.all((alpha > 0) & (alpha < 1)):
            raise ValueError(f"from_nir: node {where}: tau must be > dt (a leak of 1 − dt/tau in (0, 1) per step)")
        tau = _from_meta(meta, "tau", _hyper(-1.0 / np.log(alpha), dtype), dtype)
        gain = _uniform(node.r, where, "r")
        if meta.get("learn_tau"):
            t = tau if isinstance(tau, torch.Tensor) else torch.full(np.shape(node.tau)[-1:], tau, dtype=dtype)
            tau_init = float(meta.get("tau_init", t.flatten()[0]))
            return gain, _neurons.LI(tau=tau_init, learn_tau=True), {"tau": t.to(dtype)}
        return gain, _neurons.LI(tau=tau), None
    raise AssertionError(type(node))  # pragma: no cover - callers check the node type


def _array(value: Any, dtype: torch.dtype) -> torch.Tensor:
    return torch.as_tensor(np.array(value), dtype=dtype)


def _ints(value: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in np.atleast_1d(np.asarray(value)))


def _pair(value: Any) -> tuple[int, int]:
    v = _ints(value)
    return (v[0], v[0]) if len(v) == 1 else (v[0], v[1])


def _import_conv(name: str, node: Any, dtype: torch.dtype) -> tuple[Layer, Params]:
    weight = np.asarray(node.weight)
    groups = int(np.asarray(node.groups))
    kernel, dilation, stride = tuple(weight.shape[2:]), _pair(node.dilation), _pair(node.stride)
    padding = node.padding
    if isinstance(padding, (str, bytes)):
        padding = padding.decode() if isinstance(padding, bytes) else padding
        total = [d * (k - 1) for d, k in zip(dilation, kernel, strict=True)]
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same" and stride == (1, 1) and all(t % 2 == 0 for t in total):
            padding = (total[0] // 2, total[1] // 2)
        else:
            raise ValueError(f"from_nir: node {name!r} (Conv2d): padding {padding!r} with stride {stride} and "
                             f"kernel {kernel} is not symmetric zero padding, which Conv2d needs")
    bias = np.asarray(node.bias)
    keep_bias = bool(_meta(node).get("bias", bool(np.any(bias != 0))))
    layer = Conv2d(weight.shape[1] * groups, weight.shape[0], kernel, stride, _pair(padding), dilation, groups,
                   bias=keep_bias)
    params = {"weight": _array(weight, dtype)}
    if keep_bias:
        params["bias"] = _array(bias, dtype)
    return layer, params


def _import_node(nir: Any, name: str, node: Any, dt: float, dtype: torch.dtype) -> list[tuple[Layer, Params | None]]:
    where = f"{name!r} ({type(node).__name__})"
    if isinstance(node, (nir.Affine, nir.Linear)):
        weight = np.asarray(node.weight)
        if weight.ndim != 2:
            raise ValueError(f"from_nir: node {where}: weight must be 2-d [out, in], got shape {weight.shape}")
        has_bias = isinstance(node, nir.Affine)
        params = {"weight": _array(weight, dtype)}
        if has_bias:
            params["bias"] = _array(node.bias, dtype)
        return [(Linear(weight.shape[1], weight.shape[0], bias=has_bias), params)]
    if isinstance(node, nir.Conv2d):
        return [_import_conv(name, node, dtype)]
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        kernel = _pair(node.kernel_size)
        pool = AvgPool2d(kernel, _pair(node.stride), _pair(node.padding))
        if isinstance(node, nir.AvgPool2d):
            return [(pool, None)]
        return [(pool, None), (Scale(float(kernel[0] * kernel[1])), None)]
    if isinstance(node, nir.Flatten):
        start, end = (int(d) + 1 if int(d) >= 0 else int(d) for d in (node.start_dim, node.end_dim))
        return [(Flatten(start, end), None)]
    if isinstance(node, nir.Scale):
        return [(Scale(_uniform(node.scale, where, "scale")), None)]
    if isinstance(node, (nir.IF, nir.LIF, nir.LI)):
        gain, neuron, params = _import_neuron(nir, name, node, dt, dtype)
        layers: list[tuple[Layer, Params | None]] = [] if _close(gain, 1.0) else [(Scale(gain), None)]
        return [*layers, (neuron, params)]
    raise ValueError(f"from_nir: node {where} is not supported; supported nodes: {', '.join(IMPORTED)}")


def _import_recurrent(nir: Any, w_in: tuple[str, Any], neuron: tuple[str, Any], w_rec: tuple[str, Any], dt: float,
                      dtype: torch.dtype) -> tuple[Layer, Params]:
    (in_name, in_node), (name, node), (rec_name, rec_node) = w_in, neuron, w_rec
    if not isinstance(node, (nir.IF, nir.LIF, nir.LI)):
        raise ValueError(f"from_nir: node {name!r} ({type(node).__name__}) has recurrent weights {rec_name!r}; "
                         "purelearn reads recurrence around IF, LIF or LI neurons (nn.Recurrent)")
    if not isinstance(in_node, (nir.Affine, nir.Linear)):
        raise ValueError(f"from_nir: recurrent neuron {name!r} is fed by {in_name!r} ({type(in_node).__name__}); "
                         "nn.Recurrent needs an Affine/Linear node before its neuron")
    gain, cell, cell_params = _import_neuron(nir, name, node, dt, dtype)
    if not _close(gain, 1.0):
        raise ValueError(f"from_nir: recurrent neuron {name!r} has an input gain r = {gain} other than purelearn's "
                         "(nn.Recurrent has no Scale inside)")
    w_x, w_y = np.asarray(in_node.weight), np.asarray(rec_node.weight)
    out, n_in = w_x.shape
    if w_y.shape != (out, out):
        raise ValueError(f"from_nir: recurrent weights {rec_name!r} must have shape {(out, out)}, got {w_y.shape}")
    biases = [np.asarray(n.bias) for n in (in_node, rec_node) if isinstance(n, nir.Affine)]
    params: Params = {"rc": {"weight": _array(np.concatenate([w_x, w_y], axis=1), dtype)}}
    if biases:
        params["rc"]["bias"] = _array(sum(biases), dtype)
    if cell_params is not None:
        params["neuron"] = cell_params
    return Recurrent(cell, n_in, out, bias=bool(biases)), params


def _weights_dtype(nodes: dict[str, Any]) -> torch.dtype:
    for node in nodes.values():
        weight = getattr(node, "weight", None)
        if weight is not None and np.issubdtype(np.asarray(weight).dtype, np.floating):
            return torch.from_numpy(np.zeros(0, dtype=np.asarray(weight).dtype)).dtype
    return torch.get_default_dtype()


def from_nir(graph_or_path: Any, dt: float = 1e-4, *, dtype: torch.dtype | None = None
             ) -> tuple[Sequential, Params, Params]:
    """A ``nir.NIRGraph`` (or a ``.nir`` file's path, read with ``nir.read``) as ``(model, params, states)``.

    ``dt`` is the time step in seconds (SpikingJelly's convention, the inverse of :func:`to_nir`);
    ``dtype`` that of params and states (default: the graph's weights', float32 usually). The graph
    must be a chain from its Input to its Output node whose only cycles are recurrent weights around
    a neuron (read as ``nn.Recurrent``); subgraphs are flattened. States are fresh. See the module
    docstring for the mapping.
    """
    nir = _nir()
    dt = _dt("from_nir", dt)
    if isinstance(graph_or_path, (str, os.PathLike)):
        graph_or_path = nir.read(graph_or_path)
    if not isinstance(graph_or_path, nir.NIRGraph):
        raise TypeError("from_nir: `graph_or_path` must be a nir.NIRGraph or a path, "
                        f"got {type(graph_or_path).__name__}")
    nodes, edges = _flatten_graph(nir, graph_or_path)
    if dtype is None:
        dtype = _weights_dtype(nodes)
    input_name, path = _chain(nir, nodes, edges)
    feedback = {n: fb for n, fb in path if fb is not None}
    layers: list[tuple[Layer, Params | None]] = []
    i = 0
    while i < len(path):
        name = path[i][0]
        if i + 1 < len(path) and path[i + 1][0] in feedback:
            nxt, rec = path[i + 1][0], feedback[path[i + 1][0]]
            layers.append(_import_recurrent(nir, (name, nodes[name]), (nxt, nodes[nxt]), (rec, nodes[rec]), dt, dtype))
            i += 2
            continue
        if name in feedback:
            raise ValueError(f"from_nir: node {name!r} ({type(nodes[name]).__name__}) has recurrent weights "
                             f"{feedback[name]!r} but is not fed by an Affine/Linear node (nn.Recurrent needs one)")
        layers += _import_node(nir, name, nodes[name], dt, dtype)
        i += 1
    if not layers:
        raise ValueError("from_nir: the graph has no nodes between its Input and Output")
    shape = nodes[input_name].input_type.get("input")
    if shape is None:
        raise ValueError(f"from_nir: the Input node {input_name!r} has no shape")
    model = Sequential(*(layer for layer, _ in layers))
    x = torch.zeros((1, *_ints(shape)), dtype=dtype)
    _, states = model.init(None, x)
    params = {str(k): p for k, (layer, p) in enumerate(layers) if layer.has_params}
    model.check_params(params)
    model.apply(params, model.init_states(x), x)  # every weight fits the shapes that reach it
    return model, params, states
