"""NIR exchange (purelearn.interop.nir): exact round trips, and spike for spike with SpikingJelly 2.0.0's
own ``nir_exchange`` in both directions, dense, convolutional and recurrent, through ``.nir`` files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from purelearn import neurons, nn, online, optim, surrogate, tree
from purelearn.interop import from_nir, from_torch, to_nir, to_state_dict

nir = pytest.importorskip("nir")


def _sj_nir():
    """SpikingJelly's NIR exchange (it needs nirtorch, installed by the test extra)."""
    pytest.importorskip("nirtorch")
    from spikingjelly.activation_based import functional, layer, neuron
    from spikingjelly.activation_based.nir_exchange import export_to_nir, import_from_nir
    return functional, layer, neuron, export_to_nir, import_from_nir


def _run(model: nn.Sequential, params, states, xs: torch.Tensor) -> torch.Tensor:
    """Every step's output, stacked [T, N, ...]."""
    out = []
    with torch.no_grad():
        for x in xs:
            y, states = model.apply(params, states, x)
            out.append(y)
    return torch.stack(out)


def _spiking(layer) -> bool:
    return isinstance(layer, (neurons.IF, neurons.LIF, nn.Recurrent))


def _layer_outputs(model: nn.Sequential, params, states, xs: torch.Tensor, start: int, stop: int,
                   h: torch.Tensor) -> list[torch.Tensor]:
    """The outputs [T, N, ...] of layers ``start..stop-1``, fed ``h`` (layer ``start``'s inputs)."""
    outs = []
    for i in range(start, stop):
        sub = nn.Sequential(model.layers[i])
        h = _run(sub, {"0": params[str(i)]} if str(i) in params else {},
                 {"0": states[str(i)]} if str(i) in states else {}, h)
        outs.append(h)
    return outs


def _rates(model: nn.Sequential, params, states, xs: torch.Tensor) -> list[float]:
    """The firing rate of every spiking layer over the sequence."""
    outs = _layer_outputs(model, params, states, xs, 0, len(model), xs)
    return [h.mean().item() for layer, h in zip(model.layers, outs, strict=True) if _spiking(layer)]


def _assert_meaningful(rates: list[float]) -> None:
    """The comparison means something only where neurons fire neither never nor always."""
    assert rates and all(0.05 <= r <= 0.5 for r in rates), rates


def _calibrated(model: nn.Sequential, params, states, xs: torch.Tensor, target: float = 0.2):
    """``params`` with each weighted layer scaled (a bisection on the log of the factor) so that the
    spiking layer after it fires about ``target`` of the time."""
    params = {k: dict(v) for k, v in params.items()}
    h = xs
    for i in range(len(model)):
        spiking = next((j for j in range(i, len(model)) if _spiking(model.layers[j])), None)
        if str(i) in params and spiking is not None:
            base = params[str(i)]
            lo, hi = -5.0, 5.0
            for _ in range(14):
                mid = (lo + hi) / 2
                params[str(i)] = tree.map(lambda w, m=mid: w * float(np.exp(m)), base)
                rate = _layer_outputs(model, params, states, xs, i, spiking + 1, h)[-1].mean().item()
                lo, hi = (mid, hi) if rate < target else (lo, mid)
        h = _layer_outputs(model, params, states, xs, i, i + 1, h)[0]
    return params


def _same(a, b) -> bool:
    la, lb = tree.leaves(a), tree.leaves(b)
    return len(la) == len(lb) and all(x.dtype == y.dtype and torch.equal(x, y) for x, y in zip(la, lb, strict=True))


def _dense():
    model = nn.Sequential(nn.Linear(10, 32), neurons.LIF(tau=2.0), nn.Linear(32, 16, bias=False),
                          neurons.IF(v_threshold=0.6), nn.Linear(16, 6), neurons.LIF(tau=4.0, decay_input=False))
    xs = torch.rand(60, 4, 10)
    return model, xs


def _conv():
    model = nn.Sequential(nn.Conv2d(2, 6, 3, padding=1, bias=False), neurons.LIF(tau=2.0), nn.AvgPool2d(2),
                          nn.Conv2d(6, 8, 3, stride=2, padding=1), neurons.IF(), nn.Flatten(),
                          nn.Linear(8 * 2 * 2, 10), neurons.LIF(tau=2.0, v_threshold=0.5))
    xs = torch.rand(40, 3, 2, 8, 8)
    return model, xs


def _recurrent():
    model = nn.Sequential(nn.Linear(8, 16), neurons.LIF(tau=2.0), nn.Recurrent(neurons.LIF(tau=3.0), 16, 12),
                          nn.Linear(12, 5), neurons.IF(v_threshold=0.4))
    xs = torch.rand(60, 4, 8)
    return model, xs


