"""The protocol every learner shares: the issue's acceptance code, carry and output types, purity,
``vmap`` over hyperparameters and seeds, ``torch.compile``, and the refusal of bad input before
anything changes."""

from __future__ import annotations

import re
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from _learner_helpers import TOL, assert_untouched, snapshot

from purelearn import neurons, nn, online, optim, sweep, tree

# --------------------------------------------------------------------------------------------------
# The learners, on the same tiny problem
# --------------------------------------------------------------------------------------------------

LEARNERS = ["fptt", "fptt_dual", "ottt", "ottt_accumulate", "sltt", "sltt_online", "sltt_k", "bptt"]
STEPPING = [name for name in LEARNERS if name != "bptt"]

CARRY = {
    "fptt": (online.FPTTCarry, ("params", "states", "opt_state", "w_ra", "grad_last")),
    "fptt_dual": (online.FPTTDualCarry, ("params", "states", "opt_state", "w_bar", "lam")),
    "ottt": (online.OTTTCarry, ("params", "states", "opt_state", "grad_sum")),
    "ottt_accumulate": (online.OTTTCarry, ("params", "states", "opt_state", "grad_sum")),
    "sltt": (online.SLTTCarry, ("params", "states", "opt_state", "grad_sum", "key")),
    "sltt_online": (online.SLTTCarry, ("params", "states", "opt_state", "grad_sum", "key")),
    "sltt_k": (online.SLTTCarry, ("params", "states", "opt_state", "grad_sum", "key")),
    "bptt": (online.BPTTCarry, ("params", "states", "opt_state")),
}

FACTORY = {
    "fptt": online.fptt, "fptt_dual": online.fptt_dual, "ottt": online.ottt, "ottt_accumulate": online.ottt,
    "sltt": online.sltt, "sltt_online": online.sltt, "sltt_k": online.sltt, "bptt": online.bptt,
}

#: carry fields that must have the params' structure, per learner (checked by ``step``)
LIKE_PARAMS = {
    "fptt": ("w_ra", "grad_last"),
    "fptt_dual": ("w_bar", "lam"),
    "ottt_accumulate": ("grad_sum",),
    "sltt": ("grad_sum",),
    "sltt_k": ("grad_sum",),
}


def build_model(name: str, tau: Any = 2.0, hidden: int = 4) -> nn.Sequential:
    """Linear(8, hidden) → neuron → Linear(hidden, 2) → neuron, with the neurons ``name`` needs."""
    if name.startswith("ottt"):
        first, second = neurons.OTTTLIF(tau=tau), neurons.LIF(tau=tau)
    elif name.startswith("sltt"):
        first, second = neurons.SLTTLIF(tau=tau), neurons.SLTTLIF(tau=tau)
    else:
        first, second = neurons.LIF(tau=tau), neurons.LIF(tau=tau)
    return nn.Sequential(nn.Linear(8, hidden), first, nn.Linear(hidden, 2), second)


def build_learner(name: str, model: nn.Sequential, lr: Any = 0.1, loss_fn: Any = F.mse_loss) -> Any:
    opt = optim.sgd(lr=lr, momentum=0.9)
    return {
        "fptt": lambda: online.fptt(model, loss_fn, opt, alpha=0.1),
        "fptt_dual": lambda: online.fptt_dual(model, loss_fn, opt, alpha=0.1, beta=0.5, rho=0.1),
        "ottt": lambda: online.ottt(model, loss_fn, opt, online=True),
        "ottt_accumulate": lambda: online.ottt(model, loss_fn, opt, online=False),
        "sltt": lambda: online.sltt(model, loss_fn, opt),
        "sltt_online": lambda: online.sltt(model, loss_fn, opt, online=True),
        "sltt_k": lambda: online.sltt(model, loss_fn, opt, k=2, seed=1),
        "bptt": lambda: online.bptt(model, loss_fn, opt),
    }[name]()


def data(dtype: torch.dtype = torch.float32, T: int = 4, batch: int = 2, n: int = 1, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(T, batch, 8, generator=g, dtype=dtype) * 3, torch.rand(T, batch, 2, generator=g, dtype=dtype))
            for _ in range(n)]


