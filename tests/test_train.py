"""The application: loss and prediction, the registry, configs, determinism, schedules, sweeps, compile."""

from __future__ import annotations

import dataclasses
import io
import math

import pytest
import torch
import torch.nn.functional as F

from purelearn import app, data, models, neurons, nn, tree
from purelearn.app import registry, report, task
from purelearn.app.compare import configs_for, default_algorithms
from purelearn.app.progress import Progress

pytest.importorskip("sklearn")

TINY = dict(epochs=1, limit=64, T=4, hidden=16, batch_size=32)


# ----------------------------------------------------------------------------- loss, targets, prediction


def test_weighted_one_hot_targets_scale_the_cross_entropy_by_the_time_weight():
    labels = torch.tensor([2, 0, 1])
    logits = torch.randn(3, 3, generator=torch.Generator().manual_seed(0))
    weights = task.time_weights("ramp", 4)
    assert torch.allclose(weights, torch.tensor([0.25, 0.5, 0.75, 1.0]))
    y_seq = task.targets(labels, weights, 3)
    assert y_seq.shape == (4, 3, 3)
    for t in range(4):
        assert torch.allclose(task.loss_fn(logits, y_seq[t]), weights[t] * F.cross_entropy(logits, labels))
    assert torch.equal(task.time_weights("uniform", 3), torch.ones(3))
    assert torch.equal(task.time_weights("last", 3), torch.tensor([0.0, 0.0, 1.0]))
    assert torch.equal(task.time_weights("late", 8), torch.tensor([0.0] * 6 + [1.0] * 2))


def test_prediction_is_the_argmax_of_the_weighted_sum_over_time():
    y = torch.zeros(3, 1, 2)
    y[0, 0, 0] = 5.0      # an early, strong vote for class 0
    y[1:, 0, 1] = 2.0     # later votes for class 1
    assert task.predict(y, torch.ones(3)).item() == 0
    assert task.predict(y, task.time_weights("last", 3)).item() == 1


# ----------------------------------------------------------------------------- schedules


def test_cosine_schedule_is_the_per_epoch_factor_of_the_update_count():
    every, epochs = 3, 10
    lr = registry.make_schedule("cosine", 1.0, epochs, every=every)
    for e in range(epochs):
        for count in range(e * every, (e + 1) * every):  # constant within an epoch
            assert float(lr(torch.tensor(count))) == 0.5 * (1.0 + math.cos(math.pi * e / epochs))
    assert registry.make_schedule("constant", 0.1, epochs, every=every)(torch.tensor(17)) == 0.1


def test_warmup_rises_linearly_then_follows_the_schedule():
    every = 2
    cosine = registry.make_schedule("cosine", 1.0, 5, warmup=2, every=every)
    per_epoch = [float(cosine(torch.tensor(e * every))) for e in range(5)]
    assert per_epoch == pytest.approx([1 / 3, 2 / 3, 1.0, 0.5 * (1 + math.cos(math.pi / 3)),
                                       0.5 * (1 + math.cos(2 * math.pi / 3))])
    constant = registry.make_schedule("constant", 1.0, 5, warmup=2, every=every)
    assert [float(constant(torch.tensor(e * every))) for e in range(5)] == pytest.approx([1 / 3, 2 / 3, 1, 1, 1])


def test_the_learning_rate_schedule_reaches_the_optimizer():
    cosine = app.fit(app.Config(algo="bptt", **{**TINY, "epochs": 2}))
    constant = app.fit(app.Config(algo="bptt", schedule="constant", **{**TINY, "epochs": 2}))
    warm = app.fit(app.Config(algo="bptt", warmup=1, **{**TINY, "epochs": 2}))
    assert [h["lr"] for h in cosine.history] == [0.01, 0.005]
    assert [h["lr"] for h in constant.history] == [0.01, 0.01]
    assert [h["lr"] for h in warm.history] == [0.005, 0.01]
    assert not tree.allclose(cosine.carry.params, constant.carry.params)


