"""The training library: loss and prediction, models per learner, determinism, sweeps, compile."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from purelearn import models, neurons, nn, train, tree

pytest.importorskip("sklearn")

TINY = dict(epochs=1, limit=64, T=4, hidden=16, batch_size=32)


# ----------------------------------------------------------------------------- loss, targets, prediction


def test_weighted_one_hot_targets_scale_the_cross_entropy_by_the_time_weight():
    labels = torch.tensor([2, 0, 1])
    logits = torch.randn(3, 3, generator=torch.Generator().manual_seed(0))
    weights = train.time_weights("ramp", 4)
    assert torch.allclose(weights, torch.tensor([0.25, 0.5, 0.75, 1.0]))
    y_seq = train.targets(labels, weights, 3)
    assert y_seq.shape == (4, 3, 3)
    for t in range(4):
        assert torch.allclose(train.loss_fn(logits, y_seq[t]), weights[t] * F.cross_entropy(logits, labels))
    assert torch.equal(train.time_weights("uniform", 3), torch.ones(3))
    assert torch.equal(train.time_weights("last", 3), torch.tensor([0.0, 0.0, 1.0]))


def test_prediction_is_the_argmax_of_the_weighted_sum_over_time():
    y = torch.zeros(3, 1, 2)
    y[0, 0, 0] = 5.0      # an early, strong vote for class 0
    y[1:, 0, 1] = 2.0     # later votes for class 1
    assert train.predict(y, torch.ones(3)).item() == 0
    assert train.predict(y, train.time_weights("last", 3)).item() == 1


def test_cosine_schedule_starts_at_lr_and_decays_towards_zero():
    factors = [train.lr_factor("cosine", e, 10) for e in range(10)]
    assert factors[0] == 1.0 and all(a > b for a, b in zip(factors, factors[1:], strict=False)) and factors[-1] > 0
    assert train.lr_factor("cosine", 5, 10) == pytest.approx(0.5)
    assert train.lr_factor("constant", 7, 10) == 1.0


@pytest.mark.parametrize("text,expected", [
    ("0.1,0.2", [0.1, 0.2]), ("1:3:3", [1.0, 2.0, 3.0]), ("0.001:0.1:3:log", [0.001, 0.01, 0.1]), ("5", [5.0])])
def test_parse_values_lists_and_ranges(text, expected):
    assert train.parse_values("lr", text) == pytest.approx(expected)


def test_parse_values_integers_and_errors():
    assert train.parse_values("seed", "0:2:3", integer=True) == [0, 1, 2]
    for bad in ("", "a,b", "1:2", "1:2:0", "0:1:3:log", "-1,2"):
        with pytest.raises(ValueError, match="--lr"):
            train.parse_values("lr", bad)


# ----------------------------------------------------------------------------- models


@pytest.mark.parametrize("algo,neuron", [("fptt", neurons.LIF), ("fptt-dual", neurons.LIF), ("bptt", neurons.LIF),
                                         ("ottt", neurons.OTTTLIF), ("ottt-a", neurons.OTTTLIF),
                                         ("sltt", neurons.SLTTLIF), ("sltt-k", neurons.SLTTLIF)])
def test_each_algorithm_gets_its_neuron_type_and_a_linear_readout(algo, neuron):
    for name, shape in (("mlp", (64,)), ("conv", (1, 8, 8))):
        model = models.build(name, algo, shape, 10)
        assert all(type(n) is neuron for n in model.neurons)
        assert isinstance(model.layers[-1], nn.Linear) and model.layers[-1].out_features == 10
    mlp = models.build("mlp", algo, (1, 8, 8), 10)
    assert [type(m).__name__ for m in mlp.layers] == ["Flatten", "Linear", neuron.__name__, "Linear"]
    assert mlp.layers[1].in_features == 64 and mlp.layers[1].out_features == 256


def test_alif_rnn_is_a_recurrent_alif_layer_and_refuses_ottt():
    model = models.build("alif-rnn", "fptt", (1,), 10)
    rec = model.layers[1]
    assert isinstance(rec, nn.Recurrent) and isinstance(rec.neuron, neurons.ALIF) and rec.out_features == 128
    assert rec.neuron.learn_tau and rec.neuron.surrogate.alpha == models.ALIF_SURROGATE_ALPHA
    params, _ = models.init("alif-rnn", model, torch.Generator().manual_seed(0), torch.zeros(2, 1))
    assert torch.equal(params["1"]["neuron"]["tau_m"], torch.full((128,), models.DEFAULT_TAU["alif-rnn"]))
    plain, _ = model.init(torch.Generator().manual_seed(0), torch.zeros(2, 1))
    gains = params["1"]["rc"]["weight"] / plain["1"]["rc"]["weight"]
    assert torch.allclose(gains[:, 0], torch.tensor(models.INIT_GAIN["alif-rnn"][0]))
    assert torch.allclose(gains[:, 1:], torch.tensor(models.INIT_GAIN["alif-rnn"][1]))
    assert models.learns_tau(model) and not models.learns_tau(models.build("alif-rnn", "sltt", (1,), 10))
    assert isinstance(models.build("alif-rnn", "sltt", (1,), 10).layers[1].neuron, neurons.SLTTLIF)
    with pytest.raises(ValueError, match="OTTT has no recurrent form"):
        models.build("alif-rnn", "ottt", (1,), 10)
    with pytest.raises(ValueError, match="needs image steps"):
        models.build("conv", "fptt", (64,), 10)


def test_every_model_trains_with_every_compatible_learner_for_a_step():
    x_img = torch.rand(3, 2, 1, 8, 8).bernoulli()
    labels = torch.tensor([1, 3])
    for name in models.MODELS:
        for algo in models.ALGOS:
            if name == "alif-rnn" and algo.startswith("ottt"):
                continue
            x = x_img.flatten(2)[..., :5] if name == "alif-rnn" else x_img
            model = models.build(name, algo, tuple(x.shape[2:]), 4, hidden=4)
            params, states = train.init_params(model, 0, x[0], name)
            learner = train.make_learner(algo, model, train.make_optimizer("adam", 1e-2), k=1)
            weights = train.time_weights("uniform", 3)
            carry, outs = learner.run(learner.init(params, states), x, train.targets(labels, weights, 4))
            assert outs.y.shape == (3, 2, 4) and torch.isfinite(outs.loss).all(), (name, algo)
            assert not tree.allclose(carry.params, params), (name, algo)


# ----------------------------------------------------------------------------- fit and evaluate


def test_fit_is_deterministic_for_a_config():
    a = train.fit(train.Config(algo="ottt", **TINY))
    b = train.fit(train.Config(algo="ottt", **TINY))
    for x, y in zip(tree.leaves(a.carry.params), tree.leaves(b.carry.params), strict=True):
        assert torch.equal(x, y)
    c = train.fit(train.Config(algo="ottt", seed=1, **TINY))
    assert not tree.allclose(a.carry.params, c.carry.params)


def test_evaluate_matches_a_hand_written_forward_pass():
    result = train.fit(train.Config(algo="bptt", **TINY))
    from purelearn import data

    split = data.load("digits", T=4).limit(64)
    x = data.encode(split.test.x, "rate", 4, torch.Generator().manual_seed(train.EVAL_SEED))
    weights = train.time_weights("uniform", 4)
    loss, acc = train.evaluate(result.model, result.carry.params, x, split.test.y, weights, 10)
    states = result.model.init_states(x[0])
    outs = []
    for t in range(4):
        y_t, states = result.model.apply(result.carry.params, states, x[t])
        outs.append(y_t)
    outs = torch.stack(outs)
    expected_loss = torch.stack([F.cross_entropy(o, split.test.y) for o in outs]).mean()
    assert torch.allclose(loss, expected_loss)
    assert acc.item() == (outs.sum(0).argmax(-1) == split.test.y).float().mean().item()
    assert acc.item() == pytest.approx(result.metrics["test_accuracy"])


def test_prediction_weights_are_separate_from_the_loss_weights():
    result = train.fit(train.Config(algo="bptt", **TINY))
    from purelearn import data

    split = data.load("digits", T=4).limit(64)
    x = data.encode(split.test.x, "rate", 4, torch.Generator().manual_seed(train.EVAL_SEED))
    uniform, last = train.time_weights("uniform", 4), train.time_weights("last", 4)
    loss_u, acc_u = train.evaluate(result.model, result.carry.params, x, split.test.y, uniform, 10)
    loss_l, acc_l = train.evaluate(result.model, result.carry.params, x, split.test.y, uniform, 10,
                                   predict_weights=last)
    assert torch.equal(loss_u, loss_l)  # the loss keeps its weights
    states, y_t = result.model.init_states(x[0]), None
    for t in range(4):
        y_t, states = result.model.apply(result.carry.params, states, x[t])
    assert acc_l.item() == (y_t.argmax(-1) == split.test.y).float().mean().item()


@pytest.mark.parametrize("data_name, algo, expected", [
    ("seq-digits", "fptt", dict(weighting="ramp", predict="late", window=8, reduction="sum", second_forward="pre",
                                alpha=0.1, lr=3e-3)),
    ("seq-digits", "fptt-dual", dict(weighting="ramp", predict="late", window=8, reduction=None,
                                     second_forward=None)),
    ("seq-digits", "bptt", dict(weighting="late", predict="late", window=None, reduction=None)),
    ("seq-digits", "sltt", dict(weighting="late", predict="late", window=None)),
    ("digits", "fptt", dict(weighting="uniform", predict="uniform", window=1, reduction="mean",
                            second_forward="post")),
    ("digits", "bptt", dict(weighting="uniform", predict="uniform", window=None)),
])
def test_defaults_follow_the_data_and_the_algorithm(data_name, algo, expected):
    from purelearn import data

    split = data.load(data_name)
    config = train.Config(algo=algo, data=data_name).resolved(split)
    assert {k: getattr(config, k) for k in expected} == expected


def test_explicit_options_override_the_defaults_and_reach_the_learner():
    from purelearn import data

    config = train.Config(algo="fptt", data="seq-digits", window=4, weighting="late", predict="last",
                          reduction="mean", second_forward="post").resolved(data.load("seq-digits"))
    assert (config.window, config.weighting, config.predict, config.reduction, config.second_forward) == (
        4, "late", "last", "mean", "post")
    model = models.build("alif-rnn", "fptt", (1,), 10)
    learner = train.config_learner(config, model, train.make_optimizer("adam", 1e-3), alpha=0.1, beta=0.5)
    assert (learner.window, learner.reduction, learner.second_forward) == (4, "mean", "post")
    dual = train.config_learner(dataclasses.replace(config, algo="fptt-dual", reduction=None, second_forward=None),
                                model, train.make_optimizer("adam", 1e-3), alpha=0.1, beta=0.5)
    assert dual.window == 4


@pytest.mark.parametrize("option, value, algo, allowed", [
    ("window", 4, "bptt", "fptt or fptt-dual"),
    ("reduction", "sum", "fptt-dual", "fptt"),
    ("second_forward", "pre", "sltt", "fptt"),
    ("k", 2, "fptt", "sltt-k"),
])
def test_options_of_some_algorithms_are_refused_for_the_others(option, value, algo, allowed):
    flag = "--" + option.replace("_", "-")
    with pytest.raises(ValueError, match=rf"{flag} only applies to --algo {allowed}, got --algo {algo}$"):
        train.Config(algo=algo, **{option: value}).validate()


def test_the_learning_rate_schedule_reaches_the_optimizer():
    cosine = train.fit(train.Config(algo="bptt", **{**TINY, "epochs": 2}))
    constant = train.fit(train.Config(algo="bptt", schedule="constant", **{**TINY, "epochs": 2}))
    assert [h["lr"] for h in cosine.history] == [0.01, 0.005]
    assert not tree.allclose(cosine.carry.params, constant.carry.params)


def test_peak_memory_reports_its_kind():
    peak, kind = train.peak_memory("cpu")
    assert kind == "cpu_max_rss" and peak > 10 * 2**20


# ----------------------------------------------------------------------------- sweeps


def test_sweep_over_seeds_and_tau_equals_fitting_each_config(tmp_path):
    # two epochs: the sweep rebuilds its optimizer with lr·factor per epoch, fit sets its lr tensor in place
    base = train.Config(algo="ottt", **{**TINY, "epochs": 2})
    result = train.sweep_fit(base, {"seed": [0, 1], "tau": [2.0, 4.0]}, None)
    assert [(r["seed"], r["tau"]) for r in result["rows"]] == [(0, 2.0), (0, 4.0), (1, 2.0), (1, 4.0)]
    for i, row in enumerate(result["rows"]):
        single = train.fit(dataclasses.replace(base, seed=row["seed"], tau=row["tau"], data_seed=0))
        swept = tree.map(lambda a, i=i: a[i], result["params"])
        assert tree.max_abs_diff(swept, single.carry.params) <= 1e-5
        assert abs(row["test_loss"] - single.metrics["test_loss"]) <= 1e-5
    # the initial parameters follow the seed: different seeds end in different places
    assert not torch.allclose(result["params"]["1"]["weight"][0], result["params"]["1"]["weight"][2])


def test_sweep_over_tau_of_a_trained_time_constant_starts_each_row_from_its_tau():
    """In alif-rnn tau is the initial value of ALIF's trained tau_m: each row starts from its own."""
    base = train.Config(algo="bptt", data="seq-digits", epochs=1, limit=32, hidden=8, batch_size=16)
    result = train.sweep_fit(base, {"tau": [3.0, 8.0]}, None)
    for i, row in enumerate(result["rows"]):
        single = train.fit(dataclasses.replace(base, tau=row["tau"], data_seed=0))
        swept = tree.map(lambda a, i=i: a[i], result["params"])
        assert tree.max_abs_diff(swept, single.carry.params) == 0
        assert torch.allclose(swept["1"]["neuron"]["tau_m"], torch.full((8,), row["tau"]), atol=0.05)


def test_sweep_refuses_unknown_axes_and_compile():
    with pytest.raises(ValueError, match="cannot sweep 'beta'"):
        train.sweep_fit(train.Config(**TINY), {"beta": [0.1, 0.2]})
    with pytest.raises(ValueError, match="--compile"):
        train.sweep_fit(train.Config(compile=True, **TINY), {"lr": [0.1]})


# ----------------------------------------------------------------------------- compile


@pytest.mark.slow
def test_compiled_step_gives_the_same_numbers():
    pytest.importorskip("torch._inductor")
    # two epochs: the cosine schedule changes the learning rate the compiled step reads
    config = train.Config(algo="ottt", epochs=2, limit=32, T=3, hidden=8, batch_size=32)
    eager = train.fit(config)
    compiled = train.fit(dataclasses.replace(config, compile=True))
    assert tree.max_abs_diff(eager.carry.params, compiled.carry.params) <= 1e-5
    assert math.isclose(eager.metrics["test_loss"], compiled.metrics["test_loss"], abs_tol=1e-5)