NETS = {"dense": _dense, "conv": _conv, "recurrent": _recurrent}


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", sorted(NETS))
def test_round_trip_through_a_file_reproduces_model_params_and_spikes(name: str, tmp_path: Path) -> None:
    model, xs = NETS[name]()
    params, states = model.init(torch.Generator().manual_seed(1), xs[0])
    params = _calibrated(model, params, states, xs)
    path = tmp_path / f"{name}.nir"
    nir.write(path, to_nir(model, params, xs[0]))
    model2, params2, states2 = from_nir(path)
    assert model2 == model
    assert _same(params2, params)
    _assert_meaningful(_rates(model, params, states, xs))
    assert torch.equal(_run(model2, params2, states2, xs), _run(model, params, states, xs))


def test_round_trip_keeps_training_only_choices_in_metadata() -> None:
    """Surrogate, detach_reset and the SLTT/OTTT kind are no NIR dynamics: they travel in metadata."""
    model = nn.Sequential(nn.Linear(3, 4), neurons.SLTTLIF(tau=1.7, surrogate=surrogate.ATan(alpha=3.0)),
                          nn.Linear(4, 4), neurons.OTTTLIF(v_reset=0.0, decay_input=True),
                          nn.Linear(4, 2), neurons.IF(detach_reset=True, surrogate="rect"),
                          nn.Linear(2, 2), neurons.LI(tau=7.0, learn_tau=True))
    params, _ = model.init(torch.Generator().manual_seed(0), torch.zeros(1, 3))
    params["7"]["tau"] = torch.tensor([3.0, 11.5])
    model2, params2, _ = from_nir(to_nir(model, params, torch.zeros(1, 3)))
    assert model2 == model and _same(params2, params)


def test_graph_from_another_library_gets_purelearns_defaults() -> None:
    """Without purelearn's metadata a LIF is a plain LIF: Sigmoid surrogate, detach_reset=False."""
    graph = to_nir(nn.Sequential(nn.Linear(3, 2), neurons.SLTTLIF(surrogate="atan")),
                   {"0": {"weight": torch.ones(2, 3), "bias": torch.zeros(2)}}, torch.zeros(1, 3))
    for node in graph.nodes.values():
        node.metadata = {}
    model, _, _ = from_nir(graph)
    assert model[1] == neurons.LIF(tau=2.0, decay_input=True, v_reset=0.0)


def test_dt_scales_time_constants_like_spikingjelly() -> None:
    model = nn.Sequential(nn.Linear(2, 3), neurons.LIF(tau=4.0, decay_input=False, v_reset=-0.5, v_threshold=0.8),
                          nn.Linear(3, 3), neurons.IF(), nn.Linear(3, 1), neurons.LI(tau=10.0))
    params, _ = model.init(None, torch.zeros(1, 2))
    graph = to_nir(model, params, torch.zeros(1, 2), dt=1e-3)
    lif, if_, li = graph.nodes["1"], graph.nodes["3"], graph.nodes["5"]
    np.testing.assert_allclose(lif.tau, 4e-3)
    np.testing.assert_allclose(lif.r, 4.0)                        # decay_input=False: r = tau
    np.testing.assert_allclose(lif.v_leak, -0.5)
    np.testing.assert_allclose(lif.v_reset, -0.5)
    np.testing.assert_allclose(lif.v_threshold, 0.8)
    np.testing.assert_allclose(if_.r, 1e3)                        # IF: r = 1/dt
    np.testing.assert_allclose(li.tau, 1e-3 / (1 - np.exp(-0.1)))  # Euler leak 1 − dt/tau_nir = exp(−1/tau)
    assert from_nir(graph, dt=1e-3)[0] == model


def test_snntorch_style_gains_become_decay_input_false_or_a_scale() -> None:
    """snnTorch writes Leaky(beta) as tau = dt/(1−beta), r = tau/dt: our LIF(decay_input=False); another
    gain becomes a Scale before the neuron, so the dynamics are the graph's."""
    dt, beta = 1e-4, 0.75
    tau = dt / (1 - beta)
    w = np.ones((2, 3), dtype=np.float32)
    lif = nir.LIF(tau=np.full(2, tau), r=np.full(2, tau / dt), v_leak=np.zeros(2), v_threshold=np.ones(2))
    graph = nir.NIRGraph.from_list(nir.Affine(weight=w, bias=np.zeros(2, np.float32)), lif)
    model, _, _ = from_nir(graph, dt=dt)
    assert model[1] == neurons.LIF(tau=4.0, decay_input=False)
    lif.r = np.full(2, 2.0)
    model, _, _ = from_nir(graph, dt=dt)
    assert model[1] == nn.Scale(2.0) and model[2] == neurons.LIF(tau=4.0)


