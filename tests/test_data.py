"""Data: the bundled digits, the spike encodings, batches and the user tensor-file format."""

from __future__ import annotations

import pytest
import torch

from purelearn import data

pytest.importorskip("sklearn")


# ----------------------------------------------------------------------------- encodings


def test_rate_encoding_is_reproducible_from_its_generator():
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    a = data.rate_encode(x, 16, torch.Generator().manual_seed(7))
    b = data.rate_encode(x, 16, torch.Generator().manual_seed(7))
    c = data.rate_encode(x, 16, torch.Generator().manual_seed(8))
    assert a.shape == (16, 5, 1, 8, 8)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert set(a.unique().tolist()) <= {0.0, 1.0}


def test_rate_spike_probability_equals_intensity():
    # N samples × T steps independent Bernoulli(p) draws per pixel: the mean is within 5 standard
    # errors sqrt(p(1-p)/(N·T)) of p (a false alarm has probability < 1e-6 per pixel).
    p = torch.tensor([0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0])
    n, T = 2000, 16
    x = p.expand(n, -1)
    spikes = data.rate_encode(x, T, torch.Generator().manual_seed(0))
    rate = spikes.mean(dim=(0, 1))
    tolerance = 5 * torch.sqrt(p * (1 - p) / (n * T))
    assert torch.all((rate - p).abs() <= tolerance), (rate, p, tolerance)
    assert rate[0] == 0 and rate[-1] == 1


def test_rate_encoding_needs_an_explicit_generator():
    with pytest.raises(ValueError, match="Generator"):
        data.encode(torch.rand(2, 4), "rate", 4, None)


def test_sequential_encoding_is_row_major_one_pixel_per_step():
    x = torch.arange(3 * 64, dtype=torch.float32).reshape(3, 1, 8, 8)
    seq = data.sequential_encode(x)
    assert seq.shape == (64, 3, 1)
    for n in range(3):
        for row in range(8):
            for col in range(8):
                assert seq[row * 8 + col, n, 0] == x[n, 0, row, col]


def test_none_encoding_makes_sample_major_data_time_major():
    x = torch.rand(4, 7, 3)
    assert torch.equal(data.encode(x, "none", 7), x.transpose(0, 1))


# ----------------------------------------------------------------------------- digits


def test_digits_split_sizes_disjoint_and_fixed():
    train, test = data.digits_split()
    assert (len(train), len(test)) == (data.DIGITS_TRAIN, data.DIGITS_TEST) == (1437, 360)
    assert not set(train.tolist()) & set(test.tolist())
    assert sorted(train.tolist() + test.tolist()) == list(range(1797))
    documented = torch.randperm(1797, generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.cat([train, test]), documented)
    train2, _ = data.digits_split()
    assert torch.equal(train, train2)


def test_digits_rate_and_sequential_layouts():
    rate = data.load("digits")
    assert rate.train.x.shape == (1437, 1, 8, 8) and rate.test.x.shape == (360, 1, 8, 8)
    assert rate.train.x.min() >= 0 and rate.train.x.max() <= 1 and rate.train.x.max() == 1
    assert rate.train.T == 16 and rate.train.step_shape == (1, 8, 8) and rate.num_classes == 10
    seq = data.load("seq-digits")
    assert seq.train.T == 64 and seq.train.step_shape == (1,)
    assert torch.equal(seq.train.y, rate.train.y)
    with pytest.raises(ValueError, match="T=64"):
        data.load("seq-digits", T=16)