def test_the_schedule_position_is_the_optimizer_count_in_the_carry():
    """The optimizer is built once; its count (updates applied) is the only schedule state, in the carry."""
    result = app.fit(app.Config(algo="ottt", **{**TINY, "epochs": 2}))  # OTTT_O: T=4 updates per batch
    assert int(result.carry.opt_state.count) == 2 * 2 * 4


# ----------------------------------------------------------------------------- the registry and models


@pytest.mark.parametrize("algo,neuron", [("fptt", neurons.LIF), ("fptt-dual", neurons.LIF), ("bptt", neurons.LIF),
                                         ("ottt", neurons.OTTTLIF), ("ottt-a", neurons.OTTTLIF),
                                         ("sltt", neurons.SLTTLIF), ("sltt-k", neurons.SLTTLIF)])
def test_each_algorithm_gets_its_neuron_type_and_a_linear_readout(algo, neuron):
    for name, shape in (("mlp", (64,)), ("conv", (1, 8, 8))):
        model = registry.build_model(name, algo, shape, 10)
        assert all(type(n) is neuron for n in model.neurons)
        assert isinstance(model.layers[-1], nn.Linear) and model.layers[-1].out_features == 10
    mlp = registry.build_model("mlp", algo, (1, 8, 8), 10)
    assert [type(m).__name__ for m in mlp.layers] == ["Flatten", "Linear", neuron.__name__, "Linear"]
    assert mlp.layers[1].in_features == 64 and mlp.layers[1].out_features == 256


def test_models_are_built_from_a_neuron_factory_without_knowing_algorithms():
    model = models.build("mlp", (64,), 10, lambda tau: neurons.IF())
    assert type(model.layers[2]) is neurons.IF
    recurrent = models.build("alif-rnn", (1,), 10, models.adaptive_lif, hidden=8)
    assert recurrent.layers[1].neuron.surrogate.alpha == models.ALIF_SURROGATE_ALPHA


def test_alif_rnn_is_a_recurrent_alif_layer_and_refuses_ottt():
    model = registry.build_model("alif-rnn", "fptt", (1,), 10)
    rec = model.layers[1]
    assert isinstance(rec, nn.Recurrent) and isinstance(rec.neuron, neurons.ALIF) and rec.out_features == 128
    assert rec.neuron.learn_tau and rec.neuron.surrogate.alpha == models.ALIF_SURROGATE_ALPHA
    params, _ = models.init("alif-rnn", model, torch.Generator().manual_seed(0), torch.zeros(2, 1))
    assert torch.equal(params["1"]["neuron"]["tau_m"], torch.full((128,), models.DEFAULT_TAU["alif-rnn"]))
    plain, _ = model.init(torch.Generator().manual_seed(0), torch.zeros(2, 1))
    gains = params["1"]["rc"]["weight"] / plain["1"]["rc"]["weight"]
    assert torch.allclose(gains[:, 0], torch.tensor(models.INIT_GAIN["alif-rnn"][0]))
    assert torch.allclose(gains[:, 1:], torch.tensor(models.INIT_GAIN["alif-rnn"][1]))
    sltt = registry.build_model("alif-rnn", "sltt", (1,), 10)
    assert models.learns_tau(model) and not models.learns_tau(sltt)
    assert isinstance(sltt.layers[1].neuron, neurons.SLTTLIF)
    with pytest.raises(app.ConfigError, match="OTTT has no recurrent form") as info:
        registry.build_model("alif-rnn", "ottt", (1,), 10)
    assert info.value.field == "model"
    with pytest.raises(app.ConfigError, match="needs image steps"):
        registry.build_model("conv", "fptt", (64,), 10)


