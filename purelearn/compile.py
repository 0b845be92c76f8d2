r"""The compiled fast path: ``torch.compile`` of a learner's step, set up to compile once.

    step = compile.step(learner)                  # same signature and numbers as learner.step
    run  = compile.run(learner)                   # same signature and numbers as learner.run
    carry, outs = run(carry, x_seq, y_seq)

:func:`run` compiles one program per sequence: the learner's plan (:mod:`purelearn.online.driver`)
as one graph, each run of alike calls (the middle steps, the windows) one loop of torch's scan
operator, the final call after it (see :func:`run` for where it falls back to compiled steps).

``torch.compile(learner.step)`` works as it is (no graph breaks, ``fullgraph=True``), but builds
three graphs: the first step of a sequence (fresh, 0-d neuron states), the middle steps and the
last step (``last=True`` skips work). :func:`step` (and :func:`run`) avoid the extra ones:

- **Fresh states are materialised.** Before a step, every carry leaf that the step would grow
  (a fresh 0-d membrane that becomes ``[N, ...]``) is expanded to that shape. The shapes come
  from one abstract evaluation of the step (fake tensors, no computation), cached per input
  signature. Broadcasting a 0-d value gives the same numbers.
- **Static arguments pick a compiled function, not a guard.** ``last=False`` and ``last=True``
  (any keyword argument that is not a tensor) each get their own compiled function, compiled the
  first time it is needed and never again: no recompilation per step or per sequence, and
  ``torch._dynamo.config.error_on_recompile`` holds.
- **Each compiled function has its own code object,** hence its own dynamo cache, so compiling
  many learners (or a learner and its vmapped sweep) never runs into ``recompile_limit``.
- ``dynamic=False`` by default: a new shape (a smaller last batch) compiles a new static graph
  for that shape instead of switching every later call to a slower dynamic-shape graph.

Anything that maps ``(carry, *tensors, **static) -> (carry, out)`` compiles the same way, e.g. a
vmapped step of a hyperparameter sweep: ``compile.step(torch.func.vmap(step_fn))``.

Cold start
----------
The first call traces the step with dynamo and has inductor generate and build one C++ kernel per
fused group; with an empty cache code generation and the C++ builds dominate (one compiler run per
kernel, seconds each). Inductor caches built graphs on disk (``fx_graph_cache``, on by default), so a
new process with the same model skips them; whole-sequence programs, which hold torch's scan
operator, are cached too inside :func:`scan_cacheable`. What remains is tracing, kept short by
:mod:`purelearn.tree`'s plain-recursion path under ``torch.compile``; ``engine="trace"`` replaces
dynamo's bytecode interpretation by one plain run under ``make_fx`` (per step, see :func:`step`).
``mode="fast-start"`` builds scalar C++ (no explicit SIMD), which compiles about three times
faster and runs the parameter-sized elementwise kernels slower; ``backend="aot_eager"`` builds
nothing and runs the traced graph with eager kernels.

CPU memory
----------
:func:`keep_freed_memory` tells glibc to keep freed blocks in the process. Its defaults return
blocks above 128 KiB to the kernel, so every parameter-sized temporary page-faults afresh; on a
dense network this is up to half of a step's time (eager and compiled alike, and for any
PyTorch CPU code). It is a process-wide setting and off unless called.

Example::

    >>> import torch, torch.nn.functional as F
    >>> from purelearn import compile, nn, neurons, optim, online
    >>> model = nn.Sequential(nn.Linear(4, 3), neurons.LIF())
    >>> params, states = model.init(torch.Generator().manual_seed(0), torch.rand(2, 4))
    >>> learner = online.fptt(model, F.mse_loss, optim.sgd(lr=0.1))
    >>> run = compile.run(learner)
    >>> carry, outs = run(learner.init(params, states), torch.rand(5, 2, 4), torch.rand(5, 2, 3))  # doctest: +SKIP
    >>> outs.loss.shape  # doctest: +SKIP
    torch.Size([5])
"""

from __future__ import annotations

import ctypes
import ctypes.util
import itertools
import types
from collections.abc import Callable
from typing import Any

import optree
import torch
import torch.utils._pytree

from . import tree
from .online import driver
from .online.driver import StepOutput

__all__ = ["CompiledStep", "CompiledRun", "step", "run", "materialize", "keep_freed_memory", "scan_cacheable",
           "FAST_START", "MAX_SPEED", "CPU_OPTIONS", "SCAN_CACHE_MARK"]

