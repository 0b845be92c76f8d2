"""Specification of the papers' image architectures in ``purelearn.models`` (``vgg``: OTTT's VGG,
``resnet``: SLTT's pre-activation ResNet) and of the layer they need, ``purelearn.nn.Residual``:
shapes, layouts, training by every learner that applies, OTTT's wiring through residual blocks,
BatchNorm statistics nested in residual blocks, vmap, and SpikingJelly's ``OTTTSpikingVGG`` as the
oracle for the VGG under OTTT."""

from __future__ import annotations

import doctest

import pytest
import torch
import torch.nn.functional as F
from _learner_helpers import (
    OPTIMIZERS,
    TOL,
    assert_untouched,
    params_diff,
    sequences,
    snapshot,
    train_beside_sj_ottt,
)

import purelearn.nn.residual
from purelearn import models, neurons, nn, online, optim, sweep, tree
from purelearn.online.ottt import wire

F64 = torch.float64
#: The neuron each learner trains (the registry's choice for these models).
LEARNERS = {
    "ottt": (neurons.OTTTLIF, lambda m: online.ottt(m, F.mse_loss, optim.adam(lr=0.01))),
    "sltt": (neurons.SLTTLIF, lambda m: online.sltt(m, F.mse_loss, optim.adam(lr=0.01))),
    "fptt": (neurons.LIF, lambda m: online.fptt(m, F.mse_loss, optim.adam(lr=0.01), alpha=0.1)),
    "bptt": (neurons.LIF, lambda m: online.bptt(m, F.mse_loss, optim.adam(lr=0.01))),
}


def tiny(name: str, neuron=neurons.LIF, shape=(1, 8, 8), classes: int = 3) -> nn.Sequential:
    return models.build(name, shape, classes, neuron, hidden=2)


def test_residual_module_docstring_example_runs():
    result = doctest.testmod(purelearn.nn.residual, verbose=False)
    assert result.attempted > 0 and result.failed == 0


# --------------------------------------------------------------------------------------------------
# Layouts and shapes
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 8, 8), (2, 32, 32)], ids=["1x8x8", "2x32x32"])
@pytest.mark.parametrize("name", ["vgg", "resnet"])
def test_a_step_gives_one_logit_vector_per_sample(name, shape):
    model = models.build(name, shape, 5, neurons.LIF, hidden=2)
    x = torch.rand(3, *shape)
    params, states = model.init(torch.Generator().manual_seed(0), x)
    y, states = model.apply(params, states, x)
    assert y.shape == (3, 5) and torch.isfinite(y).all()
    one, _ = model.inference().apply(params, model.reset_states(states), x[:1])
    assert one.shape == (1, 5), "evaluation takes one sample"


