"""Pytree helpers on top of ``optree``.

Every helper here flattens with optree, so leaves are always paired by one library. Leaf order
is optree's: dict keys are **sorted**, tuples and named tuples keep their field order.
(``torch.utils._pytree`` keeps dict insertion order instead; purelearn never pairs leaves
flattened by the two libraries, so the difference never matters to users of these helpers.)

The containers purelearn builds are dicts, tuples and named tuples of tensors, which
``torch.func`` (through ``torch.utils._pytree``) flattens as well.

**Inside ``torch.compile``** dynamo traces optree through Python stand-ins (its "polyfills"): a few
hundred traced bytecodes per node, 90 % of the tracing of a learner's step. There, :func:`map`,
:func:`leaves` and :func:`flatten` walk dicts, lists, tuples, named tuples and None with plain
recursion instead (same leaves, same order, same structures); other containers go to optree.

Example::

    >>> import torch
    >>> from purelearn import tree
    >>> a = {"w": torch.ones(2), "b": torch.zeros(())}
    >>> tree.global_norm(tree.scale(a, 3.0))
    tensor(4.2426)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optree
import torch

PyTree = Any

__all__ = [
    "PyTree",
    "map",
    "leaves",
    "flatten",
    "structure",
    "zeros_like",
    "ones_like",
    "add",
    "sub",
    "scale",
    "add_scaled",
    "stack",
    "unstack",
    "global_norm",
    "allclose",
    "max_abs_diff",
    "assert_same_structure",
    "same_layout",
    "clone",
]

_builtin_map = map


def map(fn: Callable[..., Any], tree: PyTree, *rest: PyTree) -> PyTree:  # noqa: A001
    """Apply ``fn`` leaf-wise to ``tree`` and the trees in ``rest`` (which must share its structure)."""
    if torch.compiler.is_compiling():
        return _traced_map(fn, tree, rest)
    return optree.tree_map(fn, tree, *rest)


def leaves(tree: PyTree) -> list[Any]:
    """The leaves of ``tree`` in optree order (dict keys sorted)."""
    if torch.compiler.is_compiling():
        out: list[Any] = []
        _traced_flatten(tree, out)
        return out
    return optree.tree_leaves(tree)


def flatten(tree: PyTree) -> tuple[list[Any], Callable[[list[Any]], PyTree]]:
    """``(leaves, unflatten)``: the leaves in optree order and the function that builds a tree of
    ``tree``'s structure from a list of as many leaves."""
    if torch.compiler.is_compiling():
        out: list[Any] = []
        build = _traced_flatten(tree, out)
        return out, lambda new: build(iter(new))
    flat, spec = optree.tree_flatten(tree)
    return flat, spec.unflatten


# ---- the traced path: plain recursion over the containers purelearn builds


def _is_namedtuple(x: Any) -> bool:
    return isinstance(x, tuple) and hasattr(type(x), "_fields")


def _plain_node(x: Any) -> bool:
    """A container the traced path walks itself (dicts: their keys must sort, as optree's do)."""
    kind = type(x)
    return kind is dict or kind is list or kind is tuple or _is_namedtuple(x)


def _optree_leaf(x: Any) -> bool:
    return isinstance(x, torch.Tensor) or type(x) in (int, float, bool, complex, str) or optree.tree_is_leaf(x)


def _traced_map(fn: Callable[..., Any], tree: PyTree, rest: tuple[PyTree, ...]) -> PyTree:
    if tree is None:
        if any(r is not None for r in rest):
            return optree.tree_map(fn, tree, *rest)  # optree's error
        return None
    if isinstance(tree, torch.Tensor):
        return fn(tree, *rest)
    if _plain_node(tree):
        for r in rest:
            if type(r) is not type(tree) or len(r) != len(tree) or (type(tree) is dict and r.keys() != tree.keys()):
                return optree.tree_map(fn, tree, *rest)  # mismatched structures: optree's error
        if type(tree) is dict:
            if not rest:
                return {key: _traced_map(fn, value, ()) for key, value in tree.items()}
            return {key: _traced_map(fn, tree[key], tuple([r[key] for r in rest])) for key in tree}
        if not rest:
            items = [_traced_map(fn, x, ()) for x in tree]
        else:
            items = [_traced_map(fn, x, tuple([r[i] for r in rest])) for i, x in enumerate(tree)]
        if type(tree) is list:
            return items
        return tuple(items) if type(tree) is tuple else type(tree)(*items)
    if _optree_leaf(tree):
        return fn(tree, *rest)
    return optree.tree_map(fn, tree, *rest)


