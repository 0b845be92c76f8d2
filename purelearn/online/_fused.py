"""The one eager fast path shared by every learner: plain autograd and elementwise maps without temporaries.

Outside every ``torch.func`` transform and ``torch.compile`` trace, on plain tensors without autograd
history (:func:`eager_applies`), two shortcuts give the same numbers bit for bit with less work:

- :func:`purelearn.online._grad.grad_with_aux` uses ``torch.autograd.grad`` instead of
  ``torch.func.grad`` (no per-operation functorch wrapping);
- :func:`map_elementwise` evaluates an elementwise equation over pytrees — written once, with
  ``+ − × ÷`` on its tensor arguments — once for all leaves: each operation is one
  ``torch._foreach_*`` call over the list of leaves (as ``torch.optim``'s ``foreach`` path; one
  dispatch, or one multi-tensor kernel on CUDA, instead of one per leaf), and intermediate results
  are updated in place: ``(w − (w_ra + g/(2α)))·n·(α/2)`` allocates one parameter-sized tensor per
  leaf instead of four. On large layers a fresh allocation per operation costs more than the
  arithmetic.

Everywhere else (``vmap``, ``grad``, ``compile``) ``map_elementwise`` is ``tree.map`` of the same
function on the tensors themselves.

Example::

    >>> import torch
    >>> from purelearn.online._fused import map_elementwise
    >>> a, b = {"w": torch.ones(3)}, {"w": torch.full((3,), 2.0)}
    >>> map_elementwise(lambda x, y: (x + y) * 2.0 - y / 4.0, a, b)
    {'w': tensor([5.5000, 5.5000, 5.5000])}
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import optree
import torch

from .. import tree

__all__ = ["eager_applies", "map_elementwise"]


def eager_applies(*trees: Any) -> bool:
    """True outside every ``torch.func`` transform and ``torch.compile`` trace, for plain tensors that
    carry no autograd history of their own: there the eager shortcuts apply."""
    if torch._C._are_functorch_transforms_active() or torch.compiler.is_compiling():
        return False  # decided before flattening anything: cheap to trace
    return all(type(leaf) is torch.Tensor and not leaf.requires_grad for leaf in optree.tree_leaves(trees))


_FOREACH = {operator.add: "add", operator.sub: "sub", operator.mul: "mul", operator.truediv: "div"}
_COMMUTATIVE = (operator.add, operator.mul)


class _PerLeaf(tuple):
    """One Python number per leaf (e.g. ``w.numel()``); arithmetic with numbers stays per leaf."""

    def _map(self, op: Callable[[Any, Any], Any], other: Any, reflected: bool) -> Any:
        if isinstance(other, _PerLeaf):
            pairs = zip(other, self, strict=True) if reflected else zip(self, other, strict=True)
            return _PerLeaf(op(a, b) for a, b in pairs)
        if isinstance(other, (int, float)) and not isinstance(other, bool):
            return _PerLeaf(op(other, a) if reflected else op(a, other) for a in self)
        return NotImplemented


for _op in _FOREACH:
    setattr(_PerLeaf, f"__{_FOREACH[_op].replace('div', 'truediv')}__",
            lambda self, other, op=_op: self._map(op, other, False))
    setattr(_PerLeaf, f"__r{_FOREACH[_op].replace('div', 'truediv')}__",
            lambda self, other, op=_op: self._map(op, other, True))


class _Expr:
    """An elementwise expression over the leaves: an input list of tensors (``op`` None) or
    ``op(left, right)``."""

    __slots__ = ("op", "args")

    def __init__(self, op: Callable[[Any, Any], Any] | None, args: tuple[Any, ...]) -> None:
        self.op, self.args = op, args

    def numel(self) -> _PerLeaf:
        if self.op is not None:
            raise TypeError("map_elementwise: numel() of an intermediate result; take it of an input")
        return _PerLeaf(leaf.numel() for leaf in self.args[0])


for _op in _FOREACH:
    setattr(_Expr, f"__{_FOREACH[_op].replace('div', 'truediv')}__",
            lambda self, other, op=_op: _Expr(op, (self, other)))
    setattr(_Expr, f"__r{_FOREACH[_op].replace('div', 'truediv')}__",
            lambda self, other, op=_op: _Expr(op, (other, self)))


def _leafwise(x: Any, n: int) -> list[Any]:
    """``x`` as one operand per leaf."""
    if isinstance(x, list):
        return x
    return list(x) if isinstance(x, _PerLeaf) else [x] * n


def _keeps(temp: list[torch.Tensor], other: Any) -> bool:
    """Whether ``op(temp_i, other_i)`` has ``temp_i``'s shape, dtype and device for every leaf i."""
    if type(other) is float:
        return all(t.is_floating_point() for t in temp)
    for t, o in zip(temp, _leafwise(other, len(temp)), strict=True):
        if isinstance(o, torch.Tensor):
            if o.dim() > 0 and (o.shape != t.shape or o.device != t.device):
                return False
            if o.dtype == t.dtype:
                continue
        elif type(o) is float and t.is_floating_point():
            continue
        if torch.result_type(t, o) != t.dtype:
            return False
    return True