def test_vgg_is_the_ottt_layout_ws_conv_neuron_scale_blocks_average_pooling_and_a_linear_classifier():
    model = models.build("vgg", (2, 32, 32), 10, neurons.OTTTLIF)
    kinds = [type(m).__name__ for m in model.layers]
    block = ["WSConv2d", "OTTTLIF", "Scale"]
    assert kinds == (block * 2 + ["AvgPool2d"] + block * 2 + ["AvgPool2d"] + block * 2 + ["AvgPool2d"] + block * 2
                     + ["AvgPool2d", "Flatten", "Linear"])
    convs = [m for m in model.layers if isinstance(m, nn.WSConv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 64, 64, 128, 128, 128, 128]  # the paper's / 4
    assert all(m.scale == models.WS_SCALE == 2.74 for m in model.layers if isinstance(m, nn.Scale))
    assert model.layers[-3].kernel_size == (4, 4) and model.layers[-1].in_features == 128
    full = models.vgg((3, 32, 32), 10, neurons.OTTTLIF, hidden=64)
    widths = [m.out_channels for m in full.layers if isinstance(m, nn.WSConv2d)]
    assert widths == [64, 128, 256, 256, 512, 512, 512, 512]


def test_resnet_is_sltts_pre_activation_layout():
    model = models.build("resnet", (2, 32, 32), 10, neurons.SLTTLIF)
    kinds = [type(m).__name__ for m in model.layers]
    assert kinds == (["Conv2d"] + ["BatchNorm2d", "SLTTLIF", "Residual"] * 4
                     + ["BatchNorm2d", "SLTTLIF", "AvgPool2d", "Flatten", "Linear"])
    blocks = [m for m in model.layers if isinstance(m, nn.Residual)]
    assert [type(m).__name__ for m in blocks[0].body] == ["Conv2d", "BatchNorm2d", "SLTTLIF", "Conv2d"]
    assert blocks[0].shortcut is None, "same width, stride 1: the shortcut is the block's spikes"
    assert [b.body[0].out_channels for b in blocks] == [16, 32, 64, 128]
    assert [b.body[0].stride for b in blocks] == [(1, 1), (2, 2), (2, 2), (2, 2)]
    assert all(b.shortcut[0].kernel_size == (1, 1) and b.shortcut[0].stride == (2, 2) for b in blocks[1:])
    assert model.layers[0].bias is False and model.layers[-3].kernel_size == (4, 4)
    assert len(model.neurons) == 9 and all(type(n) is neurons.SLTTLIF for n in model.neurons)
    resnet18 = models.resnet((3, 32, 32), 10, neurons.SLTTLIF, hidden=64, blocks=(2, 2, 2, 2))
    assert sum(isinstance(m, nn.Residual) for m in resnet18.layers) == 8


@pytest.mark.parametrize(("name", "shape", "message"), [
    ("vgg", (64,), r"'vgg' needs image steps \[channels, H, W\] with H, W >= 8, got \[64\]"),
    ("vgg", (1, 4, 8), r"'vgg' needs image steps .* H, W >= 8, got \[1, 4, 8\]"),
    ("resnet", (8, 8), r"'resnet' needs image steps \[channels, H, W\] with H, W >= 1, got \[8, 8\]"),
])
def test_non_image_or_too_small_steps_are_refused_in_one_line(name, shape, message):
    with pytest.raises(ValueError, match=message):
        models.build(name, shape, 3, neurons.LIF)


def test_builders_refuse_a_bad_layout_or_block_count():
    with pytest.raises(ValueError, match=r"vgg: `layout` holds positive ints .* got 'M'"):
        models.vgg((1, 8, 8), 3, neurons.LIF, layout=(1, "M"))
    with pytest.raises(ValueError, match=r"resnet: `blocks` must be 4 positive ints, one per stage, got \(2, 2\)"):
        models.resnet((1, 8, 8), 3, neurons.LIF, blocks=(2, 2))


# --------------------------------------------------------------------------------------------------
# Training by every learner that applies
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algo", list(LEARNERS))
@pytest.mark.parametrize("name", ["vgg", "resnet"])
def test_every_learner_trains_the_net_for_a_sequence(name, algo):
    neuron, make = LEARNERS[algo]
    model = tiny(name, neuron)
    (x, y), = sequences(1, 3, (1, 8, 8), (3,), torch.float32, 5, batches=[2])
    params, states = model.init(torch.Generator().manual_seed(0), x[0])
    learner = make(model)
    carry, outs = learner.run(learner.init(params, states), x, y)
    assert outs.y.shape == (3, 2, 3) and torch.isfinite(outs.loss).all()
    first, last = model.param_keys[0], model.param_keys[-1]
    for key in (first, last):  # the gradient reaches the first layer through every block
        assert not tree.allclose(carry.params[key], params[key]), (name, algo, key)
    if name == "resnet":
        tracked = carry.states["3"]["body"]["1"].num_batches_tracked.item()  # a BatchNorm inside a block
        assert tracked == (2 * 3 - 1 if algo == "fptt" else 3), "FPTT's second forward updates the statistics"


def test_batch_norm_statistics_inside_residual_blocks_survive_reset_states():
    model = tiny("resnet", neurons.SLTTLIF)
    (x, y), = sequences(1, 3, (1, 8, 8), (3,), torch.float32, 6, batches=[2])
    params, states = model.init(torch.Generator().manual_seed(0), x[0])
    learner = LEARNERS["sltt"][1](model)
    carry, _ = learner.run(learner.init(params, states), x, y)  # ends with reset_states
    block = carry.states["3"]["body"]
    assert block["1"].num_batches_tracked.item() == 3 and not torch.equal(block["1"].running_mean,
                                                                          states["3"]["body"]["1"].running_mean)
    reset = model.reset_states(carry.states)
    assert reset["3"]["body"]["1"] is block["1"] and reset["1"] is carry.states["1"]
    assert reset["3"]["body"]["2"].v.dim() == 0, "neuron memories start afresh"
    fresh = model.init_states(x[0])
    assert fresh["3"]["body"]["1"].num_batches_tracked.item() == 0


def test_batch_norm_statistics_inside_residual_blocks_go_to_and_come_from_a_state_dict():
    model = tiny("resnet")
    x = torch.rand(2, 1, 8, 8)
    params, states = model.init(torch.Generator().manual_seed(0), x)
    _, states = model.apply(params, states, x)
    flat = nn.to_state_dict(params, states)
    expected = {"3.body.1.running_mean", "3.body.1.num_batches_tracked", "6.shortcut.0.weight", "1.running_var"}
    assert expected <= set(flat)
    back_params, back_states = nn.from_state_dict(flat, params, model.init_states(x))
    assert tree.allclose(back_params, params, rtol=0, atol=0)
    assert tree.allclose(back_states["3"]["body"]["1"], states["3"]["body"]["1"], rtol=0, atol=0)


RESNET_SEQS = sequences(2, 2, (1, 8, 8), (3,), F64, 8, batches=[2, 2])


def train_resnet(params):
    model = tiny("resnet", neurons.SLTTLIF)
    learner = online.sltt(model, F.mse_loss, optim.sgd(lr=0.5, momentum=0.9))
    carry = learner.init(params, model.init_states(RESNET_SEQS[0][0][0]))
    for x, y in RESNET_SEQS:
        carry, outs = learner.run(carry, x, y)
    return carry.params, carry.states, outs.loss


def test_vmap_over_two_seeds_equals_the_loop_on_a_tiny_resnet():
    model = tiny("resnet", neurons.SLTTLIF)
    example = torch.zeros(2, 1, 8, 8, dtype=F64)
    inits = [model.init(torch.Generator().manual_seed(s), example)[0] for s in (0, 1)]
    swept = sweep.vmap_configs(train_resnet, {"params": tree.stack(inits)})
    ones = [train_resnet(init) for init in inits]
    for i, one in enumerate(ones):
        assert tree.max_abs_diff(tree.unstack(swept)[i], one) <= 1e-10
    statistics = [one[1]["3"]["body"]["1"] for one in ones]
    assert tree.max_abs_diff(*statistics) > 1e-4, "different seeds, different statistics in a block"


# --------------------------------------------------------------------------------------------------
# Residual
# --------------------------------------------------------------------------------------------------


def block(shortcut: bool) -> nn.Residual:
    body = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), neurons.LIF(),
                         nn.Conv2d(4, 4, 3, padding=1))
    return nn.Residual(body, nn.Sequential(nn.Conv2d(3, 4, 1, stride=2)) if shortcut else None)


