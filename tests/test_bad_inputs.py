"""The bad-input catalogue (docs/bad_inputs.md): every row is a case here, and every case a row.

Each case runs a public entry point on one class of bad input and checks the exception type and
that the message names the argument (and the expected / received values). Learner cases also
check that nothing was touched: the carry's tensors keep their values and version counters.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from purelearn import distributed, models, neurons, nn, online, optim, scan, schedules, surrogate, sweep, tree
from purelearn.app.errors import ConfigError
from purelearn.app.loop import _check_shards
from purelearn.app.ranks import Ranks

ROOT = Path(__file__).resolve().parents[1]
CATALOGUE = (ROOT / "docs" / "bad_inputs.md").read_text()


def _model() -> nn.Sequential:
    return nn.Sequential(nn.Linear(3, 4), neurons.LIF(), nn.Linear(4, 2), neurons.LIF())


def _setup(learner_fn: Callable | None = None):
    model = _model()
    x = torch.rand(5, 2, 3)
    y = torch.rand(5, 2, 2)
    params, states = model.init(torch.Generator().manual_seed(0), x[0])
    learner = (learner_fn or (lambda m: online.fptt(m, F.mse_loss, optim.sgd(lr=0.1))))(model)
    return model, learner, learner.init(params, states), x, y


def _bptt_single_step():
    _, learner, carry, x, y = _setup(lambda m: online.bptt(m, F.mse_loss, optim.sgd(lr=0.1)))
    return learner.step(carry, x[0], y[0])


def _apply_with(params=None, states=None, x=None):
    model = _model()
    x0 = torch.rand(2, 3)
    p, s = model.init(torch.Generator().manual_seed(0), x0)
    s = model.apply(p, s, x0)[1]
    model.apply(params if params is not None else p, states if states is not None else s,
                x if x is not None else x0)


def _run_with(**replace):
    _, learner, carry, x, y = _setup()
    args = {"carry": carry, "x_seq": x, "y_seq": y}
    args.update(replace)
    learner.run(args["carry"], args["x_seq"], args["y_seq"])


def _carry_with(**fields):
    _, learner, carry, x, y = _setup()
    learner.step(carry._replace(**fields), x[0], y[0])


def _window_step(window: int, steps: int) -> None:
    """``learner.step`` of FPTT with ``window`` on the first ``steps`` steps (0: the first step itself, [N, F])."""
    _, learner, carry, x, y = _setup(lambda m: online.fptt(m, F.mse_loss, optim.sgd(lr=0.1), window=window))
    learner.step(carry, x[:steps] if steps else x[0], y[:steps] if steps else y[0])


def _sltt_k_run(k: int, T: int) -> None:
    model = nn.Sequential(nn.Linear(3, 4), neurons.SLTTLIF(), nn.Linear(4, 2), neurons.SLTTLIF())
    learner = online.sltt(model, F.mse_loss, optim.sgd(lr=0.1), k=k)
    carry = learner.init(*model.init(None, torch.rand(2, 3)))
    learner.run(carry, torch.rand(T, 2, 3), torch.rand(T, 2, 2))


def _step_with(**replace: Any) -> None:
    """``fptt.step`` on the first step of :func:`_setup` with ``replace`` (``carry``, ``x_t``, ``y_t``, ``last``)."""
    _, learner, carry, x, y = _setup()
    args = {"carry": carry, "x_t": x[0], "y_t": y[0], "last": False, **replace}
    learner.step(args["carry"], args["x_t"], args["y_t"], last=args["last"])


def _carry_of_another_learner() -> None:
    _, _, fptt_carry, x, y = _setup()
    online.bptt(_model(), F.mse_loss, optim.sgd(lr=0.1)).run(fptt_carry, x, y)


def _init_with_other_params() -> None:
    model, learner, _, x, _ = _setup()
    learner.init(_other_params(), model.init_states(x[0]))


def _half_optimizer_state() -> None:
    params = {"w": torch.ones(2)}
    opt = optim.adam()
    opt.update({"w": torch.ones(2)}, opt.init({"w": torch.ones(2, dtype=torch.float16)}), params)


def _sltt_model() -> nn.Sequential:
    return nn.Sequential(nn.Linear(3, 4), neurons.SLTTLIF(), nn.Linear(4, 2), neurons.SLTTLIF())


def _double_params():
    return tree.map(torch.Tensor.double, _model().init(None, torch.rand(2, 3))[0])


def _other_params():
    other = nn.Sequential(nn.Linear(3, 5), neurons.LIF(), nn.Linear(5, 2), neurons.LIF())
    return other.init(None, torch.rand(2, 3))[0]


def _batch_norm_apply(states_channels: int) -> None:
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4))
    x = torch.rand(2, 2, 5, 5)
    params, _ = model.init(None, x)
    other = nn.Sequential(nn.Conv2d(2, states_channels, 3), nn.BatchNorm2d(states_channels)).init_states(x)
    model.apply(params, other, x)


def _one_sample_batch_norm() -> None:
    model = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    params, states = model.init(None, torch.rand(4, 2))
    model.apply(params, states, torch.rand(1, 2))


def _to_nir_with(layer: Any, dt: float = 1e-4) -> None:
    """``to_nir`` of Linear(3, 4) then ``layer`` (needs the `nir` package, in the test extra)."""
    pytest.importorskip("nir")
    from purelearn.interop import to_nir
    model = nn.Sequential(nn.Linear(3, 4), layer)
    to_nir(model, model.init(None, torch.zeros(2, 3))[0], torch.zeros(2, 3), dt=dt)


def _from_nir_with(kind: str) -> None:
    """``from_nir`` of a graph with a node purelearn has no layer for, or with a branch."""
    nir = pytest.importorskip("nir")
    import numpy as np

    from purelearn.interop import from_nir
    if kind == "unsupported":
        graph = nir.NIRGraph.from_list(nir.Affine(weight=np.ones((2, 3)), bias=np.zeros(2)), nir.CubaLIF(
            tau_syn=np.full(2, 1e-3), tau_mem=np.full(2, 1e-3), r=np.ones(2), v_leak=np.zeros(2),
            v_threshold=np.ones(2)))
    else:
        graph = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([3])}),
                                    "a": nir.Linear(weight=np.ones((3, 3))), "b": nir.Linear(weight=np.ones((3, 3))),
                                    "output": nir.Output(output_type={"output": np.array([3])})},
                             edges=[("input", "a"), ("input", "b"), ("a", "output"), ("b", "output")])
    from_nir(graph)


# id -> (callable, exception type, regex the message must match)
CASES: dict[str, tuple[Callable[[], object], type[Exception], str]] = {
    # ---- model construction and apply
    "sequential-non-layer": (lambda: nn.Sequential(torch.nn.ReLU()), TypeError, r"layer 0.*ReLU.*from_torch"),
    "linear-bad-size": (lambda: nn.Linear(0, 3), ValueError, r"in_features.*positive int.*0"),
    "conv-bad-groups": (lambda: nn.Conv2d(3, 4, 3, groups=2), ValueError, r"groups.*2.*in_channels=3"),
    "dropout-bad-p": (lambda: nn.Dropout(1.5), ValueError, r"`p`.*\[0, 1\).*1.5"),
    "tau-not-above-1": (lambda: neurons.LIF(tau=0.5), ValueError, r"LIF: `tau` must be a finite number > 1, got 0.5"),
    "tau-not-number": (lambda: neurons.LIF(tau="2"), TypeError, r"`tau` must be a number or a tensor.*str"),
    "unknown-surrogate": (lambda: neurons.LIF(surrogate="nope"), ValueError, r"unknown surrogate 'nope'.*sigmoid"),
    "surrogate-alpha": (lambda: surrogate.Sigmoid(alpha=-1.0), ValueError, r"`alpha` must be a finite number > 0.*-1"),
    "x-not-tensor": (lambda: _apply_with(x=[[1.0, 2.0, 3.0]]), TypeError, r"`x` must be a tensor.*list"),
    "x-wrong-features": (lambda: _apply_with(x=torch.rand(2, 7)), ValueError,
                         r"Linear\(3, 4\).*last dimension 3.*\(2, 7\)"),
    "x-wrong-rank-conv": (lambda: nn.Sequential(nn.Conv2d(2, 4, 3)).init(None, torch.rand(2, 8, 8)), ValueError,
                          r"Conv2d\(2, 4\).*\[N, 2, H, W\].*\(2, 8, 8\)"),
    "batch-x-vs-states": (lambda: _apply_with(x=torch.rand(5, 3)), ValueError,
                          r"state `v` has shape \(2, 4\).*x has shape \(5, 4\)"),
    "params-structure": (lambda: _apply_with(params={"0": {}}), ValueError,
                         r"`params` does not match the model.*\['0', '2'\]"),
    "params-shape": (lambda: _apply_with(params=_other_params()), ValueError,
                     r"params\['weight'\]` must have shape \(4, 3\), got \(5, 3\)"),
    "params-dtype": (lambda: _apply_with(params=_double_params()),
                     TypeError, r"params\['\w+'\]` is torch.float64.*x is torch.float32"),
    "states-dtype": (lambda: _apply_with(states=_model().init_states(torch.rand(2, 3).double())), TypeError,
                     r"state `v` is torch.float64.*x is torch.float32"),
    "states-structure": (lambda: _apply_with(states={}), ValueError, r"`states` does not match the model"),
    "from-torch-unsupported": (lambda: nn.from_torch(torch.nn.Sequential(torch.nn.LSTM(3, 3)), torch.rand(2, 3)),
                               ValueError, r"layer 0 is a LSTM.*supported: torch.nn.Linear"),
    "from-torch-not-sequential": (lambda: nn.from_torch(torch.nn.Linear(3, 3), torch.rand(2, 3)), TypeError,
                                  r"`module` must be a torch.nn.Sequential.*Linear"),
    "to-nir-inexpressible": (lambda: _to_nir_with(neurons.LIF(v_reset=None)), ValueError,
                             r"^to_nir: layer 1 \(LIF\) uses a soft reset \(v_reset=None"),
    "to-nir-bad-dt": (lambda: _to_nir_with(neurons.LIF(), dt=0.0), ValueError,
                      r"^to_nir: `dt` must be a finite number > 0, got 0.0$"),
    "from-nir-unsupported-node": (lambda: _from_nir_with("unsupported"), ValueError,
                                  r"^from_nir: node 'cubalif' \(CubaLIF\) is not supported; supported nodes: Input, "),
    "from-nir-not-a-chain": (lambda: _from_nir_with("branch"), ValueError,
                             r"^from_nir: node 'input' feeds \['a', 'b'\]; purelearn reads chains \(nn.Sequential\)"),
    "residual-body-not-sequential": (lambda: nn.Residual(nn.Linear(3, 3)), TypeError,
                                     r"Residual: `body` must be a purelearn.nn.Sequential, got Linear"),
    "residual-shape-mismatch": (lambda: nn.Sequential(nn.Residual(nn.Sequential(nn.Linear(3, 4)))).init(
        None, torch.rand(2, 3)), ValueError, r"Residual: the body's output has shape \(2, 4\) but the shortcut's has"),
    "model-needs-images": (lambda: models.build("vgg", (2, 4, 4), 10, neurons.LIF), ValueError,
                           r"'vgg' needs image steps \[channels, H, W\] with H, W >= 8, got \[2, 4, 4\]"),
    "batchnorm-wrong-channels": (lambda: nn.Sequential(nn.BatchNorm2d(4)).init(None, torch.rand(2, 3, 8, 8)),
                                 ValueError, r"BatchNorm2d\(4\): input `x` must have shape \[N, 4, H, W\], got "
                                 r"\(2, 3, 8, 8\)"),
    "batchnorm-bad-momentum": (lambda: nn.BatchNorm2d(4, momentum=1.5), ValueError,
                               r"BatchNorm2d: `momentum` must be a finite number in \[0, 1\] or None, got 1.5"),
    "normalization-bad-eps": (lambda: nn.WSConv2d(2, 4, 3, eps=0.0), ValueError,
                              r"WSConv2d: `eps` must be a finite number > 0, got 0.0"),
    "batchnorm-state-shape": (lambda: _batch_norm_apply(states_channels=3), ValueError,
                              r"BatchNorm2d\(4\): state `running_mean` must have shape \(4,\), got \(3,\)"),
    "batchnorm-one-value-per-channel": (_one_sample_batch_norm, ValueError,
                                        r"BatchNorm1d\(3\): training needs more than one value per channel, "
                                        r"got input shape \(1, 3\)"),
    "from-torch-batchnorm-no-running-stats": (lambda: nn.from_torch(torch.nn.Sequential(
        torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3, track_running_stats=False)), torch.rand(2, 3)), ValueError,
        r"layer 1 BatchNorm1d must track running statistics \(track_running_stats=True\)"),
    "neuron-hyperparameter-not-finite": (lambda: neurons.LIF(v_threshold=float("inf")), ValueError,
                                         r"^LIF: `v_threshold` must be a finite number, got inf$"),
    "flag-not-bool": (lambda: neurons.LIF(decay_input="False"), TypeError,
                      r"^LIF: `decay_input` must be a bool \(True or False\), got 'False'$"),
    "x-not-floating": (lambda: _model().init(None, torch.ones(2, 3, dtype=torch.int64)), TypeError,
                       r"Sequential.init: input `x` must be a floating-point tensor \(params and states take its "
                       r"dtype\), got torch.int64"),
    # ---- optimizers
    "lr-negative": (lambda: optim.sgd(lr=-0.1), ValueError, r"sgd: `lr` must be a finite number >= 0, got -0.1"),
    "momentum-negative": (lambda: optim.sgd(lr=0.1, momentum=-0.5), ValueError,
                          r"`momentum` must be a finite number >= 0, got -0.5"),
    "betas-out-of-range": (lambda: optim.adam(betas=(0.9, 1.5)), ValueError, r"beta"),
    "lr-not-number": (lambda: optim.adam(lr="fast"), TypeError, r"`lr` must be a Python number or a torch.Tensor"),
    "grads-structure": (lambda: optim.sgd(lr=0.1).update({"a": torch.ones(2)}, optim.sgd(lr=0.1).init(
        {"b": torch.ones(2)}), {"b": torch.ones(2)}), ValueError, r"structure"),
    "schedule-bad-steps": (lambda: schedules.cosine_decay(0.1, decay_steps=0), ValueError,
                           r"cosine_decay: `decay_steps` must be an int >= 1, got 0"),
    "optimizer-hyperparameter-not-finite": (lambda: optim.sgd(lr=float("inf")), ValueError,
                                            r"^sgd: `lr` must be a finite number >= 0, got inf$"),
    "schedule-value-not-finite": (lambda: schedules.linear(1e300, 0.0, 4), ValueError,
                                  r"linear: `init_value` must be a finite number within float32's range \(\|x\| <= "
                                  r"3.403e\+38; .*\), got 1e\+300"),
    "optimizer-state-dtype": (_half_optimizer_state, TypeError,
                              r"adam: `state.mu` leaf 'w' is torch.float16 on cpu, expected torch.float32 on cpu \(as "
                              r"in `grads`\); an optimizer state has the dtype and device of the params"),
    "hyperparameter-not-a-schedule": (lambda: optim.sgd(lr=lambda: 0.1), TypeError,
                                      r"sgd: `lr` is callable, so it must be a schedule f\(count\)"),
    # ---- learners
    "alpha-not-positive": (lambda: online.fptt(_model(), F.mse_loss, optim.sgd(lr=0.1), alpha=0.0), ValueError,
                           r"fptt: `alpha` must be a finite number > 0, got 0.0"),
    "window-not-positive": (lambda: online.fptt(_model(), F.mse_loss, optim.sgd(lr=0.1), window=0), ValueError,
                            r"fptt: `window` must be >= 1 \(time steps per update\), got 0"),
    "window-step-single-step": (lambda: _window_step(window=4, steps=0), ValueError,
                                r"`x_win` must be a window \[L, N, features...\] \(3 or more dimensions\), got shape "
                                r"\(2, 3\)"),
    "window-step-too-long": (lambda: _window_step(window=4, steps=5), ValueError,
                             r"fptt.step: `x_win` has 5 time steps \(shape \(5, 2, 3\)\) but the learner's "
                             r"window is 4"),
    "loss-fn-not-callable": (lambda: online.fptt(_model(), "mse", optim.sgd(lr=0.1)), TypeError,
                             r"`loss_fn` must be callable"),
    "optimizer-not-transformation": (lambda: online.fptt(_model(), F.mse_loss, torch.optim.SGD), TypeError,
                                     r"`optimizer` must be a purelearn.optim transformation"),
    "y-seq-time-mismatch": (lambda: _run_with(y_seq=torch.rand(4, 2, 2)), ValueError,
                            r"`y_seq` has 4 time steps \(shape \(4, 2, 2\)\) but `x_seq` has 5"),
    "t-zero": (lambda: _run_with(x_seq=torch.rand(0, 2, 3), y_seq=torch.rand(0, 2, 2)), ValueError,
               r"T=0 time steps"),
    "x-seq-not-tensor": (lambda: _run_with(x_seq=[0.0]), TypeError, r"`x_seq` must be a tensor, got list"),
    "x-y-batch-mismatch": (lambda: _run_with(y_seq=torch.rand(5, 3, 2)), ValueError,
                           r"`y_t` has batch size 3.*`x_t` has 2"),
    "carry-params-other-model": (lambda: _carry_with(params=_other_params()), ValueError,
                                 r"`carry.params` and `carry.w_ra` disagree.*\(4,\).*\(5,\)"),
    "w-ra-structure": (lambda: _carry_with(w_ra={"0": {}}), ValueError, r"`carry.w_ra` has structure"),
    "loss-not-scalar": (lambda: online.fptt(_model(), lambda a, b: (a - b) ** 2, optim.sgd(lr=0.1)).run(
        *_setup()[2:]), ValueError, r"`loss_fn` must return a 0-d tensor.*\(2, 2\)"),
    "ottt-no-trace": (lambda: online.ottt(_model(), F.mse_loss, optim.sgd(lr=0.1)), ValueError,
                      r"layer 2 \(Linear\).*fed by layer 1 \(LIF\).*no presynaptic trace"),
    "ottt-batchnorm-takes-trace": (lambda: online.ottt(nn.Sequential(
        nn.Conv2d(2, 4, 3), neurons.OTTTLIF(), nn.BatchNorm2d(4), neurons.LIF()), F.mse_loss, optim.sgd(lr=0.1)),
        TypeError, r"layer 2 \(BatchNorm2d\) receives OTTTLIF 1's spike\+trace.*Conv2d -> BatchNorm2d -> OTTTLIF"),
    "ottt-no-trace-in-residual": (lambda: online.ottt(nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), neurons.OTTTLIF(), nn.Residual(nn.Sequential(
            nn.Conv2d(4, 4, 3, padding=1), neurons.LIF(), nn.Conv2d(4, 4, 3, padding=1)))), F.mse_loss,
        optim.sgd(lr=0.1)), ValueError, r"ottt: layer 2\.body\.2 \(Conv2d\) has parameters and is fed by layer "
        r"2\.body\.1 \(LIF\), which emits no presynaptic trace"),
    "ottt-batchnorm-takes-trace-in-residual": (lambda: online.ottt(nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), neurons.OTTTLIF(), nn.Residual(nn.Sequential(
            nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3, padding=1)))), F.mse_loss, optim.sgd(lr=0.1)), TypeError,
        r"layer 2\.body\.0 \(BatchNorm2d\) receives the OTTTLIF before residual block 2's spike\+trace"),
    "ottt-recurrent-takes-trace": (lambda: online.ottt(nn.Sequential(
        nn.Linear(3, 4), neurons.OTTTLIF(), nn.Residual(nn.Sequential(nn.Recurrent(neurons.LIF(), 4, 4)))),
        F.mse_loss, optim.sgd(lr=0.1)), TypeError,
        r"layer 2\.body\.0 \(Recurrent\) has parameters and state and receives the OTTTLIF before residual block 2's"),
    "sltt-not-sltt-neurons": (lambda: online.sltt(_model(), F.mse_loss, optim.sgd(lr=0.1)), ValueError,
                              r"sltt: layer 1 is LIF; SLTT needs neurons.SLTTLIF"),
    "sltt-k-exceeds-t": (lambda: _sltt_k_run(k=9, T=5), ValueError, r"`k`=9 exceeds the sequence length T=5"),
    "bptt-single-step": (_bptt_single_step, ValueError, r"bptt.step: `x_win` must be a window \[L, N, features...\]"),
    "learner-hyperparameter-not-finite": (lambda: online.fptt_dual(_model(), F.mse_loss, optim.sgd(lr=0.1),
                                                                   rho=-float("inf")), ValueError,
                                          r"^fptt_dual: `rho` must be a finite number, got -inf$"),
    "alpha-underflows": (lambda: online.fptt(_model(), F.mse_loss, optim.sgd(lr=0.1), alpha=1e-300), ValueError,
                         r"fptt: `alpha` must be a finite number > 0 and at least 1.175e-38 \(float32's smallest "
                         r"normal number: .*\), got 1e-300"),
    "seed-not-an-int": (lambda: online.sltt(_sltt_model(), F.mse_loss, optim.sgd(lr=0.1), k=2, seed=1.5), TypeError,
                        r"^sltt: `seed` must be an int >= 0 \(a seed\), got float 1.5$"),
    "carry-of-another-learner": (_carry_of_another_learner, TypeError,
                                 r"bptt.step: `carry` must be a BPTTCarry, made by this learner's init\(params, "
                                 r"states\), got a FPTTCarry \(another learner's carry\)"),
    "init-params-other-model": (_init_with_other_params, ValueError,
                                r"fptt.init: `params` does not match the model: layer 0 \(Linear\(3, 4\)\): "
                                r"`params\['0'\]\['bias'\]` must have shape \(4,\), got \(5,\)"),
    "empty-batch": (lambda: _run_with(x_seq=torch.rand(5, 0, 3), y_seq=torch.rand(5, 0, 2)), ValueError,
                    r"FPTT: `x_seq` is an empty batch \(N=0, shape \(5, 0, 3\)\); a sequence needs N >= 1"),
    "static-option-not-bool": (lambda: _step_with(last="False"), TypeError,
                               r"^fptt.step: `last` must be a bool \(True or False\), got 'False'$"),
    "y-without-batch-axis": (lambda: _step_with(y_t=torch.tensor(0.5)), ValueError,
                             r"fptt.step: `y_t` must have a batch axis \[N, ...\] like `x_t` \(N=2\), got a 0-d "
                             r"tensor; targets are not broadcast"),
    "y-other-dtype": (lambda: _step_with(y_t=torch.rand(2, 2, dtype=torch.float64)), TypeError,
                      r"fptt.step: `y_t` is torch.float64 on cpu but `x_t` is torch.float32 on cpu; targets must have "
                      r"x's dtype \(or an integer dtype, class indices\) on x's device: they are not promoted"),
    "non-finite-loss": (lambda: online.check_finite(online.fptt(_model(), F.mse_loss, optim.sgd(lr=0.1))).run(
        *_setup()[2:4], torch.full((5, 2, 2), float("nan")), sequence=3), FloatingPointError,
        r"non-finite loss nan at step t=0 of sequence 3"),
    # ---- utilities
    "stack-empty": (lambda: tree.stack([]), ValueError, r"`trees` must hold at least one tree"),
    "stack-structure": (lambda: tree.stack([{"a": torch.ones(1)}, {"b": torch.ones(1)}]), ValueError,
                        r"trees\[1\] has structure"),
    "scan-length-zero": (lambda: scan(lambda c, x: (c, x), 0, torch.zeros(0, 2)), ValueError, r"length 0"),
    "grid-empty-axis": (lambda: sweep.grid(lr=[]), ValueError, r"`lr` must be a non-empty list"),
    # ---- the application's configuration
    "config-bad-value": (lambda: _app().Config(lr=-1.0).validate(), ValueError,
                         r"^`lr` must be a number > 0, got -1.0$"),
    # ---- data parallelism
    "data-parallel-not-data-parallel": (lambda: online.fptt(_model(), F.mse_loss, optim.sgd(lr=0.1),
                                                            data_parallel="gloo"),
                                        TypeError, r"fptt: `data_parallel` must be a "
                                                   r"purelearn.distributed.DataParallel or None, got str"),
    "data-parallel-loss-reduction": (lambda: distributed.DataParallel(loss_reduction="avg"), ValueError,
                                     r"`loss_reduction` must be 'mean' or 'sum', got 'avg'"),
    "shard-fewer-samples-than-ranks": (lambda: distributed.shard_bounds(3, 4, 0), ValueError,
                                       r"a batch of 3 sample\(s\) cannot give each of 4 ranks at least one"),
    "ranks-batch-too-small": (lambda: _check_shards(Ranks(rank=0, world=4), n_train=60, batch_size=3, n_test=8),
                              ConfigError, r"`batch_size` 3 over 60 training samples gives a batch of 3 sample\(s\), "
                                           r"fewer than the 4 ranks"),
}


def _app():  # imported on use: the rest of the catalogue needs no application (sklearn, tqdm)
    from purelearn import app

    return app


def catalogue_ids() -> list[str]:
    return re.findall(r"^\| `([a-z0-9-]+)` \|", CATALOGUE, re.M)


def test_every_catalogue_row_is_a_case_and_every_case_a_row() -> None:
    ids = catalogue_ids()
    assert len(ids) == len(set(ids)), "duplicate ids in docs/bad_inputs.md"
    assert sorted(ids) == sorted([*CASES, *FILE_CASES, *FILE_CASES_SPECIAL, *CLI_CASES])


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_bad_input_raises_a_clear_error(case_id: str) -> None:
    fn, exc, pattern = CASES[case_id]
    with pytest.raises(exc, match=pattern):
        fn()


def test_learner_errors_leave_the_carry_untouched() -> None:
    _, learner, carry, x, y = _setup()
    before = [(leaf.clone(), leaf._version) for leaf in tree.leaves(carry)]
    for bad in (dict(y_seq=torch.rand(4, 2, 2)), dict(y_seq=torch.rand(5, 3, 2)),
                dict(x_seq=x[:, :0], y_seq=y[:, :0]), dict(y_seq=y[:, 0, 0])):
        with pytest.raises(ValueError):
            learner.run(carry, bad.get("x_seq", x), bad.get("y_seq", y))
    for bad_x, bad_y, last in ((x[0], torch.tensor(0.5), False), (x[0], y[0], "False"), (x[0], y[0].double(), True),
                               (x[0].long(), y[0], False)):
        with pytest.raises((TypeError, ValueError)):
            learner.step(carry, bad_x, bad_y, last=last)
    with pytest.raises(TypeError):  # this carry given to another learner type
        online.bptt(_model(), F.mse_loss, optim.sgd(lr=0.1)).run(carry, x, y)
    for (value, version), leaf in zip(before, tree.leaves(carry), strict=True):
        assert torch.equal(value, leaf) and version == leaf._version


# ---- files: checkpoints and user data


def _truncated_checkpoint(tmp_path: Path) -> None:
    from purelearn import checkpoint

    path = tmp_path / "checkpoint.pt"
    checkpoint.save(path, {"w": torch.ones(3)})
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    checkpoint.load(path)


def _corrupt_checkpoint(tmp_path: Path) -> None:
    from purelearn import checkpoint

    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"not a checkpoint" * 8)
    checkpoint.load(path)


def _flipped_byte_checkpoint(tmp_path: Path) -> None:
    from purelearn import checkpoint

    path = tmp_path / "checkpoint.pt"
    checkpoint.save(path, {"w": torch.arange(64, dtype=torch.float32)})
    raw = bytearray(path.read_bytes())
    raw[raw.index(torch.tensor([10.0, 11.0]).numpy().tobytes()) + 2] ^= 0x01  # 10.0 -> another finite weight
    path.write_bytes(bytes(raw))
    checkpoint.load(path)


def _hand_made_checkpoint(tmp_path: Path) -> None:
    from purelearn import checkpoint

    node: dict[str, Any] = {"value": 0}
    for _ in range(200):
        node = {"list": [node]}
    structure = json.dumps(node)
    path = tmp_path / "checkpoint.pt"
    torch.save({"format": checkpoint.FORMAT, "version": checkpoint.VERSION, "structure": structure, "tensors": [],
                "sha256": checkpoint.digest(structure, [])}, path)
    checkpoint.load(path)


TINY_RUN = dict(limit=64, T=4, hidden=16, batch_size=32, epochs=1)


def _run_folder(tmp_path: Path, name: str = "run", **config: Any) -> Path:
    """A finished 1-epoch tiny run (FPTT on digits unless ``config`` says otherwise) in tmp_path/name."""
    folder = tmp_path / name
    _app().fit(_app().Config(**{**TINY_RUN, **config}), str(folder), plot=False)
    return folder


def _run_checkpoint_without_epoch(tmp_path: Path) -> None:
    from purelearn import checkpoint

    folder = _run_folder(tmp_path)
    state = checkpoint.load(folder / "checkpoint.pt")
    del state["epoch"]
    checkpoint.save(folder / "checkpoint.pt", state)
    _app().fit(_app().Config(), resume=str(folder), plot=False)


def _checkpoint_of_another_algorithm(tmp_path: Path) -> None:
    from purelearn import checkpoint

    folder, other = _run_folder(tmp_path), _run_folder(tmp_path, "bptt", algo="bptt")
    state = checkpoint.load(folder / "checkpoint.pt")
    state["carry"] = checkpoint.load(other / "checkpoint.pt")["carry"]
    checkpoint.save(folder / "checkpoint.pt", state)
    _app().fit(_app().Config(), resume=str(folder), epochs=2, plot=False)


def _wrong_layout(tmp_path: Path) -> None:
    from purelearn import data

    path = tmp_path / "data.pt"
    torch.save({"x": torch.rand(10, 4), "y": torch.zeros(9, dtype=torch.long), "encoding": "rate"}, path)
    data.load_tensor_file(path)


def _data_file(tmp_path: Path, **blob: Any) -> None:
    """``data.load_tensor_file`` of a file holding ``blob`` (the keys given replace a good x [10, 4, 3], y [10])."""
    from purelearn import data

    path = tmp_path / "data.pt"
    torch.save({"x": torch.rand(10, 4, 3), "y": torch.arange(10) % 2, **blob}, path)
    data.load_tensor_file(path)


def _load(spec: str, T: int | None = None) -> object:
    from purelearn import data

    return data.load(spec, T)


def _not_hdf5(tmp_path: Path) -> None:
    for part in ("train", "test"):
        (tmp_path / f"shd_{part}.h5").write_bytes(b"not an HDF5 file")
    _load(f"shd:{tmp_path}")


def _shd(tmp_path: Path, edit: Callable[[Any], object] | None = None, both: bool = False, options: str = "",
         T: int | None = None, **layout: Any) -> None:
    """``data.load("shd:tmp_path" + options, T)`` of files written with h5py in the published layout
    (``layout`` replaces times, units, labels or keys in shd_train.h5, or in both files with ``both``),
    the same files then changed by ``edit(file)``."""
    h5py, np = pytest.importorskip("h5py"), pytest.importorskip("numpy")

    def ragged(rows: list[list[float]], dtype: str) -> Any:
        out = np.empty(len(rows), dtype=object)
        for i, row in enumerate(rows):
            out[i] = np.asarray(row, dtype=dtype)
        return out

    good = {"times": [[0.1, 0.2], [0.3], [], [0.5, 0.6]], "units": [[1, 2], [3], [], [5, 6]], "labels": [0, 1, 2, 0],
            "keys": ["a", "b", "c"]}
    for part in ("train", "test"):
        spec = {**good, **layout} if part == "train" or both else good
        with h5py.File(tmp_path / f"shd_{part}.h5", "w") as f:
            f.create_dataset("spikes/times", data=ragged(spec["times"], "float32"), dtype=h5py.vlen_dtype(np.float32))
            f.create_dataset("spikes/units", data=ragged(spec["units"], "uint16"), dtype=h5py.vlen_dtype(np.uint16))
            f.create_dataset("labels", data=np.asarray(spec["labels"], dtype="uint8"))
            f.create_dataset("extra/keys", data=np.array([k.encode() for k in spec["keys"]]))
            if edit is not None and (part == "train" or both):
                edit(f)
    _load(f"shd:{tmp_path}{options},cache=none", T)


def _replace(key: str, value: Any) -> Callable[[Any], object]:
    def edit(f: Any) -> None:
        del f[key]
        f.create_dataset(key, data=value)
    return edit


FILE_CASES: dict[str, tuple[Callable[[Path], object], type[Exception], str]] = {
    "file-checkpoint-truncated": (_truncated_checkpoint, ValueError, r"checkpoint .* is truncated or corrupt"),
    "file-checkpoint-corrupt": (_corrupt_checkpoint, ValueError, r"checkpoint .* is truncated or corrupt"),
    "file-checkpoint-flipped-byte": (_flipped_byte_checkpoint, ValueError,
                                     r"checkpoint .*checkpoint.pt is corrupt: its contents do not match the SHA-256 "
                                     r"stored in it \(the file changed after it was written\)"),
    "file-checkpoint-hand-made": (_hand_made_checkpoint, ValueError,
                                  r"checkpoint .*checkpoint.pt is corrupt: checkpoint structure is nested more than 64 "
                                  r"levels deep"),
    "file-checkpoint-not-a-run": (_run_checkpoint_without_epoch, ValueError,
                                  r"checkpoint .*checkpoint.pt is not a run's checkpoint: key\(s\) \['epoch'\] "
                                  r"missing"),
    "file-checkpoint-other-algorithm": (_checkpoint_of_another_algorithm, ValueError,
                                        r"checkpoint .*checkpoint.pt holds a BPTTCarry, but its config's algorithm "
                                        r"fptt carries a FPTTCarry: the carry is not of this run"),
    "file-data-wrong-layout": (_wrong_layout, ValueError, r"key 'y' must have one label per sample of 'x' "
                                                          r"\(N=10\), got 9 labels"),
    "file-data-label-out-of-range": (lambda p: _data_file(p, y=torch.tensor([0] * 9 + [2**40])), ValueError,
                                     r"key 'y' must hold class labels 0..16777215 \(at most 16777216 classes, "
                                     r"2\*\*24\), got 1099511627776 at sample 9$"),
    "file-data-not-dense": (lambda p: _data_file(p, x=torch.rand(10, 4, 3).to_sparse()), ValueError,
                            r"key 'x' must be a dense tensor, got a sparse_coo tensor of shape \[10, 4, 3\]; save it "
                            r"with .to_dense\(\)$"),
    "file-data-foreign-objects": (lambda p: _data_file(p, x=__import__("numpy").zeros((10, 4, 3))), ValueError,
                                  r"not a readable torch.save file of plain tensors \(UnpicklingError: it holds "
                                  r"objects that need numpy.*, but only tensors, dicts, lists, tuples, numbers and "
                                  r"strings are read from files, since other objects can run code when loaded"),
    "file-shd-missing": (lambda p: _load(f"shd:{p}"), FileNotFoundError,
                         r"shd_train.h5 does not exist: shd:DIR reads shd_train.h5, shd_test.h5 from DIR .* "
                         r"\"Heidelberg spiking datasets\" page \(zenkelab.org/datasets, mirror "
                         r"compneuro.net/datasets\): download them and gunzip them into"),
    "file-shd-not-hdf5": (_not_hdf5, ValueError, r"shd_train.h5: not a readable HDF5 file"),
    "file-shd-missing-key": (lambda p: _shd(p, lambda f: f.__delitem__("spikes/units")), ValueError,
                             r"shd_train.h5: key 'spikes/units' is missing; the SHD/SSC layout has spikes/times, "
                             r"spikes/units and labels"),
    "file-shd-not-ragged": (lambda p: _shd(p, _replace("spikes/times", [[0.1, 0.2]] * 4)), ValueError,
                            r"key 'spikes/times' must hold a variable-length array per sample, got a dataset of "
                            r"shape \(4, 2\)"),
    "file-shd-sample-count-mismatch": (lambda p: _shd(p, units=[[1, 2], [3], []]), ValueError,
                                       r"key 'spikes/units' has 3 samples but 'labels' has 4"),
    "file-shd-spike-count-mismatch": (lambda p: _shd(p, units=[[1, 2], [3], [4], [5, 6]]), ValueError,
                                      r"key 'spikes/units' has 1 units in sample 2 but 'spikes/times' has 0 times"),
    "file-shd-unit-out-of-range": (lambda p: _shd(p, units=[[1, 700], [3], [], [5, 6]]), ValueError,
                                   r"key 'spikes/units' must hold units 0..699, got 700 in sample 0"),
    "file-shd-label-out-of-range": (lambda p: _shd(p, labels=[0, 3, 1, 2]), ValueError,
                                    r"key 'labels' must hold class labels 0..2 \(extra/keys names 3 classes\), got 3 "
                                    r"at sample 1"),
    "file-shd-no-samples": (lambda p: _shd(p, times=[], units=[], labels=[]), ValueError,
                            r"key 'labels' holds no samples; a data file needs at least one"),
    "file-shd-no-finite-times": (lambda p: _shd(p, both=True, times=[[float("nan")], [], [], [float("inf")]],
                                                units=[[1], [], [], [2]]), ValueError,
                                 r"key 'spikes/times' holds no finite spike time in any sample; there is nothing to "
                                 r"bin"),
    "data-spec-bad-option": (lambda p: _load(f"shd:{p},bins=3"), ValueError,
                             r"--data shd: unknown option\(s\) \['bins'\]; shd takes dt, span, cache"),
    "data-bin-options": (lambda p: _shd(p, options=",dt=0.1,span=1", T=4), ValueError,
                         r"give at most two of T, dt and span"),
}
FILE_CASES_SPECIAL = ("file-interrupted-write", "file-orphaned-temporaries", "file-stale-lock")


@pytest.mark.parametrize("case_id", sorted(FILE_CASES))
def test_bad_file_raises_a_clear_error(case_id: str, tmp_path: Path) -> None:
    fn, exc, pattern = FILE_CASES[case_id]
    with pytest.raises(exc, match=pattern):
        fn(tmp_path)


def test_interrupted_checkpoint_write_keeps_the_previous_checkpoint(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from purelearn import checkpoint

    path = tmp_path / "checkpoint.pt"
    checkpoint.save(path, {"w": torch.ones(3)})

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("simulated crash before the atomic rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        checkpoint.save(path, {"w": torch.zeros(3)})
    monkeypatch.undo()
    assert torch.equal(checkpoint.load(path)["w"], torch.ones(3))


def test_orphaned_temporaries_are_removed_when_a_run_next_starts_there(tmp_path: Path) -> None:
    folder = _run_folder(tmp_path)
    for name in (".tmp-checkpoint.pt-a1b2c3d4", "metrics.json.tmp", "notes.txt"):
        (folder / name).write_bytes(b"left by a killed process")
    with pytest.warns(UserWarning, match=r"removed 2 temporary file\(s\) that an interrupted run left in"):
        _app().fit(_app().Config(), resume=str(folder), epochs=2, plot=False)
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint.pt", "metrics.json", "notes.txt"]


def test_a_stale_lock_is_taken_over_with_a_warning(tmp_path: Path) -> None:
    from purelearn.app import lock

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          timeout=60, check=True)
    pid = int(dead.stdout)
    host = __import__("socket").gethostname()
    (tmp_path / lock.LOCK_FILE).write_text(json.dumps({"pid": pid, "host": host, "started": "then"}))
    with pytest.warns(UserWarning, match=rf"took over the lock of run folder .* from a process that no longer runs "
                                         rf"\(pid {pid} on host"):
        held = lock.acquire(str(tmp_path))
    assert lock.owner_of(str(tmp_path))["pid"] != pid
    held.release()


# ---- the command line: one line on stderr, exit code 2 (3: diverged), no traceback


def _out_holds_a_run(tmp_path: Path, stack: contextlib.ExitStack) -> list[str]:
    first, other = _run_folder(tmp_path), _run_folder(tmp_path, "other")
    return ["train", "--resume", str(first), "--epochs", "2", "--out", str(other)]


def _compare_into_earlier_runs(tmp_path: Path, stack: contextlib.ExitStack) -> list[str]:
    _run_folder(tmp_path / "cmp", "fptt")
    return ["compare", "--algos", "fptt", "--epochs", "1", "--limit", "64", "--out", str(tmp_path / "cmp")]


def _run_folder_in_use(tmp_path: Path, stack: contextlib.ExitStack) -> list[str]:
    from purelearn.app import lock

    folder = _run_folder(tmp_path)
    stack.enter_context(lock.hold(str(folder)))
    return ["train", "--resume", str(folder), "--epochs", "2"]


def _resume_fewer_epochs(tmp_path: Path, stack: contextlib.ExitStack) -> list[str]:
    folder = _run_folder(tmp_path, epochs=2)
    return ["train", "--resume", str(folder), "--epochs", "1"]


def _resume_changed_data(tmp_path: Path, stack: contextlib.ExitStack) -> list[str]:
    path = tmp_path / "data.pt"
    x = torch.rand(16, 4, generator=torch.Generator().manual_seed(0))
    torch.save({"x": x, "y": (x.sum(1) > 2).long(), "encoding": "rate"}, path)
    folder = _run_folder(tmp_path, data=str(path))
    torch.save({"x": x.flip(0), "y": (x.flip(0).sum(1) > 2).long(), "encoding": "rate"}, path)
    return ["train", "--resume", str(folder), "--epochs", "2"]


def _disk_full_at_the_second_checkpoint(tmp_path: Path, stack: contextlib.ExitStack) -> list[str]:
    import errno
    import os

    replace, saves = os.replace, []

    def full(src: Any, dst: Any) -> None:
        if str(dst).endswith("checkpoint.pt"):
            saves.append(dst)
            if len(saves) == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
        replace(src, dst)

    stack.enter_context(pytest.MonkeyPatch.context()).setattr(os, "replace", full)
    return ["train", *TINY_ARGV, "--epochs", "2", "--out", str(tmp_path / "run")]


def _resume_hand_made(tmp_path: Path, stack: contextlib.ExitStack) -> list[str]:
    from purelearn import checkpoint

    folder = tmp_path / "run"
    folder.mkdir()
    node: dict[str, Any] = {"value": 0}
    for _ in range(200):
        node = {"list": [node]}
    structure = json.dumps(node)
    torch.save({"format": checkpoint.FORMAT, "version": checkpoint.VERSION, "structure": structure, "tensors": [],
                "sha256": checkpoint.digest(structure, [])}, folder / "checkpoint.pt")
    return ["train", "--resume", str(folder), "--epochs", "2"]


def _too_large_for_memory(tmp_path: Path, stack: contextlib.ExitStack) -> list[str]:
    from purelearn.app import memory

    if memory.available("cpu") is None:  # no /proc/meminfo here: the machine's memory as a number
        stack.enter_context(pytest.MonkeyPatch.context()).setattr(memory, "available", lambda _: (2**34, "available"))
    return ["train", *TINY_ARGV, "--hidden", str(10**12), "--out", str(tmp_path / "run")]


TINY_ARGV = ["--limit", "64", "--T", "4", "--hidden", "16", "--batch-size", "32", "--no-plot", "--quiet"]

def _under_torchrun(argv: list[str]) -> Callable[[Path, contextlib.ExitStack], list[str]]:
    """``argv`` run with ``WORLD_SIZE=2`` in the environment, as torchrun starts a rank."""
    def prepare(tmp: Path, stack: contextlib.ExitStack) -> list[str]:
        import os

        before = os.environ.get("WORLD_SIZE")
        os.environ["WORLD_SIZE"] = "2"
        stack.callback(lambda: os.environ.pop("WORLD_SIZE") if before is None else os.environ.update(
            WORLD_SIZE=before))
        return argv

    return prepare


CLI_CASES: dict[str, tuple[list[str] | Callable[[Path, contextlib.ExitStack], list[str]], str]] = {
    "cli-unknown-algo": (["train", "--algo", "nope"], r"argument --algo: invalid choice: 'nope'"),
    "cli-bad-path": (["train", "--data", "/nonexistent/data.pt"], r"--data .* '/nonexistent/data.pt' does not exist"),
    "cli-out-of-range": (["train", "--epochs", "0"], r"argument --epochs: expected an integer >= 1, got '0'"),
    "cli-option-of-another-algo": (["train", "--algo", "bptt", "--alpha", "0.2"],
                                   r"--alpha only applies to --algo fptt or fptt-dual, got --algo bptt$"),
    "cli-int-out-of-range": (["train", "--seed", str(2**70)], r"argument --seed: expected an integer in "
                                                             r"0..9223372036854775807 \(2\*\*63 - 1\), got "
                                                             r"'1180591620717411303424'"),
    "cli-device-not-trainable": (["train", "--device", "meta"], r"--device meta: a meta device holds shapes, not "
                                                                r"values, so nothing can be trained on it; use cpu, "
                                                                r"cuda, mps"),
    "cli-too-large-for-memory": (_too_large_for_memory,
                                 r"error: --hidden 1000000000000 is too large: the run needs at least .* of memory "
                                 r"\(parameters and their gradients: .*\), more than the .* available .*; lower "
                                 r"--hidden$"),
    "cli-sweep-too-many-configs": (["sweep", "--lr", "0.001:0.01:1000", "--alpha", "0.1:0.2:1000"],
                                   r"sweep: 1000 --lr × 1000 --alpha values make 1000000 configurations, more than "
                                   r"--max-configs 1024; .* give fewer values, or raise --max-configs"),
    "cli-disk-full-at-checkpoint": (_disk_full_at_the_second_checkpoint,
                                    r"error: could not write .*run/checkpoint.pt: no space left on the device \(the "
                                    r"disk is full\); ENOSPC; epoch 2 was not saved; the last good checkpoint \(epoch "
                                    r"1\) is kept in .*run: free space \(or make the folder writable\) and continue "
                                    r"with --resume .*run$"),
    "cli-resume-hand-made-checkpoint": (_resume_hand_made, r"^purelearn train: error: checkpoint .*run/checkpoint.pt "
                                                           r"is corrupt: checkpoint structure is nested more than 64 "
                                                           r"levels deep$"),
    "cli-unwritable-out": (["train", "--limit", "40", "--epochs", "1", "--out", "/proc/purelearn-forbidden/x"],
                           r"--out /proc/purelearn-forbidden/x: cannot write there"),
    "cli-data-missing-file": (["data", "shd:/nonexistent/shd"],
                              r"^purelearn data: error: /nonexistent/shd/shd_train.h5 does not exist: shd:DIR reads"),
    "cli-out-holds-a-run": (_out_holds_a_run, r"--out .*other already holds a run \(checkpoint.pt, metrics.json\); "
                                              r"continue it with --resume .*other, pass --overwrite to replace it, or "
                                              r"choose another --out$"),
    "cli-compare-earlier-runs": (_compare_into_earlier_runs,
                                 r"^purelearn compare: error: --out .*cmp: .*cmp/fptt already holds results "
                                 r"\(checkpoint.pt, metrics.json\); pass --overwrite to replace them"),
    "cli-run-folder-in-use": (_run_folder_in_use, r"run folder .*run is in use by another purelearn process \(pid \d+ "
                                                  r"on host .*, since .*\); wait for it to end, or use another folder"),
    "cli-diverged": (["train", "--lr", "1e30", "--limit", "64", "--T", "4", "--hidden", "16", "--batch-size", "32",
                      "--epochs", "2", "--no-plot", "--quiet", "--out", "{tmp}/run"],
                     r"training diverged: non-finite loss \(nan\) at batch 1 of 2 in epoch 1; no checkpoint was "
                     r"written; try a lower --lr or gradient clipping \(--clip\)"),
    "cli-resume-fewer-epochs": (_resume_fewer_epochs, r"--epochs 1 is below the 2 epochs the run in .*run has done; "
                                                      r"give --epochs >= 2, or leave it out"),
    "cli-dist-timeout": (["train", "--dist-timeout", "0"], r"argument --dist-timeout: expected a finite number > 0, "
                                                           r"got '0'"),
    "cli-compare-under-torchrun": (_under_torchrun(["compare", "--algos", "fptt"]),
                                   r"^purelearn compare: error: compare runs in one process; launch it without "
                                   r"torchrun \(only train and sweep run across ranks\)$"),
    "cli-resume-changed-data": (_resume_changed_data,
                                r"error: the data of the run in .*run changed since its checkpoint \(fingerprint "
                                r"sha256:.* then, sha256:.* now\): resuming would not continue the run exactly; "
                                r"restore the data, or pass --allow-changed-data to continue on the new data$"),
}
#: Exit codes other than 2.
CLI_EXIT_CODES = {"cli-diverged": 3, "cli-disk-full-at-checkpoint": 4}


@pytest.mark.parametrize("case_id", sorted(CLI_CASES))
def test_bad_command_line_is_one_line_and_its_exit_code(case_id: str, capsys: pytest.CaptureFixture[str],
                                                        tmp_path: Path) -> None:
    from purelearn.app import cli

    argv, pattern = CLI_CASES[case_id]
    with contextlib.ExitStack() as stack:
        argv = argv(tmp_path, stack) if callable(argv) else [a.replace("{tmp}", str(tmp_path)) for a in argv]
        capsys.readouterr()
        try:
            code = cli.main(argv)
        except SystemExit as exit_:
            code = exit_.code
    err = capsys.readouterr().err.strip()
    assert code == CLI_EXIT_CODES.get(case_id, 2)
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert re.search(pattern, err), err