def setup(name: str, dtype: torch.dtype = torch.float32, **kwargs: Any):
    model = build_model(name)
    learner = build_learner(name, model, **kwargs)
    (x, y), = data(dtype)
    params, states = model.init(torch.Generator().manual_seed(0), x[0])
    return learner, learner.init(params, states), x, y


def warm(learner: Any, carry: Any, x: torch.Tensor, y: torch.Tensor) -> Any:
    """A carry in mid-sequence (batch-shaped states, non-zero algorithm state) where possible."""
    if isinstance(learner, online.BPTT):
        return learner.run(carry, x, y)[0]
    return learner.step(carry, x[0], y[0])[0]


# --------------------------------------------------------------------------------------------------
# The acceptance code
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def global_seed():
    """The acceptance code draws its data from torch's global generator: make it reproducible."""
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    yield
    torch.random.set_rng_state(state)


def test_acceptance_code_runs_and_vmapped_sweep_equals_one_by_one(global_seed):
    import torch, torch.nn.functional as F  # noqa: E401, I001, F811
    from purelearn import nn, neurons, optim, online  # noqa: F811
    model = nn.Sequential(nn.Linear(8, 4), neurons.LIF(), nn.Linear(4, 2), neurons.LIF())
    x_seq, y_seq = torch.rand(4, 2, 8), torch.rand(4, 2, 2)
    params, states = model.init(torch.Generator().manual_seed(0), x_seq[0])
    learner = online.fptt(model, F.mse_loss, optim.sgd(lr=0.1), alpha=0.1)
    carry = learner.init(params, states)
    carry, out = learner.step(carry, x_seq[0], y_seq[0])
    carry, out = learner.step(carry, x_seq[1], y_seq[1], last=True)
    carry, outs = learner.run(carry, x_seq, y_seq)
    def train(lr, alpha):  # noqa: E306
        learner = online.fptt(model, F.mse_loss, optim.sgd(lr=lr), alpha=alpha)
        carry = learner.init(params, states)
        for _ in range(3):
            carry, _ = learner.run(carry, x_seq, y_seq)
        return carry.params
    swept = torch.func.vmap(train)(torch.tensor([0.05, 0.1, 0.2]), torch.tensor([0.1, 0.2, 0.4]))

    assert out.loss.shape == () and out.y.shape == (2, 2)
    assert outs.loss.shape == (4,) and outs.y.shape == (4, 2, 2)
    for i, (lr, alpha) in enumerate([(0.05, 0.1), (0.1, 0.2), (0.2, 0.4)]):
        one = train(lr, alpha)
        got = tree.map(lambda leaf: leaf[i], swept)  # noqa: B023
        assert tree.max_abs_diff(got, one) <= 1e-5, (lr, alpha)
    # the sweep is not degenerate: the three configurations learned different weights
    assert tree.max_abs_diff(tree.map(lambda a: a[0], swept), tree.map(lambda a: a[2], swept)) > 1e-4


# --------------------------------------------------------------------------------------------------
# Carry and outputs
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", LEARNERS)
def test_carry_is_a_named_tuple_with_the_documented_fields(name):
    learner, carry, x, y = setup(name)
    cls, fields = CARRY[name]
    assert type(carry) is cls
    assert carry._fields == fields
    carry, outs = learner.run(carry, x, y)
    assert type(carry) is cls
    assert isinstance(outs, online.StepOutput)
    assert outs.loss.shape == (4,) and outs.y.shape == (4, 2, 2)
    if name != "bptt":
        carry, out = learner.step(carry, x[0], y[0])
        assert type(carry) is cls
        assert isinstance(out, online.StepOutput)
        assert out.loss.shape == () and out.y.shape == (2, 2)


@pytest.mark.parametrize("name", LEARNERS)
def test_run_outputs_are_detached(name):
    learner, carry, x, y = setup(name)
    carry, outs = learner.run(carry, x, y)
    assert not outs.loss.requires_grad and not outs.y.requires_grad
    assert all(not leaf.requires_grad for leaf in tree.leaves(carry.params))