def test_batches_are_time_major_cover_the_epoch_and_resume_from_generator_state():
    ds = data.load("digits", T=4).train.subset(torch.arange(70))
    g = torch.Generator().manual_seed(5)
    first = list(data.batches(ds, 32, g))
    assert [tuple(x.shape) for x, _ in first] == [(4, 32, 1, 8, 8), (4, 32, 1, 8, 8), (4, 6, 1, 8, 8)]
    labels = torch.cat([y for _, y in first])
    assert sorted(labels.tolist()) == sorted(ds.y.tolist())
    state = data.generator_state(g)
    second = list(data.batches(ds, 32, g))
    g2 = torch.Generator()
    g2.set_state(state)
    again = list(data.batches(ds, 32, g2))
    for (xa, ya), (xb, yb) in zip(second, again, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


# ----------------------------------------------------------------------------- user files


def _save(path, **blob):
    torch.save(blob, path)
    return str(path)


@pytest.mark.parametrize("encoding,shape,T,step", [
    ("none", (20, 5, 3), 5, (3,)),
    ("rate", (20, 2, 4, 4), 16, (2, 4, 4)),
    ("sequential", (20, 3, 3), 9, (1,)),
])
def test_user_file_loads_and_splits_80_20(tmp_path, encoding, shape, T, step):
    x = torch.rand(shape)
    y = torch.arange(20) % 4
    path = _save(tmp_path / "d.pt", x=x, y=y, encoding=encoding)
    split = data.load(path)
    assert (len(split.train), len(split.test)) == (16, 4)
    assert split.num_classes == 4 and split.train.T == T and split.train.step_shape == step
    perm = torch.randperm(20, generator=torch.Generator().manual_seed(0))
    assert torch.equal(split.train.x, x[perm[:16]]) and torch.equal(split.test.y, y[perm[16:]])
    x_seq, labels = next(data.batches(split.train, 8, torch.Generator().manual_seed(0)))
    assert x_seq.shape == (T, 8, *step) and labels.shape == (8,)


def test_user_file_with_its_own_test_set(tmp_path):
    path = _save(tmp_path / "d.pt", x=torch.rand(10, 4, 2), y=torch.zeros(10, dtype=torch.int64),
                 x_test=torch.rand(3, 4, 2), y_test=torch.full((3,), 2))
    split = data.load(path)
    assert (len(split.train), len(split.test), split.num_classes) == (10, 3, 3)


def _bad_layouts():
    x, y = torch.rand(6, 4, 3), torch.zeros(6, dtype=torch.int64)
    return [
        ("missing-x", {"y": y}, "'x' is missing"),
        ("missing-y", {"x": x}, "'y' is missing"),
        ("x-not-float", {"x": x.long(), "y": y}, "'x' must be a floating-point tensor, got a int64 tensor"),
        ("x-not-tensor", {"x": [1.0, 2.0], "y": y}, "'x' must be a floating-point tensor, got a list"),
        ("y-float", {"x": x, "y": y.float()}, "'y' must be an int64 tensor of labels [N], got a float32"),
        ("y-2d", {"x": x, "y": y[:, None]},
         "'y' must be an int64 tensor of labels [N], got a int64 tensor of shape [6, 1]"),
        ("y-length", {"x": x, "y": y[:4]}, "'y' must have one label per sample of 'x' (N=6), got 4"),
        ("y-negative", {"x": x, "y": y - 1}, "'y' must hold class labels >= 0"),
        ("none-needs-3d", {"x": x[:, :, 0], "y": y}, "'x' with encoding 'none' must be [N, T, features...]"),
        ("rate-out-of-range", {"x": x * 3, "y": y, "encoding": "rate"}, "'x' with encoding 'rate' must hold spike"),
        ("bad-encoding", {"x": x, "y": y, "encoding": "delta"}, "'encoding' must be one of"),
        ("x-test-alone", {"x": x, "y": y, "x_test": x}, "'x_test' and 'y_test' go together"),
        ("x-test-shape", {"x": x, "y": y, "x_test": x[:, :2], "y_test": y}, "'x_test' must have the per-sample"),
        ("unknown-key", {"x": x, "y": y, "labels": y}, "unknown key(s) ['labels']"),
        ("nan", {"x": x * float("nan"), "y": y}, "'x' must be finite"),
    ]


@pytest.mark.parametrize("name,blob,message", _bad_layouts(), ids=[b[0] for b in _bad_layouts()])
def test_user_file_wrong_layout_is_a_value_error_naming_the_key(tmp_path, name, blob, message):
    path = _save(tmp_path / "bad.pt", **blob)
    with pytest.raises(ValueError) as info:
        data.load(path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_user_file_that_is_not_a_dict_or_not_a_torch_file(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(ValueError, match="expected a dict with keys 'x', 'y'"):
        data.load(str(path))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file at all")
    with pytest.raises(ValueError, match="not a readable torch.save file"):
        data.load(str(junk))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.load(str(tmp_path / "missing.pt"))


def test_user_file_refuses_pickled_objects(tmp_path):
    # weights_only=True: a file holding an arbitrary Python object is refused, not unpickled.
    path = tmp_path / "obj.pt"
    torch.save({"x": torch.rand(4, 3, 2), "y": torch.zeros(4, dtype=torch.int64), "meta": _Custom()}, path)
    with pytest.raises(ValueError, match="not a readable torch.save file"):
        data.load(str(path))


class _Custom:
    pass


def test_limit_takes_a_prefix_of_train_and_test():
    split = data.load("digits").limit(40)
    assert (len(split.train), len(split.test)) == (40, 10)
    with pytest.raises(ValueError):
        split.limit(0)
