r"""Functional optimizers in the style of optax that reproduce ``torch.optim`` numerically.

An optimizer is a :class:`GradientTransformation`, a pair of pure functions::

    state = opt.init(params)
    updates, state = opt.update(grads, state, params)
    params = apply_updates(params, updates)          # params + updates, leaf-wise

``params`` and ``grads`` are pytrees (nested dicts, tuples, named tuples) of tensors. States are
named tuples of tensors and pytrees of tensors -- the step count is an ``int64`` 0-d tensor -- so a
whole training step can go through ``torch.func.vmap``, ``torch.func.grad`` and ``torch.compile``.
``update`` never modifies its arguments in place.

:func:`sgd`, :func:`adam`, :func:`adamw` and :func:`adamax` follow the single-tensor
(``foreach=False``) code path of ``torch.optim`` operation by operation, so that
``apply_updates(params, updates)`` equals what ``optimizer.step()`` writes into the parameters up to
the rounding of the final addition (the tests check 1e-6 in float32 and 1e-12 in float64 over 50 steps).
:func:`clip_by_global_norm` reproduces ``torch.nn.utils.clip_grad_norm_`` and :func:`chain` composes
transformations.

Hyperparameters (``lr``, ``momentum``, ``dampening``, ``weight_decay``, ``betas``, ``eps``,
``max_norm``) may be Python numbers or tensors -- including tensors batched by ``torch.func.vmap``,
which gives one optimizer per hyperparameter value. Python numbers are validated when the optimizer
is built (:func:`purelearn.validate.number`: finite, within float32's range, and in the argument's
range, so ``lr=inf`` or ``momentum=nan`` is a ``ValueError`` naming the argument); tensors are used
as they are. ``nesterov``, ``amsgrad`` and ``maximize`` choose the
computation and must be Python bools. A ``momentum`` or ``weight_decay`` given as the Python number 0
removes its term altogether, exactly as torch does.

Example::

    >>> import torch
    >>> from purelearn import optim
    >>> params = {"w": torch.tensor([1.0, -2.0])}
    >>> opt = optim.chain(optim.clip_by_global_norm(1.0), optim.sgd(lr=0.1, momentum=0.9))
    >>> state = opt.init(params)
    >>> grads = {"w": torch.tensor([3.0, 4.0])}
    >>> updates, state = opt.update(grads, state, params)
    >>> optim.apply_updates(params, updates)["w"]
    tensor([ 0.9400, -2.0800])

Any hyperparameter may also be a **schedule** (optax's convention): a callable ``f(count) -> value``
of the number of updates already applied, the ``count`` in the optimizer's state, so the first update
uses ``f(0)`` (as ``LambdaLR``). The schedule's position lives in the state, not in a tensor mutated
from outside; :mod:`purelearn.schedules` builds schedules from torch operations on ``count``, which
vmap and compile into one graph for every count. Its values are checked as a number or tensor given
directly would be (it is called once at count 0 when the optimizer is built); like a tensor, it keeps
the ``momentum`` and ``weight_decay`` terms. A scheduled ``max_norm`` gives
:func:`clip_by_global_norm` the state :class:`ClipState` ``(count,)``::

    >>> from purelearn import schedules
    >>> opt = optim.sgd(lr=schedules.linear(0.1, 0.0, transition_steps=2))   # lr 0.1, 0.05, 0, 0, ...
    >>> params = {"w": torch.zeros(1)}
    >>> state = opt.init(params)
    >>> for _ in range(3):
    ...     updates, state = opt.update({"w": torch.ones(1)}, state, params)
    ...     params = optim.apply_updates(params, updates)
    >>> params["w"], state.count
    (tensor([-0.1500]), tensor(3))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import torch

from purelearn import tree, validate
from purelearn.schedules import Schedule
from purelearn.tree import PyTree

__all__ = [
    "HyperParam",
    "Schedule",
    "GradientTransformation",
    "EmptyState",
    "ClipState",
    "SGDState",
    "AdamState",
    "AdamaxState",
    "sgd",
    "adam",
    "adamw",
    "adamax",
    "clip_by_global_norm",
    "chain",
    "apply_updates",
]

HyperParam = float | torch.Tensor
"""A hyperparameter: a Python number, or a one-element tensor (possibly batched under ``vmap``)."""


class InitFn(Protocol):
    def __call__(self, params: PyTree) -> PyTree: ...


class UpdateFn(Protocol):
    def __call__(
        self, grads: PyTree, state: PyTree, params: PyTree | None = None
    ) -> tuple[PyTree, PyTree]: ...


class GradientTransformation(NamedTuple):
    """The pure pair ``init(params) -> state``, ``update(grads, state, params) -> (updates, state)``.

    ``updates`` has the structure of ``grads``; :func:`apply_updates` adds it to ``params``.
    """

    init: InitFn
    update: UpdateFn


class EmptyState(NamedTuple):
    """The state of a stateless transformation (it flattens to no leaves)."""


class ClipState(NamedTuple):
    """State of :func:`clip_by_global_norm` when ``max_norm`` is a schedule.

    Fields:
        count: number of updates done so far, an ``int64`` 0-d tensor (the schedule's argument).
    """

    count: torch.Tensor


class SGDState(NamedTuple):
    """State of :func:`sgd`.

    Fields:
        count: number of updates done so far, an ``int64`` 0-d tensor.
        momentum_buffer: the momentum buffer ``b`` (a pytree like ``params``), or ``()`` when
            ``momentum`` is the Python number 0.
    """

    count: torch.Tensor
    momentum_buffer: PyTree


class AdamState(NamedTuple):
    """State of :func:`adam` and :func:`adamw`.

    Fields:
        count: number of updates done so far ``t``, an ``int64`` 0-d tensor.
        mu: first-moment running average ``m`` (torch's ``exp_avg``).
        nu: second-moment running average ``v`` (torch's ``exp_avg_sq``).
        nu_max: running maximum of ``v`` (torch's ``max_exp_avg_sq``) with ``amsgrad``, else ``()``.
    """

    count: torch.Tensor
    mu: PyTree
    nu: PyTree
    nu_max: PyTree


class AdamaxState(NamedTuple):
    """State of :func:`adamax`.

    Fields:
        count: number of updates done so far ``t``, an ``int64`` 0-d tensor.
        mu: first-moment running average ``m`` (torch's ``exp_avg``).
        u: exponentially weighted infinity norm ``u`` (torch's ``exp_inf``).
    """

    count: torch.Tensor
    mu: PyTree
    u: PyTree


# --------------------------------------------------------------------------------------------------
# Validation and small helpers
# --------------------------------------------------------------------------------------------------


def _hyper(owner: str, name: str, value: Any, **bounds: Any) -> HyperParam | Schedule:
    """Check a hyperparameter: a number or tensor (see :func:`_value`) or a schedule.

    A schedule (any callable that is not a tensor) is evaluated at count 0 to check what it returns
    and wrapped so that each of its values is checked the same way (under the name ``name(count)``).
    """
    if not callable(value) or isinstance(value, torch.Tensor):
        return _value(owner, name, value, **bounds)
    at_name = f"{name}(count)"

    def scheduled(count: torch.Tensor) -> HyperParam:
        return _value(owner, at_name, value(count), **bounds)

    try:
        first = value(torch.zeros((), dtype=torch.int64))
    except TypeError as err:
        raise TypeError(
            f"{owner}: `{name}` is callable, so it must be a schedule f(count) -> value; "
            f"at count 0 it raised: {err}"
        ) from err
    _value(owner, at_name, first, **bounds)
    return scheduled


def _at(hypers: tuple[HyperParam | Schedule, ...], count: torch.Tensor) -> tuple[HyperParam, ...]:
    """The hyperparameters' values at ``count``: schedules evaluated, numbers and tensors as they are."""
    return tuple(h(count) if callable(h) else h for h in hypers)


def _value(
    owner: str,
    name: str,
    value: Any,
    *,
    low: float | None = 0.0,
    low_open: bool = False,
    high: float | None = None,
) -> HyperParam:
    """Check a hyperparameter value: a Python number (returned as float) finite in float32 and in range,
    or a one-element tensor (:func:`purelearn.validate.number`).

    The allowed range is ``[low, high)`` (``(low, high)`` with ``low_open``); ``None`` means no
    bound. Tensors are only reshaped to 0-d: their values may be batched and are not checked.
    """
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(
                f"{owner}: `{name}` must be a number or a one-element tensor, "
                f"got a tensor of shape {tuple(value.shape)}"
            )
        return value.reshape(())
    return validate.number(owner, name, value, low=low, low_open=low_open, high=high, high_open=True,
                           kinds="a Python number or a torch.Tensor (or a schedule f(count))")


def _flag(owner: str, name: str, value: Any) -> bool:
    return validate.flag(owner, name, value)


def _betas(owner: str, betas: Any) -> tuple[HyperParam, HyperParam]:
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise TypeError(f"{owner}: `betas` must be a pair (beta1, beta2), got {betas!r}")
    return (
        _hyper(owner, "betas[0]", betas[0], high=1.0),
        _hyper(owner, "betas[1]", betas[1], high=1.0),
    )


def _is_zero(h: HyperParam | Schedule) -> bool:
    """True for the Python number 0 (never for a tensor, whose value may be batched, nor a schedule)."""
    return isinstance(h, float) and h == 0


def _like(h: HyperParam, x: torch.Tensor) -> HyperParam:
    """``h`` in the dtype of ``x`` if it is a tensor (so a 0-d ``x`` keeps its dtype); numbers unchanged."""
    return h.to(dtype=x.dtype, device=x.device) if isinstance(h, torch.Tensor) else h


def _one_minus(h: HyperParam, like: torch.Tensor) -> HyperParam:
    """``1 - h``: a Python float for numbers (double, as in torch), else a tensor in ``like``'s dtype."""
    return 1 - _like(h, like) if isinstance(h, torch.Tensor) else 1 - h


def _add_scaled(x: torch.Tensor, y: torch.Tensor, alpha: HyperParam) -> torch.Tensor:
    """``x + alpha * y``, as torch's ``x.add(y, alpha=alpha)`` when ``alpha`` is a number."""
    if isinstance(alpha, torch.Tensor):
        return x + _like(alpha, x) * y
    return torch.add(x, y, alpha=alpha)


def _wide_float(device: torch.device) -> torch.dtype:
    """The dtype Python floats have in torch's scalar math: float64, or float32 where unsupported (mps)."""
    return torch.float32 if device.type == "mps" else torch.float64


def _new_count(params: PyTree) -> torch.Tensor:
    flat = tree.leaves(params)
    device = flat[0].device if flat else None
    return torch.zeros((), dtype=torch.int64, device=device)


def _check_state(owner: str, state: Any, state_type: type) -> None:
    if not isinstance(state, state_type):
        raise TypeError(
            f"{owner}: `state` must be the {state_type.__name__} made by this optimizer's init, "
            f"got {type(state).__name__}"
        )


def _check_trees(owner: str, ref_name: str, ref: PyTree, name: str, other: PyTree, dtypes: bool = True) -> None:
    """Raise ``ValueError`` naming ``name`` and both structures unless ``other`` is shaped like ``ref``;
    with ``dtypes``, ``TypeError`` naming the first leaf of another dtype or device."""
    if tree.same_layout(ref, other, dtypes=dtypes):
        return
    try:
        tree.assert_same_structure(ref, other, ref_name, name)
    except ValueError as err:
        raise ValueError(f"{owner}: {err}") from None
    state = ref_name.startswith("state")  # then the state is the odd one out, not the grads
    try:
        tree.assert_same_dtypes(*((other, ref, name, ref_name) if state else (ref, other, ref_name, name)))
    except TypeError as err:
        hint = ("; an optimizer state has the dtype and device of the params it was made for (opt.init(params)): "
                "make it again, or convert it with the params" if state else "")
        raise TypeError(f"{owner}: {err}{hint}") from None


def _check_inputs(
    owner: str,
    grads: PyTree,
    params: PyTree | None,
    state_name: str | None = None,
    state_tree: PyTree = None,
    needs_params: bool = False,
) -> None:
    if state_name is not None:
        _check_trees(owner, state_name, state_tree, "grads", grads)
    if params is None:
        if needs_params:
            raise ValueError(
                f"{owner}: `params` must be given to update (weight decay reads the parameters), got None"
            )
    else:
        _check_trees(owner, "grads", grads, "params", params)


def _map_leaves(fn: Callable[..., tuple[Any, ...]], width: int, grads: PyTree, *others: Any) -> list[PyTree]:
    """Apply ``fn`` to each leaf of ``grads`` and the matching leaves of ``others``; return ``width`` trees.

    ``fn`` returns a ``width``-tuple per leaf; the i-th entries form the i-th output tree (structure of
    ``grads``). An entry of ``others`` that is ``None`` contributes ``None`` for every leaf.
    """
    flat_g, unflatten = tree.flatten(grads)
    columns = [[None] * len(flat_g) if o is None else tree.leaves(o) for o in others]
    rows = [fn(*leaf) for leaf in zip(flat_g, *columns, strict=True)]
    outputs = zip(*rows, strict=True) if rows else [()] * width
    # A column of Nones (e.g. no momentum buffer) stays None: unflattening None leaves is not
    # supported by torch.compile's optree polyfill.
    return [None if col and all(c is None for c in col) else unflatten(list(col)) for col in outputs]


# --------------------------------------------------------------------------------------------------
# Optimizers
# --------------------------------------------------------------------------------------------------


def sgd(
    lr: HyperParam | Schedule,
    momentum: HyperParam | Schedule = 0.0,
    dampening: HyperParam | Schedule = 0.0,
    nesterov: bool = False,
    weight_decay: HyperParam | Schedule = 0.0,
    maximize: bool = False,
) -> GradientTransformation:
    r"""Stochastic gradient descent with momentum, as ``torch.optim.SGD``.

    With step count :math:`t` (starting at 0), gradient :math:`g` and parameter :math:`\theta`::

        g  <- -g                          if maximize
        g  <- g + weight_decay * theta    if weight_decay != 0
        b  <- g                                              if t == 0
        b  <- momentum * b + (1 - dampening) * g             otherwise     (if momentum != 0)
        g  <- g + momentum * b  if nesterov  else  b                       (if momentum != 0)
        update = -lr * g

    State: :class:`SGDState` ``(count, momentum_buffer)``; the buffer is ``()`` when ``momentum``
    is the Python number 0 (plain SGD keeps no buffer, like torch). A tensor ``momentum`` always
    keeps the buffer, so a tensor 0 equals plain SGD only when ``dampening`` is 0 (otherwise the
    steps after the first are scaled by ``1 - dampening``, which torch's ``momentum=0`` ignores).

    Example::

        >>> opt = sgd(lr=0.1, momentum=0.9)
        >>> params = {"w": torch.ones(2)}
        >>> state = opt.init(params)
        >>> updates, state = opt.update({"w": torch.ones(2)}, state, params)
        >>> updates["w"]
        tensor([-0.1000, -0.1000])
    """
    owner = "sgd"
    lr = _hyper(owner, "lr", lr)
    momentum = _hyper(owner, "momentum", momentum)
    dampening = _hyper(owner, "dampening", dampening, low=None)  # torch checks no range
    weight_decay = _hyper(owner, "weight_decay", weight_decay)
    nesterov = _flag(owner, "nesterov", nesterov)
    maximize = _flag(owner, "maximize", maximize)
    if nesterov and (_is_zero(momentum) or (isinstance(dampening, float) and dampening != 0)):
        raise ValueError(
            f"{owner}: `nesterov=True` requires `momentum` > 0 and `dampening` == 0, "
            f"got momentum={momentum!r}, dampening={dampening!r}"
        )
    use_momentum = not _is_zero(momentum)
    use_decay = not _is_zero(weight_decay)
    hypers = (lr, momentum, dampening, weight_decay)

    def init(params: PyTree) -> SGDState:
        buf = tree.zeros_like(params) if use_momentum else ()
        return SGDState(count=_new_count(params), momentum_buffer=buf)

    def update(grads: PyTree, state: SGDState, params: PyTree | None = None) -> tuple[PyTree, SGDState]:
        _check_state(owner, state, SGDState)
        _check_inputs(
            owner,
            grads,
            params,
            "state.momentum_buffer" if use_momentum else None,
            state.momentum_buffer,
            needs_params=use_decay,
        )
        first = state.count == 0
        lr, momentum, dampening, weight_decay = _at(hypers, state.count)

        def step(
            g: torch.Tensor, p: torch.Tensor | None, b: torch.Tensor | None
        ) -> tuple[torch.Tensor, torch.Tensor | None]:
            if maximize:
                g = -g
            if use_decay:
                g = _add_scaled(g, p, weight_decay)
            if use_momentum:
                b = torch.where(
                    first.to(g.device), g, _add_scaled(b * _like(momentum, b), g, _one_minus(dampening, g))
                )
                g = _add_scaled(g, b, momentum) if nesterov else b
            return -_like(lr, g) * g if isinstance(lr, torch.Tensor) else g * -lr, b

        buffers = state.momentum_buffer if use_momentum else None
        updates, buf = _map_leaves(step, 2, grads, params, buffers)
        return updates, SGDState(
            count=state.count + 1, momentum_buffer=buf if use_momentum else state.momentum_buffer
        )

    return GradientTransformation(init, update)


def _adam(
    owner: str,
    lr: HyperParam | Schedule,
    betas: tuple[HyperParam | Schedule, HyperParam | Schedule],
    eps: HyperParam | Schedule,
    weight_decay: HyperParam | Schedule,
    amsgrad: bool,
    maximize: bool,
    decoupled: bool,
) -> GradientTransformation:
    """Shared body of :func:`adam` (L2 weight decay) and :func:`adamw` (``decoupled`` weight decay)."""
    lr = _hyper(owner, "lr", lr)
    beta1, beta2 = _betas(owner, betas)
    eps = _hyper(owner, "eps", eps)
    weight_decay = _hyper(owner, "weight_decay", weight_decay)
    amsgrad = _flag(owner, "amsgrad", amsgrad)
    maximize = _flag(owner, "maximize", maximize)
    use_decay = not _is_zero(weight_decay)
    hypers = (lr, beta1, beta2, eps, weight_decay)

    def init(params: PyTree) -> AdamState:
        return AdamState(
            count=_new_count(params),
            mu=tree.zeros_like(params),
            nu=tree.zeros_like(params),
            nu_max=tree.zeros_like(params) if amsgrad else (),
        )

    def update(grads: PyTree, state: AdamState, params: PyTree | None = None) -> tuple[PyTree, AdamState]:
        _check_state(owner, state, AdamState)
        _check_inputs(owner, grads, params, "state.mu", state.mu, needs_params=use_decay)
        _check_trees(owner, "state.nu", state.nu, "grads", grads)
        if amsgrad:
            _check_trees(owner, "state.nu_max", state.nu_max, "grads", grads)
        lr, beta1, beta2, eps, weight_decay = _at(hypers, state.count)
        # AdamW's multiplicative decay 1 - lr * wd, computed in double for numbers like torch.
        decay_factor = 1 - lr * weight_decay
        count = state.count + 1
        t = count.to(_wide_float(count.device))
        bias_correction1 = 1 - beta1**t
        bias_correction2 = 1 - beta2**t
        step_size = lr / bias_correction1
        bias_correction2_sqrt = bias_correction2**0.5

        def step(
            g: torch.Tensor,
            p: torch.Tensor | None,
            m: torch.Tensor,
            v: torch.Tensor,
            v_max: torch.Tensor | None,
        ) -> tuple[torch.Tensor, ...]:
            if maximize:
                g = -g
            if use_decay and not decoupled:
                g = _add_scaled(g, p, weight_decay)
            m = torch.lerp(m, g, _one_minus(beta1, g))
            if isinstance(beta2, torch.Tensor):
                v = v * _like(beta2, v) + _one_minus(beta2, g) * g * g
            else:
                v = torch.addcmul(v * beta2, g, g, value=1 - beta2)
            if amsgrad:
                v_max = torch.maximum(v_max, v)
            denom = (v_max if amsgrad else v).sqrt() / _like(bias_correction2_sqrt, g) + _like(eps, g)
            u = -_like(step_size, g) * m / denom
            if use_decay and decoupled:
                u = (p * _like(decay_factor, p) - p) + u
            return u, m, v, v_max

        v_maxes = state.nu_max if amsgrad else None
        updates, mu, nu, nu_max = _map_leaves(step, 4, grads, params, state.mu, state.nu, v_maxes)
        return updates, AdamState(count=count, mu=mu, nu=nu, nu_max=nu_max if amsgrad else state.nu_max)

    return GradientTransformation(init, update)


def adam(
    lr: HyperParam | Schedule = 1e-3,
    betas: tuple[HyperParam | Schedule, HyperParam | Schedule] = (0.9, 0.999),
    eps: HyperParam | Schedule = 1e-8,
    weight_decay: HyperParam | Schedule = 0.0,
    amsgrad: bool = False,
    maximize: bool = False,
) -> GradientTransformation:
    r"""Adam (Kingma & Ba, 2015), as ``torch.optim.Adam``.

    With step :math:`t = 1, 2, \dots`::

        g  <- -g                                 if maximize
        g  <- g + weight_decay * theta           if weight_decay != 0   (L2 penalty)
        m  <- lerp(m, g, 1 - beta1)              = beta1 * m + (1 - beta1) * g
        v  <- beta2 * v + (1 - beta2) * g * g
        v_max <- max(v_max, v)                   if amsgrad (then v_max replaces v below)
        step_size = lr / (1 - beta1**t)
        denom     = sqrt(v) / sqrt(1 - beta2**t) + eps
        update    = -step_size * m / denom

    The bias corrections are computed in float64 from the integer count and cast to the parameter
    dtype where torch casts its Python scalars.

    State: :class:`AdamState` ``(count, mu, nu, nu_max)`` with ``nu_max == ()`` unless ``amsgrad``.

    Example::

        >>> opt = adam(lr=1e-2)
        >>> params = {"w": torch.zeros(3)}
        >>> state = opt.init(params)
        >>> updates, state = opt.update({"w": torch.tensor([1.0, -2.0, 0.5])}, state, params)
        >>> updates["w"]   # the first Adam step is -lr * sign(g)
        tensor([-0.0100,  0.0100, -0.0100])
    """
    return _adam("adam", lr, betas, eps, weight_decay, amsgrad, maximize, decoupled=False)


def adamw(
    lr: HyperParam | Schedule = 1e-3,
    betas: tuple[HyperParam | Schedule, HyperParam | Schedule] = (0.9, 0.999),
    eps: HyperParam | Schedule = 1e-8,
    weight_decay: HyperParam | Schedule = 1e-2,
    amsgrad: bool = False,
    maximize: bool = False,
) -> GradientTransformation:
    r"""AdamW (Loshchilov & Hutter, 2019), as ``torch.optim.AdamW``: Adam with decoupled weight decay.

    torch first shrinks the parameter, ``theta <- theta * (1 - lr * weight_decay)``, then takes the
    Adam step of :func:`adam` (without the L2 term) from the shrunk parameter. As an update::

        update = (theta * (1 - lr * weight_decay) - theta) + adam_update

    so that ``apply_updates`` gives ``theta * (1 - lr * weight_decay) + adam_update`` up to one
    rounding of the sum.

    State: :class:`AdamState` ``(count, mu, nu, nu_max)``. ``update`` needs ``params`` unless
    ``weight_decay`` is the Python number 0.

    Example::

        >>> opt = adamw(lr=0.1, weight_decay=0.5)
        >>> params = {"w": torch.ones(2)}
        >>> state = opt.init(params)
        >>> updates, state = opt.update({"w": torch.ones(2)}, state, params)
        >>> apply_updates(params, updates)["w"]    # 1 * (1 - 0.05) - 0.1
        tensor([0.8500, 0.8500])
    """
    return _adam("adamw", lr, betas, eps, weight_decay, amsgrad, maximize, decoupled=True)


def adamax(
    lr: HyperParam | Schedule = 2e-3,
    betas: tuple[HyperParam | Schedule, HyperParam | Schedule] = (0.9, 0.999),
    eps: HyperParam | Schedule = 1e-8,
    weight_decay: HyperParam | Schedule = 0.0,
    maximize: bool = False,
) -> GradientTransformation:
    r"""Adamax, the infinity-norm variant of Adam (Kingma & Ba, 2015, sec. 7), as ``torch.optim.Adamax``.

    With step :math:`t = 1, 2, \dots`::

        g  <- -g                                 if maximize
        g  <- g + weight_decay * theta           if weight_decay != 0
        m  <- lerp(m, g, 1 - beta1)
        u  <- max(beta2 * u, |g| + eps)
        update = -(lr / (1 - beta1**t)) * m / u

    State: :class:`AdamaxState` ``(count, mu, u)``.

    Example::

        >>> opt = adamax(lr=0.1)
        >>> params = {"w": torch.zeros(2)}
        >>> state = opt.init(params)
        >>> updates, state = opt.update({"w": torch.tensor([2.0, -1.0])}, state, params)
        >>> updates["w"]
        tensor([-0.1000,  0.1000])
    """
    owner = "adamax"
    lr = _hyper(owner, "lr", lr)
    beta1, beta2 = _betas(owner, betas)
    eps = _hyper(owner, "eps", eps)
    weight_decay = _hyper(owner, "weight_decay", weight_decay)
    maximize = _flag(owner, "maximize", maximize)
    use_decay = not _is_zero(weight_decay)
    hypers = (lr, beta1, beta2, eps, weight_decay)

    def init(params: PyTree) -> AdamaxState:
        return AdamaxState(count=_new_count(params), mu=tree.zeros_like(params), u=tree.zeros_like(params))

    def update(grads: PyTree, state: AdamaxState, params: PyTree | None = None) -> tuple[PyTree, AdamaxState]:
        _check_state(owner, state, AdamaxState)
        _check_inputs(owner, grads, params, "state.mu", state.mu, needs_params=use_decay)
        _check_trees(owner, "state.u", state.u, "grads", grads)
        lr, beta1, beta2, eps, weight_decay = _at(hypers, state.count)
        count = state.count + 1
        t = count.to(_wide_float(count.device))
        clr = lr / (1 - beta1**t)

        def step(
            g: torch.Tensor, p: torch.Tensor | None, m: torch.Tensor, u: torch.Tensor
        ) -> tuple[torch.Tensor, ...]:
            if maximize:
                g = -g
            if use_decay:
                g = _add_scaled(g, p, weight_decay)
            m = torch.lerp(m, g, _one_minus(beta1, g))
            u = torch.maximum(u * _like(beta2, u), g.abs() + _like(eps, g))
            return -_like(clr, g) * m / u, m, u

        updates, mu, u = _map_leaves(step, 3, grads, params, state.mu, state.u)
        return updates, AdamaxState(count=count, mu=mu, u=u)

    return GradientTransformation(init, update)


# --------------------------------------------------------------------------------------------------
# Gradient clipping, composition, application
# --------------------------------------------------------------------------------------------------


def clip_by_global_norm(max_norm: HyperParam | Schedule) -> GradientTransformation:
    r"""Rescale the gradients so that their global L2 norm is at most ``max_norm``.

    As ``torch.nn.utils.clip_grad_norm_``::

        total_norm = || (||g_1||, ||g_2||, ...) ||
        clip_coef  = min(max_norm / (total_norm + 1e-6), 1)
        update_i   = clip_coef * g_i

    The coefficient is always applied (no branching on its value), so this works under ``vmap``.
    State: :class:`EmptyState`, or :class:`ClipState` ``(count,)`` when ``max_norm`` is a schedule.

    Example::

        >>> clip = clip_by_global_norm(1.0)
        >>> updates, _ = clip.update({"w": torch.tensor([3.0, 4.0])}, clip.init(None))
        >>> updates["w"]
        tensor([0.6000, 0.8000])
    """
    owner = "clip_by_global_norm"
    max_norm = _hyper(owner, "max_norm", max_norm, low_open=True)
    scheduled = callable(max_norm)
    state_type = ClipState if scheduled else EmptyState

    def init(params: PyTree) -> EmptyState | ClipState:
        return ClipState(count=_new_count(params)) if scheduled else EmptyState()

    def update(
        grads: PyTree, state: EmptyState | ClipState, params: PyTree | None = None
    ) -> tuple[PyTree, EmptyState | ClipState]:
        _check_state(owner, state, state_type)
        if params is not None:
            _check_trees(owner, "grads", grads, "params", params)
        new_state = ClipState(count=state.count + 1) if scheduled else state
        if not tree.leaves(grads):
            return grads, new_state
        limit = max_norm(state.count) if scheduled else max_norm
        total_norm = tree.global_norm(grads)
        clip_coef = torch.clamp(limit / (total_norm + 1e-6), max=1.0)
        return tree.map(lambda g: g * clip_coef.to(dtype=g.dtype, device=g.device), grads), new_state

    return GradientTransformation(init, update)


def chain(*transforms: GradientTransformation) -> GradientTransformation:
    """Compose transformations: each one's updates are the next one's gradients.

    ``init`` returns a tuple with one state per transformation; ``update`` passes ``params`` to all.

    Example::

        >>> opt = chain(clip_by_global_norm(1.0), sgd(lr=0.5))
        >>> params = {"w": torch.zeros(2)}
        >>> updates, state = opt.update({"w": torch.tensor([3.0, 4.0])}, opt.init(params), params)
        >>> updates["w"]
        tensor([-0.3000, -0.4000])
    """
    for i, t in enumerate(transforms):
        if not isinstance(t, GradientTransformation):
            raise TypeError(
                f"chain: `transforms[{i}]` must be a GradientTransformation, got {type(t).__name__}"
            )

    def init(params: PyTree) -> tuple[PyTree, ...]:
        return tuple(t.init(params) for t in transforms)

    def update(
        grads: PyTree, state: tuple[PyTree, ...], params: PyTree | None = None
    ) -> tuple[PyTree, tuple[PyTree, ...]]:
        if not isinstance(state, tuple) or len(state) != len(transforms):
            got = f"{len(state)} states" if isinstance(state, tuple) else type(state).__name__
            raise ValueError(f"chain: `state` must be a tuple of {len(transforms)} states, got {got}")
        new_state = []
        for t, s in zip(transforms, state, strict=True):
            grads, s = t.update(grads, s, params)
            new_state.append(s)
        return grads, tuple(new_state)

    return GradientTransformation(init, update)


def apply_updates(params: PyTree, updates: PyTree) -> PyTree:
    """``params + updates`` leaf-wise, as new tensors in each parameter's dtype.

    Example::

        >>> apply_updates({"w": torch.ones(2)}, {"w": torch.tensor([0.5, -1.0])})
        {'w': tensor([1.5000, 0.0000])}
    """
    _check_trees("apply_updates", "params", params, "updates", updates, dtypes=False)
    return tree.map(lambda p, u: (p + u).to(p.dtype), params, updates)