def test_per_neuron_constants_are_read_as_tensors_and_written_back() -> None:
    w = np.ones((3, 2), dtype=np.float32)
    lif = nir.LIF(tau=np.array([2e-4, 3e-4, 4e-4]), r=np.ones(3), v_leak=np.zeros(3),
                  v_threshold=np.array([0.5, 1.0, 1.5]), v_reset=np.zeros(3))
    model, params, states = from_nir(nir.NIRGraph.from_list(nir.Linear(weight=w), lif))
    assert torch.equal(model[1].tau, torch.tensor([2.0, 3.0, 4.0])) and model[1].v_threshold.shape == (3,)
    graph = to_nir(model, params, torch.zeros(1, 2))
    np.testing.assert_allclose(graph.nodes["1"].tau, lif.tau)
    np.testing.assert_array_equal(graph.nodes["1"].v_threshold, lif.v_threshold)


def test_an_imported_spikingjelly_graph_trains_with_fptt() -> None:
    net, xs = _sj_net("dense")
    model, params, states = from_nir(_sj_nir()[3](net, xs[0]))
    learner = online.fptt(model, F.mse_loss, optim.adam(1e-2))
    carry, out = learner.run(learner.init(params, states), xs[:10], torch.rand(10, 4, 6))
    assert torch.isfinite(out.loss).all() and not _same(carry.params, params)


def test_subgraphs_are_flattened_and_sum_pooling_is_read() -> None:
    """A recurrent cell as a subgraph (snnTorch's RLeaky shape) and SumPool2d."""
    rnn = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([3])}),
                              "lif": nir.LIF(tau=np.full(3, 2e-4), r=np.ones(3), v_leak=np.zeros(3),
                                             v_threshold=np.ones(3)),
                              "w_rec": nir.Linear(weight=np.eye(3, dtype=np.float32)),
                              "output": nir.Output(output_type={"output": np.array([3])})},
                       edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")])
    graph = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([1, 4, 4])}),
                                "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                                                      padding=np.array([0, 0])),
                                "flat": nir.Flatten(input_type={"input": np.array([1, 2, 2])}),
                                "fc": nir.Affine(weight=np.ones((3, 4), np.float32), bias=np.zeros(3, np.float32)),
                                "rnn": rnn, "output": nir.Output(output_type={"output": np.array([3])})},
                         edges=[("input", "pool"), ("pool", "flat"), ("flat", "fc"), ("fc", "rnn"), ("rnn", "output")],
                         type_check=False)
    model, params, _ = from_nir(graph)
    assert [type(m).__name__ for m in model.layers] == ["AvgPool2d", "Scale", "Flatten", "Recurrent"]
    assert model[1] == nn.Scale(4.0)
    assert torch.equal(params["3"]["rc"]["weight"], torch.cat([torch.ones(3, 4), torch.eye(3)], dim=1))


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(("layer", "pattern"), [
    (neurons.LIF(v_reset=None), r"layer 1 \(LIF\) uses a soft reset"),
    (neurons.OTTTLIF(), r"layer 1 \(OTTTLIF\) uses a soft reset"),
    (neurons.ALIF(), r"layer 1 \(ALIF\) has an adaptive threshold"),
    (nn.BatchNorm1d(4), r"layer 1 \(BatchNorm1d\): NIR 1.0 has no batch normalisation"),
])
def test_export_refuses_what_nir_cannot_express(layer, pattern: str) -> None:
    model = nn.Sequential(nn.Linear(3, 4), layer)
    params, _ = model.init(None, torch.zeros(2, 3))
    with pytest.raises(ValueError, match=pattern):
        to_nir(model, params, torch.zeros(2, 3))


def test_import_refuses_an_unsupported_node_naming_it_and_the_supported_set() -> None:
    graph = nir.NIRGraph.from_list(nir.Affine(weight=np.ones((2, 3)), bias=np.zeros(2)),
                                   nir.CubaLIF(tau_syn=np.full(2, 1e-3), tau_mem=np.full(2, 1e-3), r=np.ones(2),
                                               v_leak=np.zeros(2), v_threshold=np.ones(2)))
    with pytest.raises(ValueError, match=r"node 'cubalif' \(CubaLIF\) is not supported; supported nodes: Input, "):
        from_nir(graph)


def test_import_refuses_branches() -> None:
    lin = nir.Linear(weight=np.ones((3, 3)))
    graph = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([3])}), "a": lin,
                                "b": nir.Linear(weight=np.ones((3, 3))),
                                "output": nir.Output(output_type={"output": np.array([3])})},
                         edges=[("input", "a"), ("input", "b"), ("a", "output"), ("b", "output")])
    with pytest.raises(ValueError, match=r"node 'input' feeds \['a', 'b'\]; purelearn reads chains"):
        from_nir(graph)