@pytest.mark.parametrize("shortcut", [True, False], ids=["conv-shortcut", "identity"])
def test_residual_is_body_plus_shortcut_written_out_and_pure(shortcut):
    res = block(shortcut) if shortcut else nn.Residual(nn.Sequential(nn.Linear(3, 3), neurons.LIF()))
    x = torch.rand(2, 3, 6, 6, dtype=F64) * 3 if shortcut else torch.rand(2, 3, dtype=F64) * 3
    params, state = res.init(torch.Generator().manual_seed(0), x)
    assert sorted(params) == (["body", "shortcut"] if shortcut else ["body"]) and sorted(state) == ["body"]
    for _ in range(3):
        snap = snapshot(params, state, x)
        y, new_state = res.apply(params, state, x)
        assert_untouched(snap)
        body, body_state = res.body.apply(params["body"], state["body"], x)
        other = res.shortcut.apply(params["shortcut"], {}, x)[0] if shortcut else x
        torch.testing.assert_close(y, body + other, rtol=0, atol=0)
        assert tree.allclose(new_state, {"body": body_state}, rtol=0, atol=0)
        state = new_state
    assert tree.allclose(res.reset_state(state)["body"], res.body.reset_states(state["body"]), rtol=0, atol=0)
    shortcut_inference = None if res.shortcut is None else res.shortcut.inference()
    assert res.inference() == nn.Residual(res.body.inference(), shortcut_inference)


