"""Transforms over the learners: ``vmap`` over every hyperparameter and over seeds, ``scan``,
``torch.compile`` (no graph breaks, no recompiles, eager's numbers) and device/dtype following.

Everything runs on a tiny network (8 → 4 → 2, T = 3) so the file stays fast; the inductor test
(C++ code generation, tens of seconds) is marked slow.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch._dynamo
import torch.nn.functional as F
from torch._dynamo.utils import counters

import purelearn
from purelearn import compile, neurons, nn, online, optim, scan, surrogate, sweep, tree

LEARNERS = ["fptt", "fptt_dual", "ottt", "ottt_accumulate", "sltt", "sltt_k", "bptt", "fptt_window",
            "fptt_dual_window"]
STEPPING = [name for name in LEARNERS if name != "bptt" and not name.endswith("_window")]  # one step per x[t]
T, BATCH = 3, 2


def neuron_pair(name: str, tau: Any = 2.0, v_threshold: Any = 1.0, slope: Any = 4.0) -> tuple[Any, Any]:
    kw = dict(tau=tau, v_threshold=v_threshold, surrogate=surrogate.Sigmoid(alpha=slope))
    if name.startswith("ottt"):
        return neurons.OTTTLIF(**kw), neurons.LIF(**kw)
    if name.startswith("sltt"):
        return neurons.SLTTLIF(**kw), neurons.SLTTLIF(**kw)
    return neurons.LIF(**kw), neurons.LIF(**kw)


def build_model(name: str, **neuron_kw: Any) -> nn.Sequential:
    first, second = neuron_pair(name, **neuron_kw)
    return nn.Sequential(nn.Linear(8, 4), first, nn.Linear(4, 2), second)


def build_learner(name: str, model: nn.Sequential, opt: optim.GradientTransformation, alpha: Any = 0.1,
                  beta: Any = 0.5) -> Any:
    if name in ("fptt", "fptt_window"):  # fptt_window: an update per 2 steps; T = 3 leaves a last window of 1
        return online.fptt(model, F.mse_loss, opt, alpha=alpha, window=2 if name == "fptt_window" else 1)
    if name in ("fptt_dual", "fptt_dual_window"):
        return online.fptt_dual(model, F.mse_loss, opt, alpha=alpha, beta=beta, rho=0.1,
                                window=2 if name == "fptt_dual_window" else 1)
    if name in ("ottt", "ottt_accumulate"):
        return online.ottt(model, F.mse_loss, opt, online=name == "ottt")
    if name == "sltt":
        return online.sltt(model, F.mse_loss, opt)
    if name == "sltt_k":
        return online.sltt(model, F.mse_loss, opt, k=2, seed=1)
    return online.bptt(model, F.mse_loss, opt)


def data(n: int = 2, dtype: torch.dtype = torch.float32, device: Any = "cpu", batch: int = BATCH):
    g = torch.Generator().manual_seed(0)
    return [(torch.rand(T, batch, 8, generator=g, dtype=dtype).to(device) * 3,
             torch.rand(T, batch, 2, generator=g, dtype=dtype).to(device)) for _ in range(n)]


SEQS = data()
PARAMS = {name: build_model(name).init(torch.Generator().manual_seed(0), SEQS[0][0][0])[0] for name in LEARNERS}


def train(name: str, *, lr: Any = 0.5, momentum: Any = 0.0, betas: Any = None, weight_decay: Any = 0.0,
          alpha: Any = 0.1, beta: Any = 0.5, tau: Any = 2.0, v_threshold: Any = 1.0, slope: Any = 4.0,
          params: Any = None) -> tuple[Any, torch.Tensor]:
    """Two sequences of ``name`` on the tiny problem; any hyperparameter may be a (batched) tensor."""
    model = build_model(name, tau=tau, v_threshold=v_threshold, slope=slope)
    if betas is not None:
        opt = optim.adam(lr=lr, betas=betas, weight_decay=weight_decay)
    else:
        opt = optim.sgd(lr=lr, momentum=momentum, weight_decay=weight_decay)
    learner = build_learner(name, model, opt, alpha=alpha, beta=beta)
    carry = learner.init(PARAMS[name] if params is None else params, model.init_states(SEQS[0][0][0]))
    for x, y in SEQS:
        carry, outs = learner.run(carry, x, y)
    return carry.params, outs.loss


def row(swept: Any, i: int) -> Any:
    return tree.map(lambda leaf: leaf[i], swept)


def assert_sweep_equals_loop(fn: Any, configs: dict[str, torch.Tensor]) -> None:
    swept = sweep.vmap_configs(fn, configs)
    ones = [fn(**r) for r in sweep.rows(configs)]
    for i, one in enumerate(ones):
        assert tree.max_abs_diff(row(swept, i), one) <= 1e-5, sweep.rows(configs)[i]
    # the hyperparameter reaches the result: different values learn different weights
    assert tree.max_abs_diff(ones[0][0], ones[-1][0]) > 1e-6, "the swept hyperparameter changed nothing"


# --------------------------------------------------------------------------------------------------
# vmap over hyperparameters
# --------------------------------------------------------------------------------------------------

COMMON = {
    "lr": [0.2, 0.6],
    "momentum": [0.0, 0.9],
    "weight_decay": [0.0, 0.3],
    "tau": [2.0, 4.0],
    "v_threshold": [0.6, 1.0],
    "slope": [1.0, 4.0],
}


@pytest.mark.parametrize("hyper", list(COMMON))
@pytest.mark.parametrize("name", LEARNERS)
def test_vmap_over_a_hyperparameter_equals_the_loop(name, hyper):
    configs = sweep.grid(**{hyper: COMMON[hyper]})
    assert_sweep_equals_loop(lambda **kw: train(name, **kw), configs)


@pytest.mark.parametrize("name", LEARNERS)
def test_vmap_over_adam_betas_equals_the_loop(name):
    configs = sweep.grid(beta1=[0.5, 0.9], beta2=[0.9, 0.999])

    def fn(beta1, beta2):
        return train(name, lr=0.05, betas=(beta1, beta2))

    assert_sweep_equals_loop(fn, configs)


@pytest.mark.parametrize("name,hyper,values", [
    ("fptt", "alpha", [0.05, 2.0]),
    ("fptt_dual", "alpha", [0.05, 2.0]),
    ("fptt_dual", "beta", [0.2, 0.9]),
    ("fptt_window", "alpha", [0.05, 2.0]),
])
def test_vmap_over_fptt_alpha_and_beta_equals_the_loop(name, hyper, values):
    assert_sweep_equals_loop(lambda **kw: train(name, **kw), sweep.grid(**{hyper: values}))


def test_vmap_over_several_hyperparameters_at_once():
    configs = sweep.grid(lr=[0.2, 0.6], alpha=[0.1, 1.0], tau=[2.0, 3.0])
    assert sweep.size(configs) == 8
    assert_sweep_equals_loop(lambda **kw: train("fptt", **kw), configs)


# --------------------------------------------------------------------------------------------------
# vmap over seeds / ensembles
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", LEARNERS)
def test_stacked_initial_params_train_as_one_program(name):
    model = build_model(name)
    inits = [model.init(torch.Generator().manual_seed(s), SEQS[0][0][0])[0] for s in range(3)]
    configs = {"params": tree.stack(inits)}
    swept = sweep.vmap_configs(lambda params: train(name, params=params), configs)
    for i, p in enumerate(inits):
        assert tree.max_abs_diff(row(swept, i), train(name, params=p)) <= 1e-5, i


def test_seeds_crossed_with_a_grid():
    model = build_model("fptt")
    inits = tree.stack([model.init(torch.Generator().manual_seed(s), SEQS[0][0][0])[0] for s in range(2)])
    configs = sweep.product({"params": inits}, sweep.grid(lr=[0.2, 0.6], alpha=[0.1, 1.0]))
    assert sweep.size(configs) == 8
    swept = sweep.vmap_configs(lambda params, lr, alpha: train("fptt", params=params, lr=lr, alpha=alpha), configs)
    for i in range(8):
        seed, rest = divmod(i, 4)
        lr, alpha = [(0.2, 0.1), (0.2, 1.0), (0.6, 0.1), (0.6, 1.0)][rest]
        one = train("fptt", params=row(inits, seed), lr=lr, alpha=alpha)
        assert tree.max_abs_diff(row(swept, i), one) <= 1e-5, i


def test_product_of_configs_orders_the_last_one_fastest():
    a = {"x": torch.tensor([1.0, 2.0])}
    b = sweep.grid(y=[10.0, 20.0, 30.0])
    p = sweep.product(a, b)
    assert p["x"].tolist() == [1.0, 1.0, 1.0, 2.0, 2.0, 2.0]
    assert p["y"].tolist() == [10.0, 20.0, 30.0] * 2
    with pytest.raises(ValueError, match="both"):
        sweep.product(a, {"x": torch.tensor([3.0])})


# --------------------------------------------------------------------------------------------------
# scan
# --------------------------------------------------------------------------------------------------


def test_scan_threads_the_carry_and_stacks_outputs():
    xs = {"a": torch.arange(4.0), "b": torch.ones(4, 2)}
    carry, ys = scan(lambda c, x: (c + x["a"], (c, x["b"] * c)), torch.tensor(1.0), xs)
    assert carry.item() == 7.0
    assert ys[0].tolist() == [1.0, 1.0, 2.0, 4.0]
    assert ys[1].shape == (4, 2) and ys[1][:, 0].tolist() == [1.0, 1.0, 2.0, 4.0]


def test_scan_with_length_and_no_xs():
    carry, ys = scan(lambda c, _: (c * 2, c), torch.tensor(1.0), None, length=3)
    assert carry.item() == 8.0 and ys.tolist() == [1.0, 2.0, 4.0]


@pytest.mark.parametrize("xs,length,match", [
    ((torch.zeros(3), torch.zeros(4)), None, "disagree"),
    (torch.zeros(0), None, "length 0"),
    (None, None, "explicit `length`"),
    (torch.zeros(3), 4, "leading size 3"),
    (torch.tensor(1.0), None, "leading"),
])
def test_scan_refuses_bad_xs(xs, length, match):
    with pytest.raises(ValueError, match=match):
        scan(lambda c, x: (c, c), torch.tensor(0.0), xs, length=length)


def test_scan_works_under_vmap_and_grad():
    def total(w):
        return scan(lambda c, x: (c + (w * x).sum(), c), torch.tensor(0.0), torch.ones(3, 2))[0]
    ws = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert torch.func.vmap(total)(ws).tolist() == [9.0, 21.0]
    assert torch.func.grad(total)(ws[0]).tolist() == [3.0, 3.0]


@pytest.mark.parametrize("name", STEPPING)
def test_run_equals_the_step_loop(name):
    model = build_model(name)
    learner = build_learner(name, model, optim.sgd(lr=0.5, momentum=0.9))
    x, y = SEQS[0]
    carry = learner.init(PARAMS[name], model.init_states(x[0]))
    got, outs = learner.run(carry, x, y)
    selected = set(learner.selected_steps(carry, T)) if name == "sltt_k" else set(range(T))
    want, losses = carry, []
    for t in range(T):
        static = {"backward": t in selected} if name == "sltt_k" else {}
        want, out = learner.step(want, x[t], y[t], last=t == T - 1, **static)
        losses.append(out.loss)
    want = learner.end_sequence(want)
    assert tree.max_abs_diff(got.params, want.params) == 0
    assert torch.equal(outs.loss, torch.stack(losses))


# --------------------------------------------------------------------------------------------------
# torch.compile
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


def step_learner(name: str, dtype: torch.dtype = torch.float32) -> tuple[Any, Any]:
    model = build_model(name)
    learner = build_learner(name, model, optim.sgd(lr=0.5, momentum=0.9))
    return learner, learner.init(tree.map(lambda p: p.to(dtype), PARAMS[name]), model.init_states(SEQS[0][0][0]))


PER_STEP = ["fptt", "ottt", "bptt", "fptt_window"]  # steps, one call, a shorter last window
SCANNED = ["ottt_accumulate", "fptt_dual_window"]  # steps with sums; windows


# fptt's and ottt's middle step: compiled with fullgraph by the per-step test below (compile.step), 1 graph of 2
@pytest.mark.parametrize("name", [name for name in STEPPING if name not in PER_STEP])
def test_step_compiles_as_one_graph_with_eager_numbers(name, fresh_dynamo):
    learner, carry = step_learner(name)
    x, y = SEQS[0]
    carry, _ = learner.step(carry, x[0], y[0])  # batch-shaped states: the middle-step graph
    compiled = torch.compile(learner.step, fullgraph=True, backend="eager")  # fullgraph: no graph break
    static = {"backward": True} if name == "sltt_k" else {}
    got = compiled(carry, x[1], y[1], **static)
    want = learner.step(carry, x[1], y[1], **static)
    assert tree.max_abs_diff(tree.leaves(got), tree.leaves(want)) <= 1e-5
    assert counters["stats"]["unique_graphs"] == 1 and counters["graph_break"] == {}


def assert_run_equals_eager_without_recompiles(run, learner, carry, seqs=SEQS):
    """Two passes over ``seqs``: the compiled run equals ``learner.run`` (1e-5) and never recompiles."""
    got, want = carry, carry
    with torch._dynamo.config.patch(error_on_recompile=True):
        for x, y in seqs + seqs:
            got, got_outs = run(got, x, y)
            want, want_outs = learner.run(want, x, y)
            assert tree.max_abs_diff(tree.leaves((got, got_outs)), tree.leaves((want, want_outs))) <= 1e-5


# (the SCANNED learners: the same checks in the test below, on longer sequences)
@pytest.mark.parametrize("name", [name for name in LEARNERS if name not in SCANNED])
def test_compiled_run_is_one_program_per_sequence_and_never_recompiles(name, fresh_dynamo):
    learner, carry = step_learner(name)
    run = compile.run(learner, backend="eager")  # dynamo's graph as it is: structure, not code generation
    assert_run_equals_eager_without_recompiles(run, learner, carry)
    graphs = counters["stats"]["unique_graphs"]
    if name == "sltt_k":  # its plan changes per sequence: the per-step path, a graph per (last, backward)
        assert not run.whole_sequence and graphs <= 4 and not run.programs
    else:  # the whole sequence, first, middle (one scan) and last calls, is one graph
        assert run.whole_sequence and graphs == 1 and len(run.programs) == 1
    assert counters["graph_break"] == {}


@pytest.mark.parametrize("name", SCANNED)
def test_whole_sequence_program_loops_with_torch_scan_not_unrolled(name, fresh_dynamo):
    """The whole sequence is one program whose middle calls are one scan; and, as the test above for the
    other learners, it equals eager over two passes without recompiling."""
    from torch._higher_order_ops.scan import scan_op

    learner, carry = step_learner(name)
    graphs = []

    def backend(gm, example_inputs):  # dynamo's eager backend, keeping the graph
        graphs.append(gm)
        return gm.forward

    long = [tuple(torch.cat([a] * 3) for a in seq) for seq in SEQS]  # 3T steps: middle steps (windows) to loop over
    run = compile.run(learner, backend=backend)
    assert_run_equals_eager_without_recompiles(run, learner, carry, long)
    (graph,) = graphs
    scans = [node for node in graph.graph.nodes if node.target is scan_op]
    assert len(scans) == 1  # the middle calls are one loop: the step is traced once, whatever T
    assert run.whole_sequence and counters["stats"]["unique_graphs"] == 1 and len(run.programs) == 1
    assert counters["graph_break"] == {}


@pytest.mark.parametrize("name", PER_STEP)
def test_compiled_run_per_step_builds_two_graphs_and_never_recompiles(name, fresh_dynamo):
    learner, carry = step_learner(name)
    run = compile.run(learner, backend="eager", whole_sequence=False)
    assert_run_equals_eager_without_recompiles(run, learner, carry)
    graphs = counters["stats"]["unique_graphs"]
    # BPTT: its one call; else middle steps (windows) and last step (the last, shorter window); the
    # first step shares the middle graph
    assert graphs == (1 if name == "bptt" else 2) and not run.programs
    assert counters["graph_break"] == {}


@pytest.mark.parametrize("name", ["ottt", "fptt_window"])  # a carry holding None; windows (outputs time-major)
def test_a_swept_learner_equals_a_loop_of_runs_and_compiles_as_one_program(name, fresh_dynamo):
    model = build_model(name)
    configs = sweep.grid(lr=[0.2, 0.5], momentum=[0.0, 0.9])

    def make(lr, momentum):
        return build_learner(name, model, optim.sgd(lr=lr, momentum=momentum))

    swept = sweep.learners(make, configs)
    states = model.init_states(SEQS[0][0][0])
    start = swept.init(PARAMS[name], states)
    eager, got = start, start
    run = compile.run(swept, backend="eager")
    singles = [(make(**r), None) for r in sweep.rows(configs)]
    singles = [(learner, learner.init(PARAMS[name], states)) for learner, _ in singles]
    with torch._dynamo.config.patch(error_on_recompile=True):
        for x, y in SEQS + SEQS:
            eager, eager_outs = swept.run(eager, x, y)
            got, got_outs = run(got, x, y)
            assert tree.max_abs_diff(tree.leaves((got, got_outs)), tree.leaves((eager, eager_outs))) <= 1e-5
            assert eager_outs.loss.shape == (T, 4)
            for k, (learner, carry) in enumerate(singles):  # config k of the sweep is run k on its own
                carry, outs = learner.run(carry, x, y)
                singles[k] = (learner, carry)
                theirs = tree.map(lambda a, k=k: a[k], eager.params)
                assert tree.max_abs_diff(tree.leaves(carry.params), tree.leaves(theirs)) <= 1e-6
                assert torch.allclose(outs.loss, eager_outs.loss[:, k], rtol=0, atol=1e-6)
    assert run.whole_sequence and len(run.programs) == 1 and counters["stats"]["unique_graphs"] == 1


def test_a_sweep_of_learners_whose_plan_changes_per_sequence_is_refused():
    model = build_model("sltt_k")
    with pytest.raises(ValueError, match=r"sweep.learners: SLTT's plan changes from one sequence to the next"):
        sweep.learners(lambda lr: build_learner("sltt_k", model, optim.sgd(lr=lr)), sweep.grid(lr=[0.1, 0.2]))
    with pytest.raises(TypeError, match=r"`make` must return a learner \(with init\), got float"):
        sweep.learners(lambda lr: 1.0, sweep.grid(lr=[0.1, 0.2]))


def test_vmapped_step_compiles_and_equals_eager_vmap(fresh_dynamo):
    model = build_model("fptt")
    lrs = torch.tensor([0.2, 0.4, 0.6])

    def step(lr, carry, x, y, last=False):
        learner = build_learner("fptt", model, optim.sgd(lr=lr, momentum=0.9))
        return learner.step(carry, x, y, last=last)

    learner = build_learner("fptt", model, optim.sgd(lr=0.1, momentum=0.9))
    carry = learner.init(PARAMS["fptt"], model.init_states(SEQS[0][0][0]))
    carry = tree.map(lambda a: a.expand(3, *a.shape).clone(), carry)
    vstep = torch.func.vmap(step, in_dims=(0, 0, None, None))

    def sweep_step(carry, lr, x, y, last=False):  # carry first: compile.step materialises it
        return vstep(lr, carry, x, y, last=last)

    compiled = compile.step(sweep_step, backend="aot_eager")
    got, want = carry, carry
    with torch._dynamo.config.patch(error_on_recompile=True):
        for x, y in SEQS:
            for t in range(T):
                got, got_out = compiled(got, lrs, x[t], y[t], last=t == T - 1)
                want, want_out = sweep_step(want, lrs, x[t], y[t], last=t == T - 1)
                assert tree.max_abs_diff(tree.leaves((got, got_out)), tree.leaves((want, want_out))) <= 1e-5
            reset = lambda c: c._replace(states=tree.map(lambda s: torch.zeros(3, dtype=s.dtype), c.states))
            got, want = reset(got), reset(want)
    assert counters["stats"]["unique_graphs"] == 2


def test_materialize_grows_fresh_states_and_keeps_the_rest():
    learner, carry = step_learner("ottt")
    x, y = SEQS[0]
    grown = compile.materialize(learner.step, carry, x[0], y[0])
    for old, new in zip(tree.leaves(carry.states), tree.leaves(grown.states), strict=True):
        assert old.dim() == 0 and new.shape[0] == BATCH
        assert torch.equal(new, old.expand_as(new))
    assert all(a is b for a, b in zip(tree.leaves(carry.params), tree.leaves(grown.params), strict=True))
    assert grown.opt_state.count.shape == ()  # only what the step grows is grown
    got, _ = learner.step(grown, x[0], y[0])
    want, _ = learner.step(carry, x[0], y[0])
    assert tree.max_abs_diff(got, want) == 0


def test_static_keywords_must_not_be_tensors():
    learner, carry = step_learner("fptt")
    x, y = SEQS[0]
    with pytest.raises(TypeError, match="last"):
        compile.step(learner, backend="eager")(carry, x[0], y[0], last=torch.tensor(True))


def test_keep_freed_memory_reports_whether_it_applied():
    # process-wide: run it in a process of its own
    code = "from purelearn import compile; print(compile.keep_freed_memory())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[-1] in ("True", "False")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fptt"])  # OTTT's: tests/test_train.py::test_compiled_step_gives_the_same_numbers
def test_inductor_run_equals_eager_without_recompiles(name, fresh_dynamo):
    learner, carry = step_learner(name)
    run = compile.run(learner, mode="fast-start")
    assert_run_equals_eager_without_recompiles(run, learner, carry)
    assert counters["stats"]["unique_graphs"] == 1  # the whole sequence, its middle steps one scan


# --------------------------------------------------------------------------------------------------
# Any device, any dtype: everything follows the inputs
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", LEARNERS)
def test_a_run_follows_the_device_and_dtype_of_its_inputs(name, device, dtype):
    model = build_model(name)
    learner = build_learner(name, model, optim.adam(lr=0.01))
    seqs = data(dtype=dtype, device=device)
    params = tree.map(lambda p: p.to(device=device, dtype=dtype), PARAMS[name])
    carry = learner.init(params, model.init_states(seqs[0][0][0]))
    for x, y in seqs:
        carry, outs = learner.run(carry, x, y)
    for leaf in tree.leaves((carry, outs)):
        assert leaf.device.type == device.type, (name, leaf.shape)
        assert leaf.dtype in (dtype, torch.int64), (name, leaf.shape, leaf.dtype)
    if device.type != "cpu":  # the same numbers as on the cpu
        ref_learner = build_learner(name, build_model(name), optim.adam(lr=0.01))
        ref = ref_learner.init(tree.map(lambda p: p.to(dtype), PARAMS[name]), model.init_states(SEQS[0][0][0]))
        for x, y in data(dtype=dtype):
            ref, _ = ref_learner.run(ref, x, y)
        assert tree.max_abs_diff(tree.map(lambda a: a.cpu(), carry.params), ref.params) <= 1e-4


#: The library's modules: everything but the application, the data readers and checkpoint files.
#: files at a boundary where tensors become host data by definition (files, numpy for NIR)
NOT_CORE = ("app/", "data/", "checkpoint.py", "models.py", "__main__.py", "interop/nir.py")
HARD_CODED = re.compile(r"""["']cpu["']|["']cuda["']|torch\.device\(|torch\.float(32|64|16)\b|\.cuda\(|\.cpu\(""")
#: deliberate exceptions, each with the reason it does not tie results to one device or dtype
ALLOWED = {
    "generator is not None else torch.device(\"cpu\")": "draws without a generator use torch's global (cpu) "
    "generator and are moved to the input's device: the same init on every device",
    "return torch.float32 if device.type == \"mps\" else torch.float64": "the width of Python scalars in "
    "torch's own math on that device (mps has no float64)",
    "carry.key.detach().cpu()": "SLTT-K draws its steps on the host",
    "torch.finfo(torch.float32)": "validate: a Python hyperparameter must be finite in float32, the narrowest "
    "float the library computes in (a larger number is inf there); no tensor is made",
    "tensors[0].device.type == \"cpu\"": "compile.CPU_OPTIONS: an inductor option for cpu inputs only, the "
    "numbers do not change",
}


def test_core_modules_hard_code_no_device_or_dtype():
    root = Path(purelearn.__file__).parent
    found = []
    core = sorted(str(p.relative_to(root)) for p in root.rglob("*.py"))
    core = [rel for rel in core if not rel.startswith(NOT_CORE)]
    assert {"online/fptt.py", "online/driver.py", "compile.py", "neurons.py"} <= set(core)
    for rel in core:
        for lineno, line in enumerate((root / rel).read_text().splitlines(), start=1):
            code = line.split("#")[0]
            if line.lstrip().startswith(("#", '"', "'", ">>>")) or not HARD_CODED.search(code):
                continue
            if '"""' in code or "``" in code:
                continue
            if not any(allowed in code for allowed in ALLOWED):
                found.append(f"{rel}:{lineno}: {line.strip()}")
    assert not found, "hard-coded device or dtype:\n" + "\n".join(found)
