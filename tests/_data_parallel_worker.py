"""One rank of the two-process data-parallel checks in ``test_distributed.py`` (not collected).

    python tests/_data_parallel_worker.py RANK WORLD INIT_METHOD OUT_JSON

Every case trains one learner on its shard of a global batch of 5 (shards of 3 and 2) for two
sequences, and the same learner without ``data_parallel`` on the whole batch in this process; rank 0
writes, per case, the largest difference from the one-process run over the params, the optimizer
state and the losses of the global batch, and whether the ranks' carries agree bit for bit.
"""

from __future__ import annotations

import datetime
import json
import sys
import traceback

import torch
import torch.distributed as dist
import torch.nn.functional as F
from _launch import finish

from purelearn import compile, distributed, neurons, nn, online, optim, sweep, tree

N, T, SEQUENCES = 5, 4, 2


def nets() -> dict[str, nn.Sequential]:
    return {
        "lif": nn.Sequential(nn.Linear(6, 8), neurons.LIF(), nn.Linear(8, 3), neurons.LIF()),
        "ottt": nn.Sequential(nn.Linear(6, 8), neurons.OTTTLIF(), nn.Linear(8, 3), neurons.LIF()),
        "sltt": nn.Sequential(nn.Linear(6, 8), neurons.SLTTLIF(), nn.Linear(8, 3), neurons.SLTTLIF()),
        "bn": nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), neurons.LIF(), nn.Linear(8, 3), neurons.LIF()),
    }


def learners(model: nn.Sequential, name: str, dp: distributed.DataParallel | None) -> object:
    sgd, adam = optim.sgd(lr=0.5), optim.adam(lr=0.01)
    return {
        "fptt": lambda: online.fptt(model, F.mse_loss, sgd, alpha=0.2, data_parallel=dp),
        "fptt_adam": lambda: online.fptt(model, F.mse_loss, adam, alpha=0.2, data_parallel=dp),
        "fptt_window": lambda: online.fptt(model, F.mse_loss, sgd, alpha=0.2, window=3, data_parallel=dp),
        "fptt_dual": lambda: online.fptt_dual(model, F.mse_loss, sgd, alpha=0.2, beta=0.5, data_parallel=dp),
        "ottt_a": lambda: online.ottt(model, F.mse_loss, sgd, online=False, data_parallel=dp),
        "ottt_o": lambda: online.ottt(model, F.mse_loss, sgd, online=True, data_parallel=dp),
        "sltt": lambda: online.sltt(model, F.mse_loss, sgd, data_parallel=dp),
        "sltt_k": lambda: online.sltt(model, F.mse_loss, sgd, online=True, k=2, seed=3, data_parallel=dp),
        "bptt": lambda: online.bptt(model, F.mse_loss, adam, data_parallel=dp),
    }[name]()


CASES = [  # (case, learner, net, dtype, how it runs)
    ("fptt-f64", "fptt", "lif", torch.float64, "eager"),
    ("fptt-f32", "fptt", "lif", torch.float32, "eager"),
    ("fptt-adam-f32", "fptt_adam", "lif", torch.float32, "eager"),
    ("fptt-window-f64", "fptt_window", "lif", torch.float64, "eager"),
    ("fptt_dual-f64", "fptt_dual", "lif", torch.float64, "eager"),
    ("fptt_dual-f32", "fptt_dual", "lif", torch.float32, "eager"),
    ("ottt_a-f64", "ottt_a", "ottt", torch.float64, "eager"),
    ("ottt_o-f32", "ottt_o", "ottt", torch.float32, "eager"),
    ("sltt-f64", "sltt", "sltt", torch.float64, "eager"),
    ("sltt_k-f64", "sltt_k", "sltt", torch.float64, "eager"),
    ("bptt-f64", "bptt", "lif", torch.float64, "eager"),
    ("bptt-f32", "bptt", "lif", torch.float32, "eager"),
    ("fptt-compiled-f64", "fptt", "lif", torch.float64, "compiled"),
    ("sltt_k-compiled-f64", "sltt_k", "sltt", torch.float64, "compiled"),
    ("fptt-not-reduced-f64", "fptt", "lif", torch.float64, "eager"),  # the control: shards, no all-reduce
]