def test_a_parameter_free_stateless_residual_has_no_params_or_state():
    res = nn.Residual(nn.Sequential(nn.AvgPool2d(1)))
    x = torch.rand(2, 1, 4, 4)
    assert (res.has_params, res.has_state, res.init(None, x)) == (False, False, (None, None))
    assert torch.equal(res.apply(None, None, x)[0], 2 * x)


def test_residual_refuses_bad_chains_and_mismatched_shapes():
    with pytest.raises(TypeError, match="Residual: `body` must be a purelearn.nn.Sequential, got Linear"):
        nn.Residual(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="`shortcut` must be a purelearn.nn.Sequential or None"):
        nn.Residual(nn.Sequential(nn.Linear(2, 2)), nn.Linear(2, 2))
    res = nn.Residual(nn.Sequential(nn.Linear(2, 3)))
    params, _ = res.init(None, torch.zeros(1, 2))
    with pytest.raises(ValueError, match=r"body's output has shape \(1, 3\) but the shortcut's has \(1, 2\)"):
        res.apply(params, None, torch.zeros(1, 2))
    with pytest.raises(ValueError, match=r"Residual: `params` must be a dict with keys \['body'\], got \['rc'\]"):
        res.apply({"rc": params["body"]}, None, torch.zeros(1, 2))