# --------------------------------------------------------------------------------------------------
# Purity
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", LEARNERS)
def test_init_does_not_mutate_params_or_states(name):
    model = build_model(name)
    learner = build_learner(name, model)
    params, states = model.init(torch.Generator().manual_seed(0), torch.rand(2, 8))
    snap = snapshot(params, states)
    learner.init(params, states)
    assert_untouched(snap)


@pytest.mark.parametrize("name", STEPPING)
def test_step_does_not_mutate_inputs(name):
    learner, carry, x, y = setup(name)
    for c in (carry, warm(learner, carry, x, y)):
        snap = snapshot(c, x, y)
        learner.step(c, x[1], y[1])
        learner.step(c, x[1], y[1], last=True)
        assert_untouched(snap)


@pytest.mark.parametrize("name", LEARNERS)
def test_run_does_not_mutate_inputs(name):
    learner, carry, x, y = setup(name)
    for c in (carry, warm(learner, carry, x, y)):
        snap = snapshot(c, x, y)
        learner.run(c, x, y)
        assert_untouched(snap)


@pytest.mark.parametrize("name", LEARNERS)
def test_run_is_deterministic(name):
    learner, carry, x, y = setup(name)
    a, outs_a = learner.run(carry, x, y)
    b, outs_b = learner.run(carry, x, y)
    assert tree.max_abs_diff(tree.leaves(a), tree.leaves(b)) == 0
    assert torch.equal(outs_a.y, outs_b.y)


# --------------------------------------------------------------------------------------------------
# vmap: hyperparameters and seeds
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ottt", "ottt_accumulate", "sltt", "sltt_online"])
def test_vmap_over_lr_and_tau_equals_loop(name):
    seqs = data(n=2)
    template = build_model(name)
    params, _ = template.init(torch.Generator().manual_seed(0), seqs[0][0][0])

    def train(lr, tau):
        model = build_model(name, tau=tau)
        learner = build_learner(name, model, lr=lr)
        carry = learner.init(params, model.init_states(seqs[0][0][0]))
        for x, y in seqs:
            carry, outs = learner.run(carry, x, y)
        return carry.params, outs.loss

    lrs, taus = torch.tensor([0.05, 0.2, 0.2]), torch.tensor([2.0, 2.0, 4.0])
    swept = torch.func.vmap(train)(lrs, taus)
    for i in range(3):
        one = train(lrs[i], taus[i])
        got = tree.map(lambda leaf: leaf[i], swept)  # noqa: B023
        assert tree.max_abs_diff(got, one) <= TOL[torch.float32], i
    # both lr and tau change the result
    at = lambda i: tree.map(lambda leaf: leaf[i], swept[0])
    assert tree.max_abs_diff(at(0), at(1)) > 1e-4
    assert tree.max_abs_diff(at(1), at(2)) > 1e-4


@pytest.mark.parametrize("name", LEARNERS)
def test_vmap_over_seeds_equals_loop(name):
    seqs = data(n=2)
    model = build_model(name)
    learner = build_learner(name, model)
    x0 = seqs[0][0][0]
    inits = [model.init(torch.Generator().manual_seed(s), x0)[0] for s in range(3)]
    states = model.init_states(x0)

    def train(params):
        carry = learner.init(params, states)
        for x, y in seqs:
            carry, outs = learner.run(carry, x, y)
        return carry.params, carry.opt_state, outs.loss, outs.y

    swept = sweep.vmap_configs(train, {"params": tree.stack(inits)})
    for i, p in enumerate(inits):
        one = train(p)
        got = tree.map(lambda leaf: leaf[i], swept)  # noqa: B023
        assert tree.max_abs_diff(got, one) <= TOL[torch.float32], i
    assert tree.max_abs_diff(tree.map(lambda a: a[0], swept[0]), tree.map(lambda a: a[1], swept[0])) > 1e-3


