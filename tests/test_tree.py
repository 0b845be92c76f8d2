"""Specification of ``purelearn.tree``: leaf-wise arithmetic, stacking, norms and leaf order."""

from __future__ import annotations

import doctest
from typing import Any, NamedTuple

import pytest
import torch
import torch.utils._pytree as torch_pytree
from hypothesis import given
from hypothesis import strategies as st

from purelearn import neurons, nn, tree


class Pair(NamedTuple):
    first: torch.Tensor
    second: torch.Tensor


def make_tree(seed: int = 0, dtype: torch.dtype = torch.float64) -> dict[str, Any]:
    """A nested tree of dicts, tuples and a named tuple, with leaves of different shapes."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=g, dtype=dtype)

    return {
        "layer": {"weight": randn(3, 4), "bias": randn(3)},
        "pair": Pair(randn(2), randn()),
        "seq": (randn(5), randn(1, 2)),
    }


def test_module_docstring_examples_run() -> None:
    result = doctest.testmod(tree, verbose=False)
    assert result.attempted > 0 and result.failed == 0


# --------------------------------------------------------------------------------------------------
# Leaf-wise arithmetic
# --------------------------------------------------------------------------------------------------


def test_map_applies_fn_to_every_leaf_and_keeps_structure() -> None:
    a = make_tree()
    doubled = tree.map(lambda x: 2 * x, a)
    assert tree.structure(doubled) == tree.structure(a)
    assert isinstance(doubled["pair"], Pair)
    for x, y in zip(tree.leaves(a), tree.leaves(doubled), strict=True):
        assert torch.equal(y, 2 * x)


def test_map_over_several_trees_pairs_leaves_by_position() -> None:
    a, b, c = make_tree(0), make_tree(1), make_tree(2)
    out = tree.map(lambda x, y, z: x * y - z, a, b, c)
    for o, x, y, z in zip(*map(tree.leaves, (out, a, b, c)), strict=True):
        assert torch.equal(o, x * y - z)


def test_add_sub_scale_add_scaled_are_leafwise() -> None:
    a, b = make_tree(0), make_tree(1)
    for got, expected in [
        (tree.add(a, b), lambda x, y: x + y),
        (tree.sub(a, b), lambda x, y: x - y),
        (tree.scale(a, 0.25), lambda x, y: 0.25 * x),
        (tree.add_scaled(a, b, -3.0), lambda x, y: x - 3.0 * y),
    ]:
        assert tree.structure(got) == tree.structure(a)
        for g, x, y in zip(tree.leaves(got), tree.leaves(a), tree.leaves(b), strict=True):
            assert torch.equal(g, expected(x, y))


def test_sub_undoes_add() -> None:
    a, b = make_tree(0), make_tree(1)
    assert tree.allclose(tree.sub(tree.add(a, b), b), a, rtol=0, atol=1e-12)


def test_scale_accepts_a_0d_tensor_factor() -> None:
    a = make_tree()
    assert tree.allclose(tree.scale(a, torch.tensor(1.5, dtype=torch.float64)), tree.scale(a, 1.5), 0, 0)


def test_zeros_like_and_ones_like_keep_shapes_and_dtypes() -> None:
    a = make_tree(dtype=torch.float32)
    for fill, fn in [(0.0, tree.zeros_like), (1.0, tree.ones_like)]:
        out = fn(a)
        assert tree.structure(out) == tree.structure(a)
        for o, x in zip(tree.leaves(out), tree.leaves(a), strict=True):
            assert o.shape == x.shape and o.dtype == x.dtype
            assert torch.all(o == fill)


def test_clone_gives_fresh_storage_without_autograd_history() -> None:
    a = tree.map(lambda x: x.clone().requires_grad_(), make_tree())
    c = tree.clone(a)
    assert tree.allclose(a, c, 0, 0)
    for x, y in zip(tree.leaves(a), tree.leaves(c), strict=True):
        assert not y.requires_grad
        assert y.data_ptr() != x.data_ptr() or x.numel() == 0


# --------------------------------------------------------------------------------------------------
# stack / unstack
# --------------------------------------------------------------------------------------------------


def test_stack_adds_a_leading_axis_and_unstack_inverts_it() -> None:
    trees = [make_tree(s) for s in range(3)]
    stacked = tree.stack(trees)
    for s, x in zip(tree.leaves(stacked), tree.leaves(trees[0]), strict=True):
        assert s.shape == (3, *x.shape)
    back = tree.unstack(stacked)
    assert len(back) == 3
    for original, restored in zip(trees, back, strict=True):
        assert tree.structure(restored) == tree.structure(original)
        assert tree.allclose(restored, original, 0, 0)


def test_stack_along_another_dim_roundtrips() -> None:
    trees = [{"w": torch.randn(2, 3), "b": torch.randn(2)} for _ in range(4)]
    stacked = tree.stack(trees, dim=1)
    assert stacked["w"].shape == (2, 4, 3)
    for original, restored in zip(trees, tree.unstack(stacked, dim=1), strict=True):
        assert tree.allclose(restored, original, 0, 0)


@pytest.mark.parametrize(
    "other",
    [
        {"w": torch.zeros(2)},  # a key missing
        {"w": torch.zeros(2), "b": torch.zeros(2), "c": torch.zeros(2)},  # a key too many
        {"w": torch.zeros(2), "x": torch.zeros(2)},  # a key renamed
        {"w": (torch.zeros(2),), "b": torch.zeros(2)},  # a leaf turned into a tuple
    ],
    ids=["missing-key", "extra-key", "renamed-key", "nested-leaf"],
)
def test_stack_raises_on_structure_mismatch_naming_the_tree(other: dict[str, Any]) -> None:
    first = {"w": torch.zeros(2), "b": torch.zeros(2)}
    with pytest.raises(ValueError, match=r"trees\[1\]"):
        tree.stack([first, other])


def test_stack_of_nothing_raises() -> None:
    with pytest.raises(ValueError, match="empty"):
        tree.stack([])


def test_unstack_raises_when_leaves_disagree_on_the_axis() -> None:
    with pytest.raises(ValueError, match="disagree"):
        tree.unstack({"a": torch.zeros(2, 3), "b": torch.zeros(3)})


# --------------------------------------------------------------------------------------------------
# Norms and comparisons
# --------------------------------------------------------------------------------------------------


@given(
    shapes=st.lists(st.lists(st.integers(1, 4), min_size=0, max_size=3), min_size=1, max_size=4),
    seed=st.integers(0, 2**16),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_global_norm_equals_clip_grad_norm_total_norm(shapes: list[list[int]], seed: int,
                                                     dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(seed)
    grads = {f"p{i}": torch.randn(shape, generator=g, dtype=dtype) for i, shape in enumerate(shapes)}
    params = [torch.nn.Parameter(torch.zeros_like(x)) for x in grads.values()]
    for p, x in zip(params, grads.values(), strict=True):
        p.grad = x.clone()
    expected = torch.nn.utils.clip_grad_norm_(params, max_norm=float("inf"))
    got = tree.global_norm(grads)
    assert got.dim() == 0 and got.dtype == dtype
    torch.testing.assert_close(got, expected, rtol=1e-6 if dtype == torch.float32 else 1e-12, atol=0)


def test_global_norm_of_a_tree_without_leaves_raises() -> None:
    with pytest.raises(ValueError, match="no leaves"):
        tree.global_norm({})


def test_allclose_is_true_for_equal_trees_and_false_for_different_values() -> None:
    a = make_tree()
    assert tree.allclose(a, tree.clone(a))
    b = tree.clone(a)
    b["layer"]["bias"][0] += 1.0
    assert not tree.allclose(a, b)


@pytest.mark.parametrize(
    "b",
    [
        {"w": torch.zeros(3)},
        {"w": torch.zeros(3), "b": torch.zeros(3), "c": torch.zeros(3)},
        {"w": torch.zeros(3), "c": torch.zeros(3)},
        (torch.zeros(3), torch.zeros(3)),
        [torch.zeros(3), torch.zeros(3)],
        {"w": torch.zeros(3), "b": (torch.zeros(3),)},
    ],
    ids=["missing-key", "extra-key", "renamed-key", "tuple", "list", "nested"],
)
def test_allclose_is_false_on_structure_mismatch(b: Any) -> None:
    a = {"w": torch.zeros(3), "b": torch.zeros(3)}
    assert not tree.allclose(a, b)


def test_allclose_is_false_on_shape_mismatch_even_when_broadcastable() -> None:
    assert not tree.allclose({"w": torch.zeros(3)}, {"w": torch.zeros(1)})
    assert not tree.allclose({"w": torch.zeros(())}, {"w": torch.zeros(2, 1)})


def test_max_abs_diff_is_the_largest_leafwise_difference() -> None:
    a = make_tree()
    b = tree.clone(a)
    b["seq"][1][0, 1] += 0.5
    b["layer"]["weight"][2, 3] -= 0.25
    assert tree.max_abs_diff(a, b) == pytest.approx(0.5, abs=1e-15)
    assert tree.max_abs_diff(a, a) == 0.0


def test_assert_same_structure_names_both_arguments_and_the_leaf() -> None:
    a = {"w": torch.zeros(2, 3), "b": torch.zeros(2)}
    with pytest.raises(ValueError, match="`grads`.*`params`"):
        tree.assert_same_structure(a, {"w": torch.zeros(2, 3)}, "params", "grads")
    with pytest.raises(ValueError, match=r"`grads` leaf 'w' has shape \(3, 2\)"):
        tree.assert_same_structure(a, {"w": torch.zeros(3, 2), "b": torch.zeros(2)}, "params", "grads")
    tree.assert_same_structure(a, {"w": torch.zeros(3, 2), "b": torch.zeros(2)}, "p", "g", shapes=False)


# --------------------------------------------------------------------------------------------------
# Leaf order and interoperability with torch.utils._pytree
# --------------------------------------------------------------------------------------------------


def test_leaf_order_sorts_dict_keys_and_keeps_tuple_field_order() -> None:
    """Documented: optree order, i.e. dict keys sorted (not insertion order), named tuples by field."""
    b, a, c = torch.tensor(1.0), torch.tensor(2.0), torch.tensor(3.0)
    leaves = tree.leaves({"b": b, "a": a, "c": Pair(second=c, first=b)})
    assert [x.item() for x in leaves] == [2.0, 1.0, 1.0, 3.0]


def test_torch_pytree_keeps_insertion_order_where_purelearn_sorts() -> None:
    """The difference the module docstring warns about; purelearn never mixes the two orders."""
    t = {"z": torch.tensor(0.0), "a": torch.tensor(1.0)}
    assert [x.item() for x in tree.leaves(t)] == [1.0, 0.0]
    assert [x.item() for x in torch_pytree.tree_leaves(t)] == [0.0, 1.0]


def _purelearn_trees() -> dict[str, Any]:
    """The containers purelearn itself builds: params, states, outputs of every stateful kind."""
    x = torch.randn(2, 3)
    model = nn.Sequential(
        nn.Linear(3, 4), neurons.OTTTLIF(), nn.Linear(4, 4), neurons.LIF(), nn.Dropout(0.2),
        nn.Recurrent(neurons.ALIF(learn_tau=True), 4, 2),
    )
    params, states = model.init(torch.Generator().manual_seed(0), x)
    _, stepped = model.apply(params, states, x)
    spike_trace, _ = neurons.OTTTLIF().apply(None, neurons.OTTTLIF().init_state(x), x)
    return {"params": params, "states": states, "stepped": stepped, "spike_trace": spike_trace}


@pytest.mark.parametrize("name", ["params", "states", "stepped", "spike_trace"])
def test_purelearn_containers_flatten_to_the_same_tensors_under_torch_pytree(name: str) -> None:
    t = _purelearn_trees()[name]
    ours = tree.leaves(t)
    theirs, spec = torch_pytree.tree_flatten(t)
    assert ours and all(isinstance(x, torch.Tensor) for x in theirs)
    # Same set of tensors (possibly in another order), and torch's unflatten rebuilds the same types.
    assert sorted(map(id, ours)) == sorted(map(id, theirs))
    rebuilt = torch_pytree.tree_unflatten(theirs, spec)
    assert tree.structure(rebuilt) == tree.structure(t)


# ---- the traced path (inside torch.compile): plain recursion, the same leaves, order and structures as optree


class _Pair(NamedTuple):
    first: Any
    second: Any


def _leaf_tensors() -> st.SearchStrategy[torch.Tensor]:
    return st.lists(st.integers(1, 3), max_size=2).map(lambda shape: torch.randn(tuple(shape)))


_TREES = st.recursive(
    st.one_of(_leaf_tensors(), st.none(), st.integers(-3, 3)),
    lambda children: st.one_of(
        st.dictionaries(st.sampled_from("bacd"), children, max_size=3),
        st.lists(children, max_size=3),
        st.lists(children, max_size=3).map(tuple),
        st.tuples(children, children).map(lambda t: _Pair(*t)),
    ),
    max_leaves=8,
)


def _same(a: Any, b: Any) -> bool:
    """Equal structure (dict key order included) and equal leaves."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@given(_TREES)