# ----------------------------------------------------------------------------- SpikingJelly 2.0.0


def _sj_run(net, xs: torch.Tensor) -> torch.Tensor:
    functional = _sj_nir()[0]
    functional.reset_net(net)
    with torch.no_grad():
        return torch.stack([net(x) for x in xs])


def _sj_graph_run(gm, xs: torch.Tensor) -> torch.Tensor:
    out, state = [], None
    with torch.no_grad():
        for x in xs:
            y, state = gm(x, state)
            out.append(y)
    return torch.stack(out)


def _sj_net(name: str):
    """A SpikingJelly network and inputs, its weights scaled so that every neuron layer fires ~20 %."""
    _, layer, neuron, _, _ = _sj_nir()
    torch.manual_seed(0)
    if name == "dense":
        net = torch.nn.Sequential(layer.Linear(10, 32), neuron.LIFNode(tau=2.0), layer.Linear(32, 16, bias=False),
                                  neuron.IFNode(v_threshold=0.6), layer.Linear(16, 6),
                                  neuron.LIFNode(tau=4.0, decay_input=False, v_reset=-0.1))
        xs = torch.rand(60, 4, 10)
    else:
        net = torch.nn.Sequential(layer.Conv2d(2, 6, 3, padding=1, bias=False), neuron.LIFNode(tau=2.0),
                                  layer.AvgPool2d(2), layer.Flatten(), layer.Linear(6 * 4 * 4, 10),
                                  neuron.LIFNode(tau=2.0, v_threshold=0.5))
        xs = torch.rand(40, 3, 2, 8, 8)
    model, params, states = from_torch(net, xs[0])
    net.load_state_dict(to_state_dict(_calibrated(model, params, states, xs)))
    return net, xs


@pytest.mark.parametrize("name", ["dense", "conv"])
def test_spikingjelly_export_reads_as_the_same_network_spike_for_spike(name: str, tmp_path: Path) -> None:
    export_to_nir = _sj_nir()[3]
    net, xs = _sj_net(name)
    path = tmp_path / "sj.nir"
    export_to_nir(net, xs[0], save_path=path)
    model, params, states = from_nir(path)
    reference, ref_params, _ = from_torch(net, xs[0])           # the same network by another road
    assert model == reference and _same(params, ref_params)
    _assert_meaningful(_rates(model, params, states, xs))
    assert torch.equal(_run(model, params, states, xs), _sj_run(net, xs))


@pytest.mark.parametrize("name", ["dense", "conv"])
def test_to_nir_writes_what_spikingjelly_writes(name: str) -> None:
    export_to_nir = _sj_nir()[3]
    net, xs = _sj_net(name)
    ours = to_nir(*from_torch(net, xs[0])[:2], xs[0])
    theirs = export_to_nir(net, xs[0])

    def chain(graph):
        order, cur = [], next(n for n, node in graph.nodes.items() if isinstance(node, nir.Input))
        while not isinstance(graph.nodes[cur], nir.Output):
            order.append(graph.nodes[cur])
            cur = next(b for a, b in graph.edges if a == cur)
        return order

    for a, b in zip(chain(ours), chain(theirs), strict=True):
        assert type(a) is type(b)
        for field in ("weight", "bias", "tau", "r", "v_leak", "v_threshold", "v_reset", "kernel_size", "stride",
                      "padding", "start_dim", "end_dim", "input_type"):
            if hasattr(b, field):
                va, vb = getattr(a, field), getattr(b, field)
                va, vb = (va["input"], vb["input"]) if field == "input_type" else (va, vb)
                np.testing.assert_array_equal(np.asarray(va), np.asarray(vb), err_msg=f"{type(b).__name__}.{field}")


@pytest.mark.parametrize("name", sorted(NETS))
def test_spikingjelly_import_of_our_graph_runs_spike_for_spike(name: str, tmp_path: Path) -> None:
    """Our export read by SpikingJelly's import_from_nir (the recurrent net as a graph cycle)."""
    import_from_nir = _sj_nir()[4]
    model, xs = NETS[name]()
    params, states = model.init(torch.Generator().manual_seed(2), xs[0])
    params = _calibrated(model, params, states, xs)
    path = tmp_path / "ours.nir"
    nir.write(path, to_nir(model, params, xs[0]))
    gm = import_from_nir(path, dtype=torch.float32)
    _assert_meaningful(_rates(model, params, states, xs))
    assert torch.equal(_sj_graph_run(gm, xs), _run(model, params, states, xs))