def _foreach(op: Callable[[Any, Any], Any], left: list[torch.Tensor], right: Any, inplace: bool) -> Any:
    """``op`` over the leaves as one ``torch._foreach_*`` call; ``inplace`` writes into ``left``."""
    fn = getattr(torch, f"_foreach_{_FOREACH[op]}{'_' if inplace else ''}")
    out = fn(left, list(right) if isinstance(right, _PerLeaf) else right)
    return left if inplace else list(out)


_OUT = {operator.add: torch.add, operator.sub: torch.sub, operator.mul: torch.mul, operator.truediv: torch.div}


def _into(op: Callable[[Any, Any], Any], left: list[torch.Tensor], right: Any, out: list[torch.Tensor]
          ) -> list[torch.Tensor]:
    """``op(left_i, right_i)`` written into ``out_i`` (which may be ``right_i``), leaf by leaf."""
    for a, b, o in zip(left, _leafwise(right, len(left)), out, strict=True):
        _OUT[op](a, b, out=o)
    return out


def _evaluate(node: Any, spare: list[list[torch.Tensor]]) -> tuple[Any, bool]:
    """``(value, is_temporary)``; a list value holds one tensor per leaf. A temporary is a list this
    evaluation made and nothing else holds; ``spare`` keeps consumed temporaries for reuse."""
    if type(node) is not _Expr:
        return node, False
    op, args = node.op, node.args
    if op is None:
        return args[0], False
    left, left_temp = _evaluate(args[0], spare)
    right, right_temp = _evaluate(args[1], spare)
    if not isinstance(left, list) and not isinstance(right, list):
        return op(left, right), False  # numbers and 0-d tensors: as written
    if not isinstance(left, list) and op in _COMMUTATIVE:
        left, right, left_temp, right_temp = right, left, right_temp, left_temp  # b ∘ a is a ∘ b, bit for bit
    if not isinstance(left, list):  # number − list, number / list: leaf by leaf, as written
        return [op(left, r) for r in right], True
    if left_temp and _keeps(left, right):
        if right_temp:
            spare.append(right)
        return _foreach(op, left, right, inplace=True), True
    if right_temp and isinstance(right, list) and _keeps(right, left):
        if op in _COMMUTATIVE:
            return _foreach(op, right, left, inplace=True), True
        return _into(op, left, right, right), True
    if spare and _keeps(spare[-1], left) and _keeps(spare[-1], right) and all(
            b.shape == a.shape and b.dtype == torch.result_type(a, r)
            for b, a, r in zip(spare[-1], left, _leafwise(right, len(left)), strict=True)):
        return _into(op, left, right, spare.pop()), True
    return _foreach(op, left, right, inplace=False), True


def map_elementwise(fn: Callable[..., Any], first: Any, *rest: Any) -> Any:
    """``tree.map(fn, first, *rest)`` for an elementwise ``fn`` built from ``+ − × ÷`` (its tensor
    arguments may meet numbers and 0-d tensors, and ``numel()`` of an argument); eagerly
    (:func:`eager_applies`) it runs once over all leaves, with the same numbers."""
    if torch._C._are_functorch_transforms_active() or torch.compiler.is_compiling():
        return tree.map(fn, first, *rest)  # decided before flattening anything: cheap to trace
    flat = [optree.tree_flatten(t) for t in (first, *rest)]
    spec = flat[0][1]
    if any(other != spec for _, other in flat[1:]) or not flat[0][0] or not eager_applies([f[0] for f in flat]):
        return tree.map(fn, first, *rest)  # under a transform, or mismatched trees (tree.map names them)
    value, temporary = _evaluate(fn(*(_Expr(None, (leaves,)) for leaves, _ in flat)), [])
    if not isinstance(value, list):
        return tree.map(fn, first, *rest)  # no tensor argument reached the result
    if not temporary:
        value = [leaf.clone() for leaf in value]  # fn returned an input: never alias it
    return optree.tree_unflatten(spec, value)