def test_every_model_trains_with_every_compatible_learner_for_a_step():
    x_img = torch.rand(3, 2, 1, 8, 8).bernoulli()
    labels = torch.tensor([1, 3])
    for name in models.MODELS:
        for algo in registry.algorithms_for(name):
            x = x_img.flatten(2)[..., :5] if name in models.RECURRENT else x_img
            model = registry.build_model(name, algo, tuple(x.shape[2:]), 4, hidden=4)
            params, states = app.init_params(model, 0, x[0], name)
            learner = registry.make_learner(algo, model, registry.make_optimizer("adam", 1e-2),
                                            k=1 if "k" in registry.ALGORITHMS[algo].reads else None)
            weights = task.time_weights("uniform", 3)
            carry, outs = learner.run(learner.init(params, states), x, task.targets(labels, weights, 4))
            assert outs.y.shape == (3, 2, 4) and torch.isfinite(outs.loss).all(), (name, algo)
            assert not tree.allclose(carry.params, params), (name, algo)
    assert registry.algorithms_for("alif-rnn") == ["fptt", "fptt-dual", "sltt", "sltt-k", "bptt"]
    assert registry.algorithms_for("srnn") == registry.algorithms_for("alif-rnn")


def test_srnn_is_two_recurrent_layers_and_a_trained_leaky_readout():
    model = registry.build_model("srnn", "fptt", (700,), 20)
    assert [type(m).__name__ for m in model.layers] == ["Flatten", "Recurrent", "Recurrent", "Linear", "LI"]
    first, second, readout = model.layers[1], model.layers[2], model.layers[4]
    assert (first.in_features, first.out_features, second.in_features) == (700, 128, 128)
    assert isinstance(first.neuron, neurons.ALIF) and first.neuron.learn_tau
    assert first.neuron.tau_m == models.DEFAULT_TAU["srnn"] and readout.learn_tau
    params, states = models.init("srnn", model, torch.Generator().manual_seed(0), torch.zeros(2, 700))
    assert torch.equal(params["4"]["tau"], torch.full((20,), models.READOUT_TAU))
    x = torch.rand(3, 2, 700).bernoulli()
    y, _ = model.apply(params, states, x[0])
    h = x[0]
    for i in ("1", "2", "3"):  # from fresh states the readout's first output is (1 − alpha) · its input
        h = model.layers[int(i)].apply(params.get(i), states.get(i), h)[0]
    assert y.shape == (2, 20) and torch.allclose(y, (1 - math.exp(-1 / models.READOUT_TAU)) * h)
    sltt = registry.build_model("srnn", "sltt", (700,), 20)
    assert isinstance(sltt.layers[1].neuron, neurons.SLTTLIF) and isinstance(sltt.layers[4], neurons.LI)
    with pytest.raises(app.ConfigError, match="OTTT has no recurrent form"):
        registry.build_model("srnn", "ottt", (700,), 20)


def test_make_learner_refuses_an_option_the_algorithm_does_not_take():
    model = registry.build_model("mlp", "bptt", (4,), 2, hidden=4)
    with pytest.raises(TypeError, match="bptt does not take window"):
        registry.make_learner("bptt", model, registry.make_optimizer("adam", 1e-2), window=8)
    assert registry.make_learner("bptt", model, registry.make_optimizer("adam", 1e-2), window=None) is not None


def test_every_algorithm_has_its_defaults_on_both_kinds_of_data():
    for algo, spec in registry.ALGORITHMS.items():
        for encoding in ("rate", "sequential", "events"):
            d = registry.defaults(algo, encoding, 64)
            assert d["lr"] > 0 and set(spec.options) <= set(d), (algo, encoding)
    assert registry.defaults("sltt-k", "rate", 16)["k"] == 4


# ----------------------------------------------------------------------------- configs