#: The inductor options behind ``mode="fast-start"``: scalar C++ kernels (no explicit SIMD).
FAST_START: dict[str, Any] = {"cpp.vec_isa_ok": False}

#: The inductor options behind ``mode="max-speed"``: the graph's wrapper in C++ too.
MAX_SPEED: dict[str, Any] = {"cpp_wrapper": True}

#: Inductor options added for steps whose inputs are on the cpu (an ``options`` entry overrides).
#: Inductor's pattern passes turn the gradient accumulation ``mm(...) + regulariser_grad`` into
#: ``addmm``, which on the cpu copies the addend into the output before the GEMM and keeps the
#: add out of the fused optimizer kernel: one or two more passes over every weight per step. With
#: them off a compiled step is 5-17 % faster on nets A and C (same numbers).
CPU_OPTIONS: dict[str, Any] = {"pattern_matcher": False}

_counter = itertools.count()


def _with_own_code(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    """``fn`` with a fresh copy of its code object: dynamo keeps one cache per code object."""
    code = fn.__code__.replace(co_name=name, co_qualname=name) if hasattr(fn.__code__, "co_qualname") \
        else fn.__code__.replace(co_name=name)
    return types.FunctionType(code, fn.__globals__, name, fn.__defaults__, fn.__closure__)


def _signature(tree_: Any) -> tuple[Any, ...]:
    leaves, spec = optree.tree_flatten(tree_)
    return (spec, tuple((tuple(x.shape), x.dtype, x.device) if isinstance(x, torch.Tensor) else (type(x), x)
                        for x in leaves))


def _eval_shape(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn``'s output with fake tensors (shapes, dtypes, devices; nothing computed)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    mode = FakeTensorMode(allow_non_fake_inputs=True)
    with mode:
        fake_args = optree.tree_map(lambda x: mode.from_tensor(x) if isinstance(x, torch.Tensor) else x, args)
        return fn(*fake_args, **kwargs)


def _grown_view(a: tuple[int, ...], b: tuple[int, ...], stacked: bool = False) -> tuple[int, ...] | None:
    """How a leaf of shape ``a`` that a step turns into shape ``b`` broadcasts to ``b``, or None.

    A fresh state is 0-d (broadcast from the right) or, stacked by a sweep, ``[K]`` (one value per
    config: broadcast from the left). Where both readings fit and differ the leaf is left alone,
    unless ``stacked`` says the carry's leading axis is the sweep's (then the left reading).
    """
    right = a if all(x in (1, y) for x, y in zip(a[::-1], b[::-1], strict=False)) else None
    left = a + (1,) * (len(b) - len(a)) if b[:len(a)] == a else None
    if right is not None and left is not None and a and right != left and not stacked:
        return None
    if left is not None and a:
        return left
    return right


def _growth_plan(fn: Callable[..., Any], carry: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
                 ) -> tuple[tuple[int, tuple[int, ...], torch.Size], ...]:
    """Which carry leaves ``fn`` grows (0-d → [N, ...]): ``(leaf index, broadcast view, shape)``."""
    try:
        new_carry = _eval_shape(fn, carry, *args, **kwargs)[0]
    except Exception:  # noqa: BLE001 - materialising is an optimisation; without it one more graph is built
        return ()
    return _growth(carry, new_carry)


def _growth(carry: Any, new_carry: Any, stacked: bool = False) -> tuple[tuple[int, tuple[int, ...], torch.Size], ...]:
    """:func:`_growth_plan` from the carry before and after a step (``stacked``: see :func:`_grown_view`)."""
    old, old_spec = optree.tree_flatten(carry)
    new, new_spec = optree.tree_flatten(new_carry)
    if old_spec != new_spec:
        return ()
    plan = []
    for i, (a, b) in enumerate(zip(old, new, strict=True)):
        if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dim() < b.dim():
            view = _grown_view(tuple(a.shape), tuple(b.shape), stacked)
            if view is not None:
                plan.append((i, view, b.shape))
    return tuple(plan)


def materialize(fn: Callable[..., Any], carry: Any, *args: Any, **kwargs: Any) -> Any:
    """``carry`` with every leaf that ``fn(carry, *args, **kwargs)`` would grow already grown.

    Fresh neuron states are 0-d and broadcast on the first step; expanding them to the shape they
    take after it (same values) lets that step share the compiled graph of all the others.
    """
    plan = _growth_plan(fn, carry, args, kwargs)
    return _apply_plan(carry, plan)


def _apply_plan(carry: Any, plan: tuple[tuple[int, tuple[int, ...], torch.Size], ...]) -> Any:
    if not plan:
        return carry
    leaves, spec = optree.tree_flatten(carry)
    for i, view, shape in plan:
        leaves[i] = leaves[i].reshape(view).expand(shape).contiguous()
    return optree.tree_unflatten(spec, leaves)


class _Traced:
    """One graph of the ``"trace"`` engine: the step traced by ``make_fx`` and built by inductor."""

    def __init__(self, fn: Callable[..., Any], carry: Any, args: tuple[Any, ...], static: dict[str, Any],
                 options: dict[str, Any] | None) -> None:
        import torch._inductor
        from torch.fx.experimental.proxy_tensor import make_fx

        leaves, self.spec = optree.tree_flatten((carry, args))
        self.is_tensor = [isinstance(leaf, torch.Tensor) for leaf in leaves]
        self.constants = [None if t else leaf for leaf, t in zip(leaves, self.is_tensor, strict=True)]
        out: dict[str, Any] = {}

        def flat(*tensors: torch.Tensor) -> list[torch.Tensor]:
            it = iter(tensors)
            full = [next(it) if t else c for t, c in zip(self.is_tensor, self.constants, strict=True)]
            c, a = optree.tree_unflatten(self.spec, full)
            out_leaves, out["spec"] = optree.tree_flatten(fn(c, *a, **static))
            out["constants"] = [None if isinstance(o, torch.Tensor) else o for o in out_leaves]
            return [o for o in out_leaves if isinstance(o, torch.Tensor)]

        tensors = [leaf for leaf, t in zip(leaves, self.is_tensor, strict=True) if t]
        graph = make_fx(flat)(*tensors)
        self.out_spec, self.out_constants = out["spec"], out["constants"]
        self.compiled = torch._inductor.compile(graph, tensors, options)

    def __call__(self, carry: Any, args: tuple[Any, ...]) -> Any:
        leaves = optree.tree_leaves((carry, args))
        results = iter(self.compiled(*(leaf for leaf, t in zip(leaves, self.is_tensor, strict=True) if t)))
        out = [next(results) if c is None else c for c in self.out_constants]
        return optree.tree_unflatten(self.out_spec, out)


class CompiledStep:
    """A compiled ``step(carry, *tensors, **static) -> (carry, out)``; build it with :func:`step`.

    ``graphs`` maps each static-argument combination (``"dynamo"`` engine) or input signature and
    static arguments (``"trace"`` engine) seen so far to its compiled function.
    """

    def __init__(self, fn: Callable[..., Any], *, engine: str = "dynamo", materialize_carry: bool = True,
                 **compile_kwargs: Any) -> None:
        if not callable(fn):
            raise TypeError(f"compile.step: expected a learner or a callable step, got {type(fn).__name__}")
        if engine not in ("dynamo", "trace"):
            raise ValueError(f"compile.step: `engine` must be 'dynamo' or 'trace', got {engine!r}")
        self.fn = fn
        self.engine = engine
        self.materialize_carry = materialize_carry
        self.compile_kwargs = compile_kwargs
        self.graphs: dict[tuple[Any, ...], Callable[..., Any]] = {}
        self._plans: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        self._last_out: tuple[int, ...] | None = None

    def _kwargs_for(self, carry: Any, args: tuple[Any, ...]) -> dict[str, Any]:
        """The compile arguments, with :data:`CPU_OPTIONS` when inductor builds for cpu inputs."""
        kwargs = dict(self.compile_kwargs)
        if kwargs.get("backend", "inductor") != "inductor":
            return kwargs
        tensors = [x for x in optree.tree_leaves((carry, args)) if isinstance(x, torch.Tensor)]
        if tensors and tensors[0].device.type == "cpu":
            kwargs["options"] = {**CPU_OPTIONS, **(kwargs.get("options") or {})}
        return kwargs

    def _compiled(self, static: dict[str, Any], carry: Any, args: tuple[Any, ...]) -> Callable[..., Any]:
        key = tuple(sorted(static.items()))
        compiled = self.graphs.get(key)
        if compiled is None:
            fn = self.fn

            def call(carry: Any, *args: Any) -> Any:
                return fn(carry, *args, **static)

            own = _with_own_code(call, f"purelearn_step_{next(_counter)}")
            compiled = self.graphs[key] = torch.compile(own, **self._kwargs_for(carry, args))
        return compiled

    def __call__(self, carry: Any, *args: Any, **static: Any) -> Any:
        for name, value in static.items():
            if isinstance(value, torch.Tensor):
                raise TypeError(f"compile.step: keyword `{name}` must be a Python value (it selects a graph), "
                                "pass tensors positionally")
        if self.engine == "dynamo":
            # A carry that this step returned has its post-step shapes already: skip the signature
            # (dynamo's guards check the inputs anyway; a stale match costs a graph, never a number).
            if self.materialize_carry and tuple(map(id, optree.tree_leaves(carry))) != self._last_out:
                carry = self._materialize(carry, args, static)
            result = self._compiled(static, carry, args)(carry, *args)
            if self.materialize_carry and isinstance(result, tuple) and result:
                self._last_out = tuple(map(id, optree.tree_leaves(result[0])))
            return result
        if self.materialize_carry:
            carry = self._materialize(carry, args, static)
        sig = (_signature((carry, args)), tuple(sorted(static.items())))
        traced = self.graphs.get(sig)
        if traced is None:
            options = self._kwargs_for(carry, args).get("options")
            traced = self.graphs[sig] = _Traced(self.fn, carry, args, static, options)
        return traced(carry, args)

    def _materialize(self, carry: Any, args: tuple[Any, ...], static: dict[str, Any]) -> Any:
        sig = (_signature((carry, args)), tuple(sorted(static.items())))
        plan = self._plans.get(sig)
        if plan is None:
            plan = self._plans[sig] = _growth_plan(self.fn, carry, args, static)
        return _apply_plan(carry, plan)


def _compile_kwargs(mode: str | None, backend: str, dynamic: bool | None, fullgraph: bool,
                    options: dict[str, Any] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    options = dict(options or {})
    if mode in ("fast-start", "max-speed"):
        if backend != "inductor":
            raise ValueError(f"compile: mode={mode!r} configures inductor; leave `backend` at 'inductor'")
        options = {**(FAST_START if mode == "fast-start" else MAX_SPEED), **options}
        mode = None
    out = dict(backend=backend, dynamic=dynamic, fullgraph=fullgraph, **kwargs)
    if mode is not None:
        out["mode"] = mode
    if options:
        out["options"] = options
    return out


def step(learner_or_step: Any, *, engine: str = "dynamo", mode: str | None = None, backend: str = "inductor",
         dynamic: bool | None = False, fullgraph: bool = True, options: dict[str, Any] | None = None,
         materialize_carry: bool = True, **compile_kwargs: Any) -> CompiledStep:
    """Compile a learner's ``step`` (or any ``step(carry, *tensors, **static) -> (carry, out)``).

    The result is called like the original and gives its numbers. ``mode`` is ``torch.compile``'s
    (``"default"``, ``"max-autotune"``, ...) or ``"fast-start"`` (see the module docstring);
    ``backend``, ``dynamic``, ``fullgraph`` and ``options`` go to ``torch.compile`` as well.

    ``engine="dynamo"`` (default) is ``torch.compile``. ``engine="trace"`` skips dynamo: the step
    runs once under ``make_fx`` (plain Python, no bytecode interpretation) and the graph goes to
    inductor (``torch._inductor.compile``); a graph is kept per input signature (tree structure,
    shapes, dtypes, devices) and static arguments. It starts faster (about 30 % less to the first
    result with a warm inductor cache) but, unlike dynamo, treats tensors the step reads from
    elsewhere than its arguments (e.g. a tensor hyperparameter held by the learner) as constants.

    ``mode="max-speed"`` builds the graph's wrapper in C++ too (inductor's ``cpp_wrapper``): less
    Python per step (5 % on FPTT net A here), at the price of a longer first compilation.
    """
    fn = learner_or_step.step if hasattr(learner_or_step, "step") and hasattr(learner_or_step, "init") \
        else learner_or_step
    kwargs = _compile_kwargs(mode, backend, dynamic, fullgraph, options, compile_kwargs)
    if engine == "trace" and (backend != "inductor" or mode not in (None, "fast-start", "max-speed")
                              or compile_kwargs):
        raise ValueError("compile.step: engine='trace' builds with inductor; it takes `mode` None, "
                         "'fast-start' or 'max-speed' and `options` only")
    return CompiledStep(fn, engine=engine, materialize_carry=materialize_carry, **kwargs)


def _torch_scan(f: Callable[[Any, Any], tuple[Any, Any]], carry: Any, xs: Any, y_spec: Any) -> tuple[Any, Any]:
    """:func:`purelearn.scan.scan`'s contract on torch's scan operator (``torch._higher_order_ops.scan``),
    which compiles the loop once instead of unrolling it. Its carry and outputs must be flat lists of
    tensors: the carry is flattened here (non-tensor leaves, fixed per call, stay outside) and the
    outputs are rebuilt with ``y_spec``, their tree structure (``torch.utils._pytree``), known
    beforehand (a side effect in the loop's body would break the graph). The carry is flattened with
    :func:`purelearn.tree.flatten`, which dynamo traces as plain recursion."""
    from torch._higher_order_ops.scan import scan as scan_op

    pytree = torch.utils._pytree
    leaves, unflatten = tree.flatten(carry)
    is_tensor = [isinstance(x, torch.Tensor) for x in leaves]
    constants = [None if t else x for x, t in zip(leaves, is_tensor, strict=True)]

    def rebuild(tensors: list[torch.Tensor]) -> Any:
        it = iter(tensors)
        return unflatten([next(it) if t else c for t, c in zip(is_tensor, constants, strict=True)])

    def body(tensors: list[torch.Tensor], x: Any) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        new_carry, y = f(rebuild(tensors), x)
        new_leaves = [leaf for leaf, t in zip(tree.leaves(new_carry), is_tensor, strict=True) if t]
        outs = new_leaves + pytree.tree_leaves(y)
        # the operator refuses outputs that alias its inputs or each other (a leaf passed through
        # unchanged, an output that is also carried): those leave as copies
        seen = {id(a) for a in tensors}
        for i, a in enumerate(outs):
            if id(a) in seen:
                outs[i] = a.clone()
            seen.add(id(outs[i]))
        return outs[:len(new_leaves)], outs[len(new_leaves):]

    tensors, ys = scan_op(body, [x for x, t in zip(leaves, is_tensor, strict=True) if t], xs)
    return rebuild(list(tensors)), pytree.tree_unflatten(list(ys), y_spec)


#: What :func:`scan_cacheable` adds to ``torch._inductor.config.unsafe_marked_cacheable_functions``.
SCAN_CACHE_MARK = {"torch.ops.higher_order.scan": f"purelearn.compile: scan body hashed with its graph (torch "
                                                   f"{torch.__version__})"}


def scan_cacheable() -> Any:
    """A context in which inductor's on-disk caches (FX graph and AOT autograd) keep graphs that hold
    torch's scan operator. torch 2.13 does not mark the operator cacheable, so every such graph
    bypasses the caches ("Can't cache HigherOrderOperator: scan") and a new process generates and
    loads the whole-sequence program's code again (the C++ builds alone are reused): half of a warm
    start. The loop's body is a subgraph of the cached graph, so it is part of the cache key like
    every other node (as for ``invoke_subgraph``, which torch marks cacheable); the mark's value
    carries torch's version, so another torch never reuses an entry. :class:`CompiledRun` compiles
    and calls its programs inside this context; nothing outside it is affected."""
    import torch._inductor.config as inductor_config

    marked = inductor_config.unsafe_marked_cacheable_functions
    return inductor_config.patch(unsafe_marked_cacheable_functions={**marked, **SCAN_CACHE_MARK})


def _plan_key(plan: tuple[driver.Call, ...]) -> tuple[Any, ...]:
    return tuple((call.start, call.stop, isinstance(call.t, slice), call.options) for call in plan)


class CompiledRun:
    """``learner.run`` compiled; build it with :func:`run`. Called like ``learner.run``.

    ``programs`` maps each plan (and input signature) seen so far to its compiled whole-sequence
    program; ``compiled_step`` is the per-step fallback (:class:`CompiledStep`).
    """

    def __init__(self, learner: Any, whole_sequence: bool, **compile_kwargs: Any) -> None:
        self.learner = learner
        self.whole_sequence = whole_sequence and getattr(learner, "fixed_plan", False)
        self.compile_kwargs = compile_kwargs
        self.compiled_step = step(learner, **compile_kwargs)
        self.programs: dict[tuple[Any, ...], Callable[..., Any]] = {}
        self._prepared: dict[tuple[Any, ...], tuple[Any, Any]] = {}

    def __call__(self, carry: Any, x_seq: torch.Tensor, y_seq: torch.Tensor) -> tuple[Any, StepOutput]:
        if not self.whole_sequence:
            return driver.run(self.learner, carry, x_seq, y_seq, step=self.compiled_step)
        learner = self.learner
        owner = type(learner).__name__
        T = driver.check_sequence(owner, x_seq, y_seq)
        plan = learner.plan(carry, T)
        driver.check_plan(owner, plan, T)
        carry, y_spec = self._prepare(carry, plan, x_seq, y_seq)
        key = (_plan_key(plan), _signature((carry, x_seq, y_seq)))
        program = self.programs.get(key)
        if program is None:
            def scan_op(f: Callable[[Any, Any], tuple[Any, Any]], carry: Any, xs: Any) -> tuple[Any, Any]:
                return _torch_scan(f, carry, xs, y_spec)

            groups = driver.groups(plan)  # worked out here, not traced

            def sequence(carry: Any, x_seq: torch.Tensor, y_seq: torch.Tensor) -> Any:
                return driver.walk(learner, plan, carry, x_seq, y_seq, learner.step, scan_op, groups)

            own = _with_own_code(sequence, f"purelearn_sequence_{next(_counter)}")
            kwargs = self.compiled_step._kwargs_for(carry, (x_seq, y_seq))
            program = self.programs[key] = torch.compile(own, **kwargs)
        with scan_cacheable():
            return program(carry, x_seq, y_seq)

    def _prepare(self, carry: Any, plan: tuple[driver.Call, ...], x_seq: torch.Tensor, y_seq: torch.Tensor
                 ) -> tuple[Any, Any]:
        """The carry with the leaves that the first call grows (fresh 0-d states) grown, and the tree
        structure of a step's outputs: both from one abstract evaluation of the first call (fake
        tensors), cached per input signature."""
        first = plan[0]
        sig = (_signature((carry, x_seq, y_seq)), _plan_key(plan[:1]))
        prepared = self._prepared.get(sig)
        if prepared is None:
            args, options = (x_seq[first.t], y_seq[first.t]), dict(first.options)
            new_carry, out = _eval_shape(self.learner.step, carry, *args, **options)
            stacked = bool(getattr(self.learner, "stacked_carry", False))
            out_spec = torch.utils._pytree.tree_structure(out)
            prepared = self._prepared[sig] = (_growth(carry, new_carry, stacked), out_spec)
        growth, y_spec = prepared
        # torch's scan wants its initial carry laid out as the step returns it: dense, row-major
        # (a vmapped init returns stride-0 expansions of shared values)
        carry = optree.tree_map(lambda a: a.contiguous() if isinstance(a, torch.Tensor) else a, carry)
        return _apply_plan(carry, growth), y_spec


def run(learner: Any, *, whole_sequence: bool = True, **compile_kwargs: Any) -> CompiledRun:
    """``learner.run`` compiled: same signature, same numbers (to float rounding).

    **One program per sequence** (``whole_sequence=True``, the default): the learner's plan is
    compiled as one ``torch.compile`` graph, each run of alike calls (the middle steps, the
    windows) a loop of torch's scan operator (``torch._higher_order_ops.scan``: compiled once, not
    unrolled, its compile time independent of T), the final ``last=True`` call after it. A new T
    or input shape compiles a new program; sequences of one shape reuse theirs
    (``error_on_recompile`` holds). BPTT's plan is one call: its program is that call, the
    sequence unrolled inside the step.

    **Per step** (``whole_sequence=False``, and always for learners whose plan changes from one
    sequence to the next: SLTT-K): the driver walks the plan in Python with the step compiled by
    :func:`step`, one graph per kind of call (the middle steps and the last one; a window and a
    shorter last window).

    ``compile_kwargs`` are :func:`step`'s (``mode``, ``backend``, ``options``, ...); ``engine="trace"``
    applies to the per-step path only.
    """
    if engine := compile_kwargs.get("engine"):
        if engine != "dynamo" and whole_sequence and getattr(learner, "fixed_plan", False):
            raise ValueError("compile.run: engine='trace' compiles steps; pass whole_sequence=False with it")
    return CompiledRun(learner, whole_sequence, **compile_kwargs)


def keep_freed_memory(threshold_bytes: int = 1 << 30) -> bool:
    """Keep freed memory in the process (glibc ``mallopt``); returns False where that is not glibc.

    Sets ``M_MMAP_THRESHOLD`` to 32 MiB (blocks below it come from the heap, not fresh ``mmap``s)
    and ``M_TRIM_THRESHOLD`` to ``threshold_bytes`` (the heap is not returned to the kernel below
    it). Process-wide: it speeds up every PyTorch CPU program with large temporaries, at the price
    of a resident set that stays at its high-water mark. Numbers are not affected.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    ok = mallopt(m_mmap_threshold, 32 << 20) == 1
    return bool(mallopt(m_trim_threshold, int(threshold_bytes)) == 1 and ok)