# --------------------------------------------------------------------------------------------------
# torch.compile
# --------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fptt", "ottt"])
def test_compiled_step_equals_eager(name):
    model = build_model(name, hidden=3)
    learner = build_learner(name, model)
    (x, y), = data(T=3)
    params, states = model.init(torch.Generator().manual_seed(0), x[0])
    carry = learner.step(learner.init(params, states), x[0], y[0])[0]  # batch-shaped states
    compiled = torch.compile(learner.step)
    got_carry, got_out = compiled(carry, x[1], y[1])
    want_carry, want_out = learner.step(carry, x[1], y[1])
    assert type(got_carry) is type(want_carry)
    assert tree.max_abs_diff(tree.leaves(got_carry), tree.leaves(want_carry)) <= 1e-5
    assert tree.max_abs_diff(tuple(got_out), tuple(want_out)) <= 1e-5
    assert tree.max_abs_diff(want_carry.params, carry.params) > 0


# --------------------------------------------------------------------------------------------------
# Bad input: refused with the argument named, before anything changes
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", LEARNERS)
def test_y_seq_with_another_T_is_refused(name):
    learner, carry, x, y = setup(name)
    snap = snapshot(carry, x, y)
    with pytest.raises(ValueError, match=r"`y_seq` has 3 time steps \(shape \(3, 2, 2\)\).*`x_seq` has 4 "
                                         r"\(shape \(4, 2, 8\)\)"):
        learner.run(carry, x, y[:3])
    assert_untouched(snap)


@pytest.mark.parametrize("name", LEARNERS)
def test_empty_sequence_is_refused(name):
    learner, carry, x, y = setup(name)
    snap = snapshot(carry, x, y)
    with pytest.raises(ValueError, match=r"`x_seq` has T=0 time steps \(shape \(0, 2, 8\)\)"):
        learner.run(carry, x[:0], y[:0])
    assert_untouched(snap)


@pytest.mark.parametrize("name", ["fptt", "fptt_dual"])
@pytest.mark.parametrize("alpha", [0, 0.0, -0.1])
def test_non_positive_alpha_is_refused(name, alpha):
    model = build_model(name)
    with pytest.raises(ValueError, match=rf"`alpha` must be a finite number > 0, got {alpha}"):
        FACTORY[name](model, F.mse_loss, optim.sgd(lr=0.1), alpha=alpha)
    with pytest.raises(TypeError, match="`alpha`"):
        FACTORY[name](model, F.mse_loss, optim.sgd(lr=0.1), alpha=True)


@pytest.mark.parametrize("name", LEARNERS)
def test_params_from_another_model_are_refused(name):
    learner, carry, x, y = setup(name)
    other = nn.Sequential(nn.Linear(8, 3), *build_model(name, hidden=3).layers[1:])
    other_params, states = other.init(torch.Generator().manual_seed(1), x[0])
    snap = snapshot(other_params, states)
    with pytest.raises(ValueError, match=r"\w+\.init: `params` does not match the model: layer 0 \(Linear\(8, 4\)\): "
                                         r"`params\['0'\]\['bias'\]` must have shape \(4,\), got \(3,\)"):
        learner.init(other_params, states)
    assert_untouched(snap)
    carry = build_learner(name, other).init(other_params, states)  # a carry made for the other model
    snap = snapshot(carry, x, y)
    with pytest.raises(ValueError, match=r"params.*\(4, 8\).*\(3, 8\)"):
        learner.run(carry, x, y)
    if name != "bptt":
        with pytest.raises(ValueError, match=r"params.*\(4, 8\).*\(3, 8\)"):
            learner.step(carry, x[0], y[0])
    assert_untouched(snap)


@pytest.mark.parametrize("name", LEARNERS)
def test_params_with_missing_layers_are_refused(name):
    learner, _, x, y = setup(name)
    shallow = nn.Sequential(nn.Linear(8, 2), build_model(name).layers[3])
    params, states = shallow.init(torch.Generator().manual_seed(1), x[0])
    with pytest.raises(ValueError, match=r"\w+\.init: `params` does not match the model.*\['0', '2'\].*\['0'\]"):
        learner.init(params, learner.model.init_states(x[0]))
    carry = build_learner(name, shallow).init(params, states)._replace(states=learner.model.init_states(x[0]))
    snap = snapshot(carry, x, y)
    with pytest.raises(ValueError, match=r"`params` does not match the model.*\['0', '2'\].*\['0'\]"):
        learner.run(carry, x, y)
    assert_untouched(snap)