@pytest.mark.parametrize("data_name, algo, expected", [
    ("seq-digits", "fptt", dict(weighting="ramp", predict="late", window=8, reduction="sum", second_forward="pre",
                                alpha=0.1, lr=3e-3, model="alif-rnn")),
    ("seq-digits", "fptt-dual", dict(weighting="ramp", predict="late", window=8, reduction=None,
                                     second_forward=None)),
    ("seq-digits", "bptt", dict(weighting="late", predict="late", window=None, reduction=None)),
    ("seq-digits", "sltt", dict(weighting="late", predict="late", window=None)),
    ("digits", "fptt", dict(weighting="uniform", predict="uniform", window=1, reduction="mean",
                            second_forward="post", model="mlp")),
    ("digits", "bptt", dict(weighting="uniform", predict="uniform", window=None)),
])
def test_defaults_follow_the_data_and_the_algorithm(data_name, algo, expected):
    split = data.load(data_name)
    config = app.Config(algo=algo, data=data_name).resolved(split)
    assert {k: getattr(config, k) for k in expected} == expected


def test_explicit_options_override_the_defaults_and_reach_the_learner():
    config = app.Config(algo="fptt", data="seq-digits", window=4, weighting="late", predict="last",
                        reduction="mean", second_forward="post").resolved(data.load("seq-digits"))
    assert (config.window, config.weighting, config.predict, config.reduction, config.second_forward) == (
        4, "late", "last", "mean", "post")
    model = registry.build_model("alif-rnn", "fptt", (1,), 10)
    learner = registry.learner_for(config, model, registry.make_optimizer("adam", 1e-3), alpha=0.1, beta=0.5)
    assert (learner.window, learner.reduction, learner.second_forward) == (4, "mean", "post")
    dual = registry.learner_for(dataclasses.replace(config, algo="fptt-dual", reduction=None, second_forward=None),
                                model, registry.make_optimizer("adam", 1e-3), alpha=0.1, beta=0.5)
    assert dual.window == 4


@pytest.mark.parametrize("option, value, algo, allowed", [
    ("window", 4, "bptt", "fptt or fptt-dual"),
    ("reduction", "sum", "fptt-dual", "fptt"),
    ("second_forward", "pre", "sltt", "fptt"),
    ("k", 2, "fptt", "sltt-k"),
])
def test_options_of_some_algorithms_are_refused_for_the_others(option, value, algo, allowed):
    with pytest.raises(app.ConfigError, match=rf"`{option}` only applies to `algo` {allowed}, got `algo` {algo}$"):
        app.Config(algo=algo, **{option: value}).validate()


@pytest.mark.parametrize("changes, field, message", [
    (dict(lr=-1.0), "lr", "`lr` must be a number > 0, got -1.0"),
    (dict(clip=-1.0), "clip", "`clip` must be a number >= 0 (0: no clipping), got -1.0"),
    (dict(epochs=0), "epochs", "`epochs` must be an integer >= 1, got 0"),
    (dict(seed=-1), "seed", "`seed` must be an integer >= 0, got -1"),
    (dict(optimizer="lamb"), "optimizer", "`optimizer` must be one of adam, sgd, adamw, got 'lamb'"),
    (dict(algo="rtrl"), "algo", "`algo` must be one of fptt, fptt-dual, ottt, ottt-a, sltt, sltt-k, bptt, got 'rtrl'"),
    (dict(warmup=3, epochs=3), "warmup", "`warmup` must be less than `epochs` (3), got 3"),
])
def test_config_errors_name_the_field(changes, field, message):
    with pytest.raises(app.ConfigError) as info:
        app.Config(**changes).validate()
    assert info.value.field == field and str(info.value) == message


def test_the_command_line_spells_fields_as_flags():
    from purelearn.app.cli import flag, flag_message

    assert flag("batch_size") == "--batch-size" and flag("out_dir") == "--out"
    assert flag_message("`k` only applies to `algo` sltt-k, `x_seq` stays") == (
        "--k only applies to --algo sltt-k, `x_seq` stays")