# --------------------------------------------------------------------------------------------------
# OTTT through residual blocks
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("conv_shortcut", [True, False], ids=["linear-shortcut", "identity"])
def test_a_block_fed_by_an_ottt_lif_takes_each_chains_weight_gradient_from_the_trace(conv_shortcut):
    """y = W_b·s + W_s·s (+ s for the identity): ∂Σy/∂W = 1·traceᵀ for both chains in the wired model,
    1·spikeᵀ in the model itself; the layer before gets the same gradient in both."""
    out = 2 if conv_shortcut else 4
    shortcut = nn.Sequential(nn.Linear(4, 2)) if conv_shortcut else None
    model = nn.Sequential(nn.Linear(3, 4), neurons.OTTTLIF(), nn.Residual(nn.Sequential(nn.Linear(4, out)), shortcut))
    wired = wire(model)
    xs = 2.0 * torch.rand(5, 1, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    params, states = model.init(torch.Generator().manual_seed(1), xs[0])
    params["0"]["weight"] = params["0"]["weight"].abs() + 0.5
    ones = torch.ones(out, 1, dtype=F64)
    for x in xs:
        grads = torch.func.grad(lambda p, s, x: wired.apply(p, s, x)[0].sum())(params, states, x)
        plain = torch.func.grad(lambda p, s, x: model.apply(p, s, x)[0].sum())(params, states, x)
        y, new_states = model.apply(params, states, x)
        torch.testing.assert_close(wired.apply(params, states, x)[0], y, rtol=0, atol=0)
        spike, _ = model[1].apply(None, states["1"], model[0].apply(params["0"], None, x)[0])
        states = new_states
        trace = states["1"].trace
        for chain in params["2"]:
            torch.testing.assert_close(grads["2"][chain]["0"]["weight"], ones @ trace, rtol=0, atol=1e-15)
            torch.testing.assert_close(plain["2"][chain]["0"]["weight"], ones @ spike, rtol=0, atol=1e-15)
        assert tree.allclose(grads["0"], plain["0"], rtol=0, atol=1e-15)
    assert trace.max() > 1.0, "a trace above 1 tells trace and spike apart"


def test_wiring_a_resnet_wires_every_block_and_is_idempotent():
    model = tiny("resnet", neurons.OTTTLIF)
    wired = wire(model)
    kinds = [type(m).__name__ for m in wired.layers]
    assert kinds.count("_WiredResidual") == 4
    assert kinds[-5:] == ["BatchNorm2d", "_EmitsTrace", "_BothPaths", "_BothPaths", "_GradFromTrace"]
    inner = wired.layers[3]
    assert [type(m).__name__ for m in inner.body.layers] == ["_GradFromTrace", "BatchNorm2d", "_EmitsTrace",
                                                             "_GradFromTrace"]
    assert wire(wired) == wired and wired.inference() == wire(model.inference())
    x = torch.rand(2, 1, 8, 8, dtype=F64)
    params, states = model.init(torch.Generator().manual_seed(0), x)
    assert tree.allclose(wired.init(torch.Generator().manual_seed(0), x), (params, states), rtol=0, atol=0)
    plain_states = wired_states = states
    for _ in range(3):
        y, plain_states = model.apply(params, plain_states, x)
        y_wired, wired_states = wired.apply(params, wired_states, x)
        assert torch.equal(y, y_wired) and tree.allclose(plain_states, wired_states, rtol=0, atol=0)
    plain_resnet = tiny("resnet", neurons.LIF)
    assert wire(plain_resnet) is plain_resnet, "no OTTTLIF: nothing to wire"


def test_ottt_refuses_a_plain_neuron_or_a_batch_norm_in_a_block_naming_the_layer():
    lif_inside = nn.Sequential(nn.Conv2d(1, 2, 3), neurons.OTTTLIF(),
                               nn.Residual(nn.Sequential(nn.Conv2d(2, 2, 1), neurons.LIF(), nn.Conv2d(2, 2, 1))))
    with pytest.raises(ValueError, match=r"layer 2\.body\.2 \(Conv2d\) has parameters and is fed by layer 2\.body\.1 "
                                         r"\(LIF\), which emits no presynaptic trace"):
        online.ottt(lif_inside, F.mse_loss, optim.sgd(lr=0.1))
    bn_first = nn.Sequential(nn.Conv2d(1, 2, 3), neurons.OTTTLIF(),
                             nn.Residual(nn.Sequential(nn.BatchNorm2d(2), nn.Conv2d(2, 2, 1))))
    with pytest.raises(TypeError, match=r"layer 2\.body\.0 \(BatchNorm2d\) receives the OTTTLIF before residual "
                                        r"block 2's spike\+trace"):
        online.ottt(bn_first, F.mse_loss, optim.sgd(lr=0.1))


def test_sltt_refuses_a_plain_neuron_inside_a_residual_block():
    model = tiny("resnet", neurons.SLTTLIF)
    inner = model.layers[3]
    body = nn.Sequential(*inner.body.layers[:2], neurons.LIF(), inner.body.layers[3])
    broken = nn.Sequential(*model.layers[:3], nn.Residual(body, inner.shortcut), *model.layers[4:])
    with pytest.raises(ValueError, match=r"sltt: layer 3\.body\.2 is LIF"):
        online.sltt(broken, F.mse_loss, optim.sgd(lr=0.1))


# --------------------------------------------------------------------------------------------------
# The oracle: SpikingJelly's OTTTSpikingVGG under OTTT
# --------------------------------------------------------------------------------------------------


def test_vgg_under_ottt_equals_spikingjellys_ottt_spiking_vgg_float64(sj):
    """SpikingJelly's ``OTTTSpikingVGG`` (WS conv → OTTTLIF → Scale(2.74), average pooling, adaptive
    average pooling → Flatten → Linear) with widths (4, 8, A, 8) on 3×8×8 images (their input
    channels), its classifier's Linear resized to the last width, trained by SpikingJelly's
    ``ottt_online_training`` (OTTT_O, Adam) over two sequences: outputs, losses and params are ours."""
    vgg_mod = pytest.importorskip("spikingjelly.activation_based.model.spiking_vggws_ottt")
    torch.manual_seed(21)
    ref = vgg_mod.OTTTSpikingVGG(cfg=[4, 8, "A", 8], weight_standardization=True, num_classes=3,
                                 spiking_neuron=sj.neuron.OTTTLIFNode)
    net = sj.layer.OTTTSequential(*ref.features, *ref.classifier[:2], sj.layer.Linear(8, 3)).double()
    model = models.vgg((3, 8, 8), 3, neurons.OTTTLIF, hidden=1, layout=(4, 8, "A", 8))
    assert [type(m).__name__ for m in model.layers] == ["WSConv2d", "OTTTLIF", "Scale"] * 2 + ["AvgPool2d"] + [
        "WSConv2d", "OTTTLIF", "Scale", "AvgPool2d", "Flatten", "Linear"]
    data = sequences(2, 4, (3, 8, 8), (3,), F64, 21, batches=[3, 2])
    like, states = model.init(None, data[0][0][0])
    params = nn.from_state_dict({k: v for k, v in net.state_dict().items()}, like)
    learner = online.ottt(model, F.mse_loss, OPTIMIZERS["adam"].ours(), online=True)
    topt = OPTIMIZERS["adam"].torch(net.parameters())
    carry, _ = train_beside_sj_ottt(sj, net, topt, learner, learner.init(params, states), data, True, TOL[F64])
    assert params_diff(carry.params, net) <= TOL[F64]
    assert params_diff(params, net) > 1e-4


# --------------------------------------------------------------------------------------------------
# Devices and compile
# --------------------------------------------------------------------------------------------------


def test_training_a_resnet_on_a_device_equals_cpu(device):
    """Params, nested BatchNorm statistics and neuron states live on the data's device; the numbers are
    the CPU's."""
    model = tiny("resnet", neurons.SLTTLIF)
    learner = LEARNERS["sltt"][1](model)
    params, states = model.init(torch.Generator().manual_seed(0), RESNET_SEQS[0][0][0])
    moved = lambda tree_: tree.map(lambda t: t.to(device), tree_)
    carry, want = learner.init(moved(params), moved(states)), learner.init(params, states)
    for x, y in RESNET_SEQS:
        carry, _ = learner.run(carry, x.to(device), y.to(device))
        want, _ = learner.run(want, x, y)
    assert {t.device.type for t in tree.leaves(carry)} == {device.type}
    assert tree.max_abs_diff(tree.map(lambda t: t.cpu(), carry), want) <= (1e-10 if device.type == "cpu" else 1e-8)


@pytest.mark.slow
def test_compiled_ottt_through_a_residual_block_equals_eager(compile_backend):
    """One downsampling block (conv shortcut) between OTTTLIFs, BatchNorm inside: the wired block, its
    statistics and traces compile into one graph per kind of step, with eager's numbers."""
    from purelearn import compile

    torch._dynamo.reset()
    body = nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1), nn.BatchNorm2d(3), neurons.OTTTLIF(),
                         nn.Conv2d(3, 3, 3, padding=1))
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), neurons.OTTTLIF(),
                          nn.Residual(body, nn.Sequential(nn.Conv2d(2, 3, 1, stride=2))), nn.BatchNorm2d(3),
                          neurons.OTTTLIF(), nn.AvgPool2d(4), nn.Flatten(), nn.Linear(3, 3))
    learner = online.ottt(model, F.mse_loss, optim.sgd(lr=0.5, momentum=0.9))
    params, states = model.init(torch.Generator().manual_seed(0), RESNET_SEQS[0][0][0])
    run = compile.run(learner, backend=compile_backend)
    got = want = learner.init(params, states)
    with torch._dynamo.config.patch(error_on_recompile=True):
        for x, y in RESNET_SEQS:
            got, got_outs = run(got, x, y)
            want, want_outs = learner.run(want, x, y)
            assert tree.max_abs_diff(tree.leaves((got, got_outs)), tree.leaves((want, want_outs))) <= 1e-10
    assert tree.max_abs_diff(want.params, params) > 1e-3, "training moved the weights"
    torch._dynamo.reset()