def test_the_traced_path_gives_optree_leaves_maps_and_structures(t: Any) -> None:
    from unittest import mock

    import optree

    with mock.patch("torch.compiler.is_compiling", return_value=True):
        leaves = tree.leaves(t)
        mapped = tree.map(lambda x: x * 2, t)
        flat, unflatten = tree.flatten(t)
        rebuilt = unflatten([x for x in flat])
        layout_same = tree.same_layout(t, mapped)
    want = optree.tree_leaves(t)
    assert len(leaves) == len(want) and all(a is b for a, b in zip(leaves, want, strict=True))
    assert _same(mapped, optree.tree_map(lambda x: x * 2, t))
    assert _same(rebuilt, t) and all(a is b for a, b in zip(flat, want, strict=True))
    assert layout_same == tree.same_layout(t, optree.tree_map(lambda x: x * 2, t))


def test_the_traced_same_layout_sees_a_changed_shape_or_structure() -> None:
    from unittest import mock

    a = {"w": torch.zeros(2, 3), "s": _Pair(torch.zeros(2), None)}
    with mock.patch("torch.compiler.is_compiling", return_value=True):
        assert tree.same_layout(a, tree.map(torch.ones_like, a))
        assert not tree.same_layout(a, {"w": torch.zeros(3, 2), "s": _Pair(torch.zeros(2), None)})
        assert not tree.same_layout(a, {"w": torch.zeros(2, 3), "s": (torch.zeros(2), None)})
        assert not tree.same_layout(a, {"w": torch.zeros(2, 3)})
        assert not tree.same_layout(a, {"w": torch.zeros(2, 3), "s": _Pair(torch.zeros(2), torch.zeros(1))})
        with pytest.raises(ValueError):
            tree.map(torch.add, a, {"w": torch.zeros(2, 3)})  # optree's error for mismatched trees