def test_compare_gives_each_algorithm_only_the_options_it_takes():
    fptt, bptt, sltt_k = configs_for(app.Config(window=2, k=3, epochs=2), ["fptt", "bptt", "sltt-k"])
    assert (fptt.algo, fptt.window, fptt.k, fptt.epochs) == ("fptt", 2, None, 2)
    assert (bptt.window, bptt.k) == (None, None)
    assert (sltt_k.window, sltt_k.k) == (None, 3)
    for config in (fptt, bptt, sltt_k):
        config.validate()


def test_compare_picks_the_algorithms_from_the_data_encoding(tmp_path):
    path = tmp_path / "my_seq.pt"
    torch.save({"x": torch.rand(12, 5), "y": torch.arange(12) % 2, "encoding": "sequential"}, path)
    assert default_algorithms(app.Config(data=str(path))) == registry.algorithms_for("alif-rnn")
    assert default_algorithms(app.Config(data=str(path), model="mlp")) == list(registry.ALGORITHMS)


# ----------------------------------------------------------------------------- fit and evaluate


def test_fit_is_deterministic_for_a_config():
    a = app.fit(app.Config(algo="ottt", **TINY))
    b = app.fit(app.Config(algo="ottt", **TINY))
    for x, y in zip(tree.leaves(a.carry.params), tree.leaves(b.carry.params), strict=True):
        assert torch.equal(x, y)
    c = app.fit(app.Config(algo="ottt", seed=1, **TINY))
    assert not tree.allclose(a.carry.params, c.carry.params)


def _test_inputs():
    split = data.load("digits", T=4).limit(64)
    return split, data.encode(split.test.x, "rate", 4, torch.Generator().manual_seed(app.EVAL_SEED))


def test_evaluate_matches_a_hand_written_forward_pass():
    result = app.fit(app.Config(algo="bptt", **TINY))
    split, x = _test_inputs()
    weights = task.time_weights("uniform", 4)
    loss, acc = app.evaluate(result.model, result.carry.params, x, split.test.y, weights, 10)
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


def test_evaluation_of_a_compact_test_set_batches_it_densely_and_equals_the_dense_set(monkeypatch):
    from purelearn.app import loop

    split = data.load("randman:classes=3,units=6,samples=5", T=8)
    x, y = app.loop.test_set(split, torch.device("cpu"))
    assert x is not split.test.x and isinstance(x, data.SpikeCounts) and torch.equal(y, split.test.y)
    model = registry.build_model("srnn", "bptt", (6,), 3, hidden=4)
    params, _ = app.init_params(model, 0, torch.zeros(1, 6), "srnn")
    weights = task.time_weights("late", 8)
    dense = app.evaluate(model, params, x.dense(), y, weights, 3)
    monkeypatch.setattr(loop, "EVAL_DENSE_ELEMENTS", 2 * 8 * 6)  # dense batches of 2 samples
    taken, take = [], data.take
    monkeypatch.setattr(loop.data, "take", lambda x, a, b: taken.append(b - a) or take(x, a, b))
    compact = app.evaluate(model, params, x, y, weights, 3)
    assert taken == [2, 1] and torch.allclose(torch.stack(dense), torch.stack(compact), atol=1e-6)  # 3 samples


def test_prediction_weights_are_separate_from_the_loss_weights():
    result = app.fit(app.Config(algo="bptt", **TINY))
    split, x = _test_inputs()
    uniform, last = task.time_weights("uniform", 4), task.time_weights("last", 4)
    loss_u, acc_u = app.evaluate(result.model, result.carry.params, x, split.test.y, uniform, 10)
    loss_l, acc_l = app.evaluate(result.model, result.carry.params, x, split.test.y, uniform, 10,
                                 predict_weights=last)
    assert torch.equal(loss_u, loss_l)  # the loss keeps its weights
    states, y_t = result.model.init_states(x[0]), None
    for t in range(4):
        y_t, states = result.model.apply(result.carry.params, states, x[t])
    assert acc_l.item() == (y_t.argmax(-1) == split.test.y).float().mean().item()