@pytest.mark.parametrize("name, field", [(n, f) for n, fs in LIKE_PARAMS.items() for f in fs])
def test_algorithm_state_with_another_structure_is_refused(name, field):
    learner, carry, x, y = setup(name)
    other = nn.Sequential(nn.Linear(8, 3), neurons.LIF(), nn.Linear(3, 2), neurons.LIF())
    other_params, _ = other.init(torch.Generator().manual_seed(1), x[0])
    for bad_value in (other_params, {"0": getattr(carry, field)["0"]}):
        bad = carry._replace(**{field: bad_value})
        snap = snapshot(bad, x, y)
        with pytest.raises(ValueError, match=rf"`carry\.{field}`.*`carry\.params`"):
            learner.step(bad, x[0], y[0])
        with pytest.raises(ValueError, match=rf"`carry\.{field}`"):
            learner.run(bad, x, y)
        assert_untouched(snap)


@pytest.mark.parametrize("name", LEARNERS)
def test_batch_mismatch_between_x_and_y_is_refused(name):
    learner, carry, x, y = setup(name)
    snap = snapshot(carry, x, y)
    y_small = y[:, :1]
    if name != "bptt":
        with pytest.raises(ValueError, match=r"`y_t` has batch size 1 \(shape \(1, 2\)\).*`x_t` has 2 "
                                             r"\(shape \(2, 8\)\)"):
            learner.step(carry, x[0], y_small[0])
    with pytest.raises(ValueError, match=r"batch size 1 \(shape \(.*1, 2\)\).* 2 \(shape \(.*2, 8\)\)"):
        learner.run(carry, x, y_small)
    assert_untouched(snap)


@pytest.mark.parametrize("name", LEARNERS)
def test_non_scalar_loss_is_refused(name):
    per_element = lambda y_hat, target: F.mse_loss(y_hat, target, reduction="none")
    learner, carry, x, y = setup(name, loss_fn=per_element)
    snap = snapshot(carry, x, y)
    with pytest.raises(ValueError, match=r"`loss_fn` must return a 0-d tensor.*\(2, 2\)"):
        learner.run(carry, x, y)
    if name != "bptt":
        with pytest.raises(ValueError, match=r"`loss_fn` must return a 0-d tensor.*\(2, 2\)"):
            learner.step(carry, x[0], y[0])
    assert_untouched(snap)


@pytest.mark.parametrize("name", STEPPING)
def test_non_tensor_inputs_are_refused(name):
    learner, carry, x, y = setup(name)
    with pytest.raises(TypeError, match="`x_t` must be a tensor"):
        learner.step(carry, x[0].tolist(), y[0])
    with pytest.raises(TypeError, match="`y_seq` must be a tensor"):
        learner.run(carry, x, y.tolist())


@pytest.mark.parametrize("name", LEARNERS)
def test_bad_model_loss_or_optimizer_is_refused(name):
    model = build_model(name)
    with pytest.raises(TypeError, match="`model`"):
        build_learner(name, torch.nn.Linear(8, 2))
    with pytest.raises(TypeError, match="`loss_fn`"):
        build_learner(name, model, loss_fn="mse")
    with pytest.raises(TypeError, match="`optimizer`"):
        FACTORY[name](model, F.mse_loss, torch.optim.SGD)


def _step_or_window(name: str, x: torch.Tensor) -> torch.Tensor:
    """What ``step`` takes: one step x[0] [N, ...], or for BPTT a window x[:1] [1, N, ...]."""
    return x[:1] if name == "bptt" else x[0]