def _traced_same_layout(a: PyTree, b: PyTree, dtypes: bool) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
                and (not dtypes or (a.dtype == b.dtype and a.device == b.device)))
    if _plain_node(a) or _plain_node(b):
        if type(a) is not type(b) or len(a) != len(b):
            return False
        if type(a) is dict:
            if a.keys() != b.keys():
                return False
            for key in a:
                if not _traced_same_layout(a[key], b[key], dtypes):
                    return False
            return True
        for x, y in zip(a, b, strict=True):
            if not _traced_same_layout(x, y, dtypes):
                return False
        return True
    leaves_a, spec_a = optree.tree_flatten(a)  # other containers, or non-tensor leaves: optree's rule
    leaves_b, spec_b = optree.tree_flatten(b)
    return spec_a == spec_b and all(_traced_same_layout(x, y, dtypes) if isinstance(x, torch.Tensor) else False
                                    for x, y in zip(leaves_a, leaves_b, strict=True))


def _traced_flatten(tree: PyTree, out: list[Any]) -> Callable[[Any], PyTree]:
    """Append ``tree``'s leaves to ``out`` in optree order; return ``build(iterator) -> tree``."""
    if tree is None:
        return lambda it: None
    if isinstance(tree, torch.Tensor):
        out.append(tree)
        return next
    if _plain_node(tree):
        if type(tree) is dict:
            keys = sorted(tree)
            builds = [_traced_flatten(tree[key], out) for key in keys]
            order = list(tree)

            def build_dict(it: Any) -> dict[str, Any]:
                values = {key: b(it) for key, b in zip(keys, builds, strict=True)}
                return {key: values[key] for key in order}

            return build_dict
        builds = [_traced_flatten(x, out) for x in tree]
        kind = type(tree)
        if kind is list:
            return lambda it: [b(it) for b in builds]
        if kind is tuple:
            return lambda it: tuple([b(it) for b in builds])
        return lambda it: kind(*[b(it) for b in builds])
    if _optree_leaf(tree):
        out.append(tree)
        return next
    flat, spec = optree.tree_flatten(tree)
    out.extend(flat)
    return lambda it: spec.unflatten([next(it) for _ in flat])


def structure(tree: PyTree) -> optree.PyTreeSpec:
    """The optree structure of ``tree``."""
    return optree.tree_structure(tree)


def zeros_like(tree: PyTree) -> PyTree:
    """A tree of zeros with the shapes, dtypes and devices of ``tree``'s leaves."""
    return map(torch.zeros_like, tree)


def ones_like(tree: PyTree) -> PyTree:
    """A tree of ones with the shapes, dtypes and devices of ``tree``'s leaves."""
    return map(torch.ones_like, tree)


def add(a: PyTree, b: PyTree) -> PyTree:
    """Leaf-wise ``a + b``."""
    return map(torch.add, a, b)


def sub(a: PyTree, b: PyTree) -> PyTree:
    """Leaf-wise ``a - b``."""
    return map(torch.sub, a, b)


def scale(tree: PyTree, factor: float | torch.Tensor) -> PyTree:
    """Leaf-wise ``factor * leaf``; ``factor`` may be a number or a (batched) 0-d tensor."""
    return map(lambda x: factor * x, tree)


def add_scaled(a: PyTree, b: PyTree, factor: float | torch.Tensor) -> PyTree:
    """Leaf-wise ``a + factor * b``."""
    return map(lambda x, y: x + factor * y, a, b)


def clone(tree: PyTree) -> PyTree:
    """Leaf-wise ``detach().clone()``: fresh storage, no autograd history."""
    return map(lambda x: x.detach().clone(), tree)


def stack(trees: list[PyTree] | tuple[PyTree, ...], dim: int = 0) -> PyTree:
    """Stack same-structured trees leaf-wise along a new axis ``dim`` (default: leading).

    ``stack([p0, p1, p2])`` turns K=3 parameter trees into one tree whose leaves have a leading
    axis of 3, ready for ``torch.func.vmap``.
    """
    trees = list(trees)
    if not trees:
        raise ValueError("stack: `trees` must hold at least one tree, got an empty sequence")
    first = structure(trees[0])
    for i, t in enumerate(trees[1:], start=1):
        if structure(t) != first:
            raise ValueError(
                f"stack: trees[{i}] has structure {structure(t)}, expected {first} (that of trees[0])"
            )
    return map(lambda *xs: torch.stack(xs, dim=dim), trees[0], *trees[1:])