def test_progress_writes_one_line_per_epoch_when_not_on_a_terminal():
    stream = io.StringIO()
    app.fit(app.Config(algo="bptt", **{**TINY, "epochs": 2}), stream=stream)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in stream.getvalue()
    assert lines[0].startswith("epoch 1/2 [") and "2/2" in lines[0] and "test" in lines[0]
    bar = Progress(None, 3, "silent")
    bar.update("x")
    bar.close("y")


def test_progress_is_a_live_bar_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    bar = Progress(stream, 3, "epoch 1/1")
    assert bar.live
    for _ in range(3):
        bar.update("loss 0.5")
    bar.close("loss 0.4 test 90.0%")
    text = stream.getvalue()
    assert "\r" in text and text.endswith("\n") and "3/3, loss 0.4 test 90.0%" in text.splitlines()[-1]


def test_peak_memory_reports_its_kind():
    peak, kind = report.peak_memory("cpu")
    assert kind == "cpu_max_rss" and peak > 10 * 2**20


# ----------------------------------------------------------------------------- sweeps


def test_parse_values_lists_and_ranges():
    for text, expected in (("0.1,0.2", [0.1, 0.2]), ("1:3:3", [1.0, 2.0, 3.0]),
                           ("0.001:0.1:3:log", [0.001, 0.01, 0.1]), ("5", [5.0])):
        assert app.parse_values("lr", text) == pytest.approx(expected)


def test_parse_values_integers_and_errors():
    assert app.parse_values("seed", "0:2:3", integer=True) == [0, 1, 2]
    for bad in ("", "a,b", "1:2", "1:2:0", "0:1:3:log", "-1,2"):
        with pytest.raises(app.ConfigError, match="`lr`"):
            app.parse_values("lr", bad)


def test_sweep_over_seeds_and_tau_equals_fitting_each_config(tmp_path):
    # two epochs: the schedule, built once per row over the batched lr, moves between them
    base = app.Config(algo="ottt", **{**TINY, "epochs": 2})
    result = app.sweep_fit(base, {"seed": [0, 1], "tau": [2.0, 4.0]}, None)
    assert [(r["seed"], r["tau"]) for r in result["rows"]] == [(0, 2.0), (0, 4.0), (1, 2.0), (1, 4.0)]
    for i, row in enumerate(result["rows"]):
        single = app.fit(dataclasses.replace(base, seed=row["seed"], tau=row["tau"], data_seed=0))
        swept = tree.map(lambda a, i=i: a[i], result["params"])
        assert tree.max_abs_diff(swept, single.carry.params) <= 1e-5
        assert abs(row["test_loss"] - single.metrics["test_loss"]) <= 1e-5
    # the initial parameters follow the seed: different seeds end in different places
    assert not torch.allclose(result["params"]["1"]["weight"][0], result["params"]["1"]["weight"][2])


def test_sweep_on_binned_events_equals_fitting_each_config():
    base = app.Config(algo="bptt", data="randman:classes=2,units=6,samples=8", T=6, hidden=4, epochs=2,
                      batch_size=4)
    result = app.sweep_fit(base, {"lr": [0.01, 0.03]}, None)
    for i, row in enumerate(result["rows"]):
        single = app.fit(dataclasses.replace(base, lr=row["lr"], data_seed=0))
        assert single.config.model == "srnn"
        assert tree.max_abs_diff(tree.map(lambda a, i=i: a[i], result["params"]), single.carry.params) <= 1e-5
        assert abs(row["test_loss"] - single.metrics["test_loss"]) <= 1e-5


