"""Pytree helpers on top of ``optree``.

Every helper here flattens with optree, so leaves are always paired by one library. Leaf order
is optree's: dict keys are **sorted**, tuples and named tuples keep their field order.
(``torch.utils._pytree`` keeps dict insertion order instead; purelearn never pairs leaves
flattened by the two libraries, so the difference never matters to users of these helpers.)

The containers purelearn builds are dicts, tuples and named tuples of tensors, which
``torch.func`` (through ``torch.utils._pytree``) flattens as well.

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
    return optree.tree_map(fn, tree, *rest)


def leaves(tree: PyTree) -> list[Any]:
    """The leaves of ``tree`` in optree order (dict keys sorted)."""
    return optree.tree_leaves(tree)


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