@pytest.mark.parametrize("name", LEARNERS)
def test_carry_of_another_learner_type_is_refused(name):
    learner, carry, x, y = setup(name)
    other = "bptt" if name != "bptt" else "fptt"
    _, foreign, _, _ = setup(other)
    snap = snapshot(foreign, x, y)
    expected, _ = CARRY[name]
    message = rf"`carry` must be a {expected.__name__}, made by this learner's init\(params, states\), got a " \
              rf"{type(foreign).__name__} \(another learner's carry\)"
    with pytest.raises(TypeError, match=message):
        learner.run(foreign, x, y)
    with pytest.raises(TypeError, match=message):
        learner.step(foreign, _step_or_window(name, x), _step_or_window(name, y))
    with pytest.raises(TypeError, match=rf"`carry` must be a {expected.__name__}.*got a tuple"):
        learner.step(tuple(carry), _step_or_window(name, x), _step_or_window(name, y))
    assert_untouched(snap)


@pytest.mark.parametrize("name", LEARNERS)
def test_empty_batch_is_refused(name):
    learner, carry, x, y = setup(name)
    snap = snapshot(carry, x, y)
    with pytest.raises(ValueError, match=r"`x_seq` is an empty batch \(N=0, shape \(4, 0, 8\)\); a sequence needs "
                                         r"N >= 1"):
        learner.run(carry, x[:, :0], y[:, :0])
    with pytest.raises(ValueError, match=r"`x_(t|win)` is an empty batch \(N=0, shape \((1, )?0, 8\)\)"):
        learner.step(carry, _step_or_window(name, x[:, :0]), _step_or_window(name, y[:, :0]))
    assert_untouched(snap)


@pytest.mark.parametrize("name", LEARNERS)
@pytest.mark.parametrize("value", ["False", 0, None, torch.tensor(True)])
def test_static_option_that_is_not_a_bool_is_refused(name, value):
    learner, carry, x, y = setup(name)
    snap = snapshot(carry, x, y)
    with pytest.raises(TypeError, match=r"\.step: `last` must be a bool \(True or False\), got "):
        learner.step(carry, _step_or_window(name, x), _step_or_window(name, y), last=value)
    if name == "sltt_k":
        with pytest.raises(TypeError, match=r"sltt\.step: `backward` must be a bool \(True or False\)"):
            learner.step(carry, x[0], y[0], backward=value)
    assert_untouched(snap)


@pytest.mark.parametrize("name", LEARNERS)
def test_targets_are_neither_broadcast_nor_promoted(name):
    learner, carry, x, y = setup(name)
    snap = snapshot(carry, x, y)
    xs = _step_or_window(name, x)
    with pytest.raises(ValueError, match=r"`y_t` must have a batch axis \[N, ...\] like `x_t` \(N=2\), got a 0-d "
                                         r"tensor|`y_win` must be time-major \[T, N, ...\], got shape \(1,\)"):
        learner.step(carry, xs, torch.tensor(0.5) if name != "bptt" else torch.full((1,), 0.5))
    with pytest.raises(ValueError, match=r"`y_seq` must be time-major \[T, N, ...\], got shape \(4,\)"):
        learner.run(carry, x, y[:, 0, 0])
    with pytest.raises(TypeError, match=r"`y_t` is torch.float64 on cpu but `x_t` is torch.float32 on cpu; targets "
                                        r"must have x's dtype \(or an integer dtype, class indices\)"):
        learner.run(carry, x, y.double())
    with pytest.raises(TypeError, match=r"`y_t` is torch.bool"):
        learner.run(carry, x, y > 0.5)
    assert_untouched(snap)


@pytest.mark.parametrize("name", LEARNERS)
def test_integer_data_is_refused(name):
    learner, carry, x, y = setup(name)
    with pytest.raises(TypeError, match=r"`x_t` must be a floating-point tensor, got torch.int64"):
        learner.run(carry, x.long(), y)
    with pytest.raises(TypeError, match=r"Sequential.init: input `x` must be a floating-point tensor"):
        learner.model.init(None, x[0].to(torch.bool))
    with pytest.raises(TypeError, match=r"Sequential.init_states: input `x` must be a floating-point tensor"):
        learner.model.init_states(x[0].long())


