"""The one eager fast path shared by every learner: plain autograd and elementwise maps without temporaries.

Outside every ``torch.func`` transform and ``torch.compile`` trace, on plain tensors without autograd
history (:func:`eager_applies`), two shortcuts give the same numbers bit for bit with less work:

- :func:`purelearn.online._grad.grad_with_aux` uses ``torch.autograd.grad`` instead of
  ``torch.func.grad`` (no per-operation functorch wrapping);
- :func:`map_elementwise` evaluates an elementwise equation over pytrees — written once, with
  ``+ − × ÷`` on its tensor arguments — as an expression tree whose intermediate results are reused
  in place: ``(w − (w_ra + g/(2α)))·n·(α/2)`` allocates one parameter-sized tensor instead of four.
  On large layers a fresh allocation per operation costs more than the arithmetic.

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


_INPLACE = {operator.add: "add_", operator.sub: "sub_", operator.mul: "mul_", operator.truediv: "div_"}
_INTO_RIGHT = {operator.sub: torch.sub, operator.truediv: torch.div}


class _Expr:
    """A node of an elementwise expression: an input tensor (``op`` None) or ``op(left, right)``."""

    __slots__ = ("op", "args")

    def __init__(self, op: Callable[[Any, Any], Any] | None, args: tuple[Any, ...]) -> None:
        self.op, self.args = op, args

    def numel(self) -> int:
        if self.op is not None:
            raise TypeError("map_elementwise: numel() of an intermediate result; take it of an input")
        return self.args[0].numel()

    def _node(self, op: Callable[[Any, Any], Any], left: Any, right: Any) -> _Expr:
        return _Expr(op, (left, right))

    def __add__(self, other: Any) -> _Expr:
        return self._node(operator.add, self, other)

    def __radd__(self, other: Any) -> _Expr:
        return self._node(operator.add, other, self)

    def __sub__(self, other: Any) -> _Expr:
        return self._node(operator.sub, self, other)

    def __rsub__(self, other: Any) -> _Expr:
        return self._node(operator.sub, other, self)

    def __mul__(self, other: Any) -> _Expr:
        return self._node(operator.mul, self, other)

    def __rmul__(self, other: Any) -> _Expr:
        return self._node(operator.mul, other, self)

    def __truediv__(self, other: Any) -> _Expr:
        return self._node(operator.truediv, self, other)

    def __rtruediv__(self, other: Any) -> _Expr:
        return self._node(operator.truediv, other, self)


def _fits(temp: torch.Tensor, other: Any) -> bool:
    """Whether ``op(temp, other)`` (either order) has ``temp``'s shape, dtype and device."""
    if isinstance(other, torch.Tensor):
        if other.device != temp.device or (other.shape != temp.shape and other.dim() > 0):
            return False
    return torch.result_type(temp, other) == temp.dtype


def _evaluate(node: Any) -> tuple[Any, bool]:
    """``(value, is_temporary)``: a temporary is a tensor this evaluation made and nothing else holds."""
    if not isinstance(node, _Expr):
        return node, False
    if node.op is None:
        return node.args[0], False
    (left, left_temp), (right, right_temp) = _evaluate(node.args[0]), _evaluate(node.args[1])
    if left_temp and _fits(left, right):
        return getattr(left, _INPLACE[node.op])(right), True
    if right_temp and _fits(right, left):
        if node.op in (operator.add, operator.mul):  # commutative: b ∘ a is a ∘ b, bit for bit
            return getattr(right, _INPLACE[node.op])(left), True
        if isinstance(left, torch.Tensor):
            return _INTO_RIGHT[node.op](left, right, out=right), True
    out = node.op(left, right)
    return out, isinstance(out, torch.Tensor)


def _fused(fn: Callable[..., Any]) -> Callable[..., Any]:
    def call(*leaves: torch.Tensor) -> Any:
        return _evaluate(fn(*(_Expr(None, (leaf,)) for leaf in leaves)))[0]

    return call


def map_elementwise(fn: Callable[..., Any], first: Any, *rest: Any) -> Any:
    """``tree.map(fn, first, *rest)`` for an elementwise ``fn`` built from ``+ − × ÷`` (its tensor
    arguments may meet numbers and 0-d tensors); eagerly (:func:`eager_applies`) its intermediate
    results are reused in place, with the same numbers. ``fn`` may call ``numel()`` of an argument."""
    if eager_applies(first, *rest):
        return tree.map(_fused(fn), first, *rest)
    return tree.map(fn, first, *rest)
