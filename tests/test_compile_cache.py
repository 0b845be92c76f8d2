"""compile.run's whole-sequence programs reuse inductor's on-disk caches (compile.scan_cacheable), and
the cache key holds the loop's body: a program that differs only inside its scan is not served
another's entry."""

from __future__ import annotations

import pytest
import torch
import torch._dynamo.utils
import torch.nn.functional as F

from purelearn import compile, neurons, nn, online, optim, tree


def _problem():
    model = nn.Sequential(nn.Linear(5, 6), neurons.LIF(), nn.Linear(6, 3), neurons.LIF())
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(4, 3, 5, generator=g), torch.rand(4, 3, 3, generator=g)
    params, states = model.init(torch.Generator().manual_seed(0), x[0])
    return model, params, states, x, y


def _compiled_run(learner, params, states, x, y):
    """A fresh compilation (dynamo reset: nothing kept in this process but the caches) of one sequence."""
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    carry, _ = compile.run(learner)(learner.init(params, states), x, y)
    return carry.params, dict(torch._dynamo.utils.counters["inductor"])


@pytest.mark.slow
def test_a_new_compilation_is_served_from_the_cache_and_the_body_is_in_the_key(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    model, params, states, x, y = _problem()
    post = online.fptt(model, F.mse_loss, optim.sgd(lr=0.2), second_forward="post")
    pre = online.fptt(model, F.mse_loss, optim.sgd(lr=0.2), second_forward="pre")  # differs inside the scan only

    first, counters = _compiled_run(post, params, states, x, y)
    assert counters.get("fxgraph_cache_miss", 0) >= 1 and counters.get("fxgraph_cache_bypass", 0) == 0
    again, counters = _compiled_run(post, params, states, x, y)
    assert counters.get("fxgraph_cache_hit", 0) >= 1, counters  # the scan graph came from the cache
    assert tree.max_abs_diff(first, again) == 0.0
    eager, _ = post.run(post.init(params, states), x, y)
    assert tree.max_abs_diff(first, eager.params) <= 1e-6

    other, counters = _compiled_run(pre, params, states, x, y)
    assert counters.get("fxgraph_cache_miss", 0) >= 1, "another loop body must not hit the first one's entry"
    eager_pre, _ = pre.run(pre.init(params, states), x, y)
    assert tree.max_abs_diff(other, eager_pre.params) <= 1e-6 < tree.max_abs_diff(other, first)


def test_the_mark_is_scoped_to_compile_run():
    import torch._inductor.config as inductor_config

    assert "torch.ops.higher_order.scan" not in inductor_config.unsafe_marked_cacheable_functions
    with compile.scan_cacheable():
        assert inductor_config.unsafe_marked_cacheable_functions["torch.ops.higher_order.scan"].endswith(
            f"(torch {torch.__version__})")
    assert "torch.ops.higher_order.scan" not in inductor_config.unsafe_marked_cacheable_functions