@pytest.mark.parametrize("name", ["fptt", "ottt", "sltt_k", "bptt"])
def test_integer_class_targets_are_accepted(name):
    """Class indices y [T, N] (int64) with a loss that takes them (cross-entropy): the documented exception."""
    learner, carry, x, y = setup(name, loss_fn=F.cross_entropy)
    labels = (y[..., 0] > 0.5).long()
    carry, outs = learner.run(carry, x, labels)
    assert outs.loss.shape == (4,) and torch.isfinite(outs.loss).all()


@pytest.mark.parametrize("name", LEARNERS)
def test_init_refuses_states_of_another_model_and_mixed_dtypes(name):
    learner, _, x, _ = setup(name)
    params, states = learner.model.init(torch.Generator().manual_seed(0), x[0])
    with pytest.raises(ValueError, match=r"\w+\.init: `states` does not match the model: expected a dict with keys "
                                         r"\['1', '3'\], got \['1'\]"):
        learner.init(params, {"1": states["1"]})
    with pytest.raises(TypeError, match=r"\w+\.init: `states` leaf '1\.0' is torch.float64 on cpu but `params` leaf "
                                        r"'0\.bias' is torch.float32 on cpu"):
        learner.init(params, tree.map(torch.Tensor.double, states))
    with pytest.raises(ValueError, match=r"`params\['0'\]\['bias'\]` must be a tensor of shape \(4,\), got list"):
        learner.init({**params, "0": {**params["0"], "bias": [0.0] * 4}}, states)


@pytest.mark.parametrize("name", ["fptt", "fptt_dual"])
@pytest.mark.parametrize("field", ["alpha", "beta", "rho"])
@pytest.mark.parametrize("value", [float("inf"), -float("inf"), float("nan"), 1e300])
def test_non_finite_learner_hyperparameter_is_refused_when_built(name, field, value):
    if name == "fptt" and field != "alpha":
        return
    with pytest.raises(ValueError, match=rf"^{name}: `{field}` must be a finite number.*got {re.escape(repr(value))}"):
        FACTORY[name](build_model(name), F.mse_loss, optim.sgd(lr=0.1), **{field: value})


@pytest.mark.parametrize("name", ["fptt", "fptt_dual"])
@pytest.mark.parametrize("alpha", [1e-300, 1e-39, 5e-324])
def test_alpha_that_underflows_in_float32_is_refused(name, alpha):
    """FPTT divides by alpha (grad_last/(2 alpha), beta/alpha): below float32's smallest normal number it is 0."""
    with pytest.raises(ValueError, match=rf"{name}: `alpha` must be a finite number > 0 and at least 1.175e-38 "
                                         r"\(float32's smallest normal number"):
        FACTORY[name](build_model(name), F.mse_loss, optim.sgd(lr=0.1), alpha=alpha)
    FACTORY[name](build_model(name), F.mse_loss, optim.sgd(lr=0.1), alpha=1e-30)  # small but normal: fine


@pytest.mark.parametrize("seed, exc, message", [
    (1.5, TypeError, r"got float 1.5"), (True, TypeError, r"got bool True"), ("0", TypeError, r"got str '0'"),
    (-1, ValueError, r"got -1"), (2**63, ValueError, r"in \[0, 2\*\*63 - 1\] \(a seed\), got 9223372036854775808"),
])
def test_seed_of_the_wrong_type_or_range_is_refused_naming_seed(seed, exc, message):
    with pytest.raises(exc, match=rf"^sltt: `seed` must be an int.*{message}$"):
        online.sltt(build_model("sltt"), F.mse_loss, optim.sgd(lr=0.1), k=2, seed=seed)


@pytest.mark.parametrize("name", ["ottt", "sltt"])
def test_online_option_that_is_not_a_bool_is_refused(name):
    with pytest.raises(TypeError, match=rf"^{name}: `online` must be a bool \(True or False\), got 'False'$"):
        FACTORY[name](build_model(name), F.mse_loss, optim.sgd(lr=0.1), online="False")