def unstack(tree: PyTree, dim: int = 0) -> list[PyTree]:
    """Inverse of :func:`stack`: split every leaf along ``dim`` into a list of trees."""
    flat, spec = optree.tree_flatten(tree)
    if not flat:
        raise ValueError("unstack: `tree` has no leaves")
    sizes = {leaf.shape[dim] for leaf in flat}
    if len(sizes) != 1:
        raise ValueError(f"unstack: leaves disagree on the size of axis {dim}: {sorted(sizes)}")
    (n,) = sizes
    return [optree.tree_unflatten(spec, [leaf.select(dim, i) for leaf in flat]) for i in range(n)]


def global_norm(tree: PyTree) -> torch.Tensor:
    """The L2 norm of all leaves taken together, a 0-d tensor (``torch.nn.utils.clip_grad_norm_``'s norm)."""
    flat = leaves(tree)
    if not flat:
        raise ValueError("global_norm: `tree` has no leaves")
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(x) for x in flat]))


def max_abs_diff(a: PyTree, b: PyTree) -> float:
    """The largest absolute leaf-wise difference between two same-structured trees (a Python float)."""
    assert_same_structure(a, b, "a", "b")
    diffs = [float((x - y).abs().max()) if x.numel() else 0.0 for x, y in zip(leaves(a), leaves(b), strict=True)]
    return max(diffs, default=0.0)


def allclose(a: PyTree, b: PyTree, rtol: float = 1e-5, atol: float = 1e-8) -> bool:
    """True if both trees share structure and shapes and every leaf pair is ``torch.allclose``."""
    if structure(a) != structure(b):
        return False
    return all(
        x.shape == y.shape and torch.allclose(x, y, rtol=rtol, atol=atol)
        for x, y in zip(leaves(a), leaves(b), strict=True)
    )


def same_layout(a: PyTree, b: PyTree, dtypes: bool = False) -> bool:
    """True when ``a`` and ``b`` share one structure and their tensor leaves have equal shapes (and,
    with ``dtypes``, equal dtypes and devices).

    The cheap test to run before :func:`assert_same_structure` (which also builds leaf paths for
    its message; under ``torch.compile`` that path building is most of what dynamo traces).
    """
    if torch.compiler.is_compiling():
        return _traced_same_layout(a, b, dtypes)
    leaves_a, spec_a = optree.tree_flatten(a)
    leaves_b, spec_b = optree.tree_flatten(b)
    if spec_a != spec_b:
        return False
    for x, y in zip(leaves_a, leaves_b, strict=True):
        if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and x.shape == y.shape):
            return False
        if dtypes and (x.dtype != y.dtype or x.device != y.device):
            return False
    return True


def assert_same_dtypes(a: PyTree, b: PyTree, name_a: str, name_b: str) -> None:
    """Raise ``TypeError`` naming both arguments and the first leaf whose dtype or device differs
    (the trees share a structure)."""
    for path, x, y in zip(optree.tree_paths(a), leaves(a), leaves(b), strict=True):
        if x.dtype != y.dtype or x.device != y.device:
            where = ".".join(str(p) for p in path)
            raise TypeError(
                f"`{name_b}` leaf {where!r} is {y.dtype} on {y.device}, expected {x.dtype} on {x.device} "
                f"(as in `{name_a}`)"
            )


def assert_same_structure(a: PyTree, b: PyTree, name_a: str, name_b: str, shapes: bool = True) -> None:
    """Raise ``ValueError`` naming both arguments if the trees differ in structure (or leaf shapes)."""
    spec_a, spec_b = structure(a), structure(b)
    if spec_a != spec_b:
        raise ValueError(
            f"`{name_b}` has structure {spec_b}, expected {spec_a} (the structure of `{name_a}`)"
        )
    if shapes:
        paths = optree.tree_paths(a)
        for path, x, y in zip(paths, leaves(a), leaves(b), strict=True):
            if tuple(x.shape) != tuple(y.shape):
                where = ".".join(str(p) for p in path)
                raise ValueError(
                    f"`{name_b}` leaf {where!r} has shape {tuple(y.shape)}, expected {tuple(x.shape)} "
                    f"(the shape in `{name_a}`)"
                )