def test_sweep_over_tau_of_a_trained_time_constant_starts_each_row_from_its_tau():
    """In alif-rnn tau is the initial value of ALIF's trained tau_m: each row starts from its own."""
    base = app.Config(algo="bptt", data="seq-digits", epochs=1, limit=32, hidden=8, batch_size=16)
    result = app.sweep_fit(base, {"tau": [3.0, 8.0]}, None)
    for i, row in enumerate(result["rows"]):
        single = app.fit(dataclasses.replace(base, tau=row["tau"], data_seed=0))
        swept = tree.map(lambda a, i=i: a[i], result["params"])
        assert tree.max_abs_diff(swept, single.carry.params) == 0
        assert torch.allclose(swept["1"]["neuron"]["tau_m"], torch.full((8,), row["tau"]), atol=0.05)


def test_sweep_refuses_unknown_axes_and_compile():
    with pytest.raises(ValueError, match="cannot sweep 'beta'"):
        app.sweep_fit(app.Config(**TINY), {"beta": [0.1, 0.2]})
    with pytest.raises(app.ConfigError, match="`compile`"):
        app.sweep_fit(app.Config(compile=True, **TINY), {"lr": [0.1]})


# ----------------------------------------------------------------------------- compile


@pytest.mark.slow
def test_compiled_step_gives_the_same_numbers():
    """``compile=True``: OTTT's whole-sequence program through inductor (``compile.run``'s default; the
    inductor test of OTTT, tests/test_transforms.py has FPTT's) gives eager's numbers, one graph, no recompile."""
    pytest.importorskip("torch._inductor")
    import torch._dynamo
    from torch._dynamo.utils import counters

    # two epochs: the cosine schedule changes the learning rate the compiled step reads
    config = app.Config(algo="ottt", epochs=2, limit=32, T=3, hidden=8, batch_size=32)
    eager = app.fit(config)
    torch._dynamo.reset()
    counters.clear()
    try:
        with torch._dynamo.config.patch(error_on_recompile=True):
            compiled = app.fit(dataclasses.replace(config, compile=True))
        assert counters["stats"]["unique_graphs"] == 1  # the whole sequence, its middle steps one scan
    finally:
        torch._dynamo.reset()
    assert tree.max_abs_diff(eager.carry.params, compiled.carry.params) <= 1e-5
    for e, c in zip(eager.history, compiled.history, strict=True):  # every epoch's losses (the outputs)
        assert math.isclose(e["train_loss"], c["train_loss"], abs_tol=1e-5)
        assert math.isclose(e["test_loss"], c["test_loss"], abs_tol=1e-5)
    assert math.isclose(eager.metrics["test_loss"], compiled.metrics["test_loss"], abs_tol=1e-5)


def test_evaluation_of_a_batchnorm_model_uses_the_trained_running_statistics():
    """evaluate(..., states=carry.states) starts from fresh neuron memories and the trained BatchNorm
    statistics; without states it would normalise with fresh ones (mean 0, var 1)."""

    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), neurons.LIF(), nn.Linear(4, 2))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 8, 3, generator=g) * 3 + 5
    labels = torch.randint(0, 2, (8,), generator=g)
    params, states = model.init(torch.Generator().manual_seed(1), x[0])
    weights = app.time_weights("uniform", 6)
    trained = states
    for t in range(6):  # running statistics move towards the data's (mean 5·w, ...)
        _, trained = model.apply(params, trained, x[t])
    fresh_loss, _ = app.evaluate(model, params, x, labels, weights, 2)
    with_states, _ = app.evaluate(model, params, x, labels, weights, 2, states=trained)
    by_hand = model.inference()
    s, ys = by_hand.reset_states(trained), []
    for t in range(6):
        y_t, s = by_hand.apply(params, s, x[t])
        ys.append(y_t)
    expected = torch.stack([app.loss_fn(y, app.targets(labels, weights, 2)[t]) for t, y in enumerate(ys)]).mean()
    assert torch.allclose(with_states, expected)
    assert not torch.allclose(with_states, fresh_loss)