def data(dtype: torch.dtype, sequence: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(100 + sequence)
    return torch.rand(T, N, 6, generator=g).to(dtype), torch.rand(T, N, 3, generator=g).to(dtype)


def train(learner: object, params: object, model: nn.Sequential, dtype: torch.dtype, local: bool,
          how: str) -> tuple[object, torch.Tensor]:
    """Two sequences from ``params``; returns the carry and the losses of the global batch [SEQUENCES, T]."""
    run = compile.run(learner, backend="aot_eager") if how == "compiled" else learner.run
    carry, losses = None, []
    for sequence in range(SEQUENCES):
        x, y = data(dtype, sequence)
        if local:
            x, y = distributed.shard(x, 1), distributed.shard(y, 1)
        if carry is None:
            carry = learner.init(params, model.init_states(x[0]))
        carry, outs = run(carry, x, y)
        loss = outs.loss * x.shape[1]  # this rank's share of the global mean
        losses.append(distributed.DataParallel().sum(loss) / N if local else loss / N)
    return carry, torch.stack(losses)


def compare(case: str, name: str, net: str, dtype: torch.dtype, how: str) -> dict[str, object]:
    model = nets()[net]
    params, _ = model.init(torch.Generator().manual_seed(0), torch.zeros(1, 6))
    params = tree.map(lambda p: p.to(dtype), params)
    dp = distributed.DataParallel()
    reduced = None if "not-reduced" in case else dp
    carry, losses = train(learners(model, name, reduced), params, model, dtype, True, how)
    ref, ref_losses = train(learners(model, name, None), params, model, dtype, False, "eager")
    agree = True
    try:
        dp.check_same((carry.params, carry.opt_state), "params and optimizer state")
    except distributed.RanksDisagree:
        agree = False
    return {"params": tree.max_abs_diff(carry.params, ref.params),
            "opt_state": tree.max_abs_diff(carry.opt_state, ref.opt_state),
            "loss": float((losses - ref_losses).abs().max()), "ranks_agree": agree}


def vmapped() -> dict[str, object]:
    """A K=3 learning-rate sweep of data-parallel FPTT, one vmapped step: each row equals its own
    one-process run."""
    model = nets()["lif"]
    params, _ = model.init(torch.Generator().manual_seed(0), torch.zeros(1, 6))
    params = tree.map(lambda p: p.double(), params)
    lrs = [0.1, 0.3, 0.9]
    configs = sweep.grid(lr=lrs, dtype=torch.float64)

    def make(lr: torch.Tensor, data_parallel: object = distributed.DataParallel()) -> object:
        return online.fptt(model, F.mse_loss, optim.sgd(lr=lr), alpha=0.2, data_parallel=data_parallel)

    swept = sweep.learners(make, configs)
    x, y = data(torch.float64, 0)
    xs, ys = distributed.shard(x, 1), distributed.shard(y, 1)
    carry, _ = swept.run(swept.init(params, model.init_states(xs[0])), xs, ys)
    worst = 0.0
    for i, lr in enumerate(lrs):
        ref = make(torch.tensor(lr, dtype=torch.float64), None)
        ref_carry, _ = ref.run(ref.init(params, model.init_states(x[0])), x, y)
        worst = max(worst, tree.max_abs_diff(tree.map(lambda t, i=i: t[i], carry.params), ref_carry.params))
    return {"params": worst}


def batchnorm() -> dict[str, object]:
    """BatchNorm keeps per-rank statistics; ``DataParallel.mean`` makes the ranks' states equal."""
    model = nets()["bn"]
    params, _ = model.init(torch.Generator().manual_seed(0), torch.zeros(1, 6))
    dp = distributed.DataParallel()
    learner = online.fptt(model, F.mse_loss, optim.sgd(lr=0.5), alpha=0.2, data_parallel=dp)
    x, y = data(torch.float32, 0)
    xs, ys = distributed.shard(x, 1), distributed.shard(y, 1)
    carry, _ = learner.run(learner.init(params, model.init_states(xs[0])), xs, ys)
    dp.check_same(carry.params, "params")  # raises if the gradients were not averaged

    def same(states: object) -> bool:
        try:
            dp.check_same(states, "states")
            return True
        except distributed.RanksDisagree:
            return False

    before = same(carry.states)
    averaged = dp.mean(carry.states)
    local = tree.leaves(carry.states)
    gathered = [torch.zeros_like(t) for t in local for _ in range(2)]
    for i, t in enumerate(local):
        dist.all_gather(gathered[2 * i:2 * i + 2], t.contiguous())
    expected = [(gathered[2 * i] + gathered[2 * i + 1]) / 2 if t.is_floating_point() else t
                for i, t in enumerate(local)]
    return {"states_agree_before": before, "states_agree_after": same(averaged),
            "mean_error": max(float((a - e).abs().max()) for a, e in zip(tree.leaves(averaged), expected, strict=True))}


def drift() -> dict[str, object]:
    """A rank whose params differ in one leaf: ``check_same`` names that leaf on every rank."""
    model = nets()["lif"]
    params, _ = model.init(torch.Generator().manual_seed(0), torch.zeros(1, 6))
    if dist.get_rank() == 1:
        params["2"]["bias"] = params["2"]["bias"] + 1e-7
    try:
        distributed.DataParallel().check_same(params, "params")
    except distributed.RanksDisagree as err:
        return {"message": str(err)}
    return {"message": None}


def main() -> int:
    rank, world, init_method, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    results: dict[str, object] = {}
    try:
        for case, name, net, dtype, how in CASES:
            results[case] = compare(case, name, net, dtype, how)
        results["vmap"] = vmapped()
        results["batchnorm"] = batchnorm()
        results["drift"] = drift()
    except Exception:
        results["error"] = traceback.format_exc()
        print(results["error"], file=sys.stderr)
    everyone: list[object] = [None] * world
    dist.all_gather_object(everyone, results)
    if rank == 0:
        with open(out, "w") as f:
            json.dump({"ranks": everyone}, f)
    return 1 if "error" in results else 0


if __name__ == "__main__":
    finish(main())
