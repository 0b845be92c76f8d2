"""The peer a user would pick instead: FPTT on net A written in JAX.

The same step as ``purelearn.online.fptt`` (SpikingJelly semantics): LIF neurons (tau 2, hard reset
to 0, sigmoid surrogate α=4 as a ``custom_vjp``), ``l_t + (α/2)·Σ mse(W, w_ra + g/(2α))``, SGD with
momentum, a second gradient at the new weights from the new state, the ``w_ra`` update; the whole
sequence is one ``jax.jit`` over ``jax.lax.scan``. Set ``XLA_FLAGS`` before importing this module
to pin XLA to one thread (``run.py`` does).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np


def available() -> bool:
    try:
        import jax  # noqa: F401
    except ImportError:
        return False
    return True


def build(alpha: float = 0.1, lr: float = 0.01, momentum: float = 0.9, tau: float = 2.0,
          slope: float = 4.0) -> Any:
    import jax
    import jax.numpy as jnp

    @jax.custom_vjp
    def spike(x):
        return (x >= 0).astype(x.dtype)

    def spike_fwd(x):
        return spike(x), x

    def spike_bwd(x, g):
        s = jax.nn.sigmoid(slope * x)
        return (g * ((1.0 - s) * s * slope),)

    spike.defvjp(spike_fwd, spike_bwd)

    def lif(v, x):
        h = v + (x - v) / tau
        s = spike(h - 1.0)
        return s, (1.0 - s) * h

    def forward(params, vs, x):
        new_vs = []
        h = x
        for (w, b), v in zip(params, vs, strict=True):
            h, v = lif(v, h @ w.T + b)
            new_vs.append(v)
        return h, tuple(new_vs)

    def task_loss(params, vs, x, y):
        out, new_vs = forward(params, vs, x)
        return jnp.mean((out - y) ** 2), (out, new_vs)

    def objective(params, vs, x, y, target):
        loss, aux = task_loss(params, vs, x, y)
        reg = sum(jnp.mean((w - c) ** 2) for w, c in zip(jax.tree_util.tree_leaves(params),
                                                         jax.tree_util.tree_leaves(target), strict=True))
        return loss + (alpha / 2.0) * reg, (loss, aux)

    def step(carry, xy, last):
        params, vs, buf, w_ra, g_last, first = carry
        x, y = xy
        target = jax.tree_util.tree_map(lambda w, g: w + g / (2.0 * alpha), w_ra, g_last)
        grads, (loss, (_, new_vs)) = jax.grad(objective, has_aux=True)(params, vs, x, y, target)
        buf = jax.tree_util.tree_map(lambda b, g: jnp.where(first, g, momentum * b + g), buf, grads)
        params = jax.tree_util.tree_map(lambda p, b: p - lr * b, params, buf)
        if not last:
            g2 = jax.grad(lambda p: task_loss(p, new_vs, x, y)[0])(params)
            w_ra = jax.tree_util.tree_map(lambda ra, w, g: (ra + w) / 2.0 - g / (2.0 * alpha), w_ra, params, g2)
            g_last = g2
        return (params, new_vs, buf, w_ra, g_last, jnp.asarray(False)), loss

    @jax.jit
    def sequence(params, buf, w_ra, first, x_seq, y_seq):
        vs = tuple(jnp.zeros((x_seq.shape[1], w.shape[0]), x_seq.dtype) for w, _ in params)
        g_last = jax.tree_util.tree_map(jnp.zeros_like, params)
        carry = (params, vs, buf, w_ra, g_last, first)
        carry, losses = jax.lax.scan(lambda c, xy: step(c, xy, False), carry, (x_seq[:-1], y_seq[:-1]))
        carry, last_loss = step(carry, (x_seq[-1], y_seq[-1]), True)
        params, _, buf, w_ra, _, first = carry
        return params, buf, w_ra, first, jnp.concatenate([losses, last_loss[None]])

    return sequence


def benchmark_setup(params_torch: list[tuple[Any, Any]], x: Any, y: Any) -> dict[str, Any]:
    """Run the first sequence (trace and compile included, timed) and return a closure that runs the
    next one, continuing training."""
    import jax
    import jax.numpy as jnp

    sequence = build()
    to = lambda t: jnp.asarray(np.asarray(t.detach().cpu()))  # noqa: E731
    params = tuple((to(w), to(b)) for w, b in params_torch)
    state = {
        "params": params,
        "buf": jax.tree_util.tree_map(jnp.zeros_like, params),
        "w_ra": jax.tree_util.tree_map(lambda a: a.copy(), params),
        "first": jnp.asarray(True),
    }
    xj, yj = to(x), to(y)

    def one() -> Any:
        out = sequence(state["params"], state["buf"], state["w_ra"], state["first"], xj, yj)
        jax.block_until_ready(out)
        state["params"], state["buf"], state["w_ra"], state["first"], losses = out
        return losses

    t0 = time.perf_counter()
    one()  # trace + XLA compile + the first sequence
    first_s = time.perf_counter() - t0
    return {"run": one, "first_call_s": first_s, "state": state}


def params_of(state: dict[str, Any]) -> list[np.ndarray]:
    return [np.asarray(a) for pair in state["params"] for a in pair]
