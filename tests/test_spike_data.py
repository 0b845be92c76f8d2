"""Spike data: binning, the compact counts, the SHD/SSC readers on files in the published layout, the
cache, randman, and data specs."""

from __future__ import annotations

import math
import os
import warnings

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from purelearn import data
from purelearn.data import heidelberg, spikes

h5py = pytest.importorskip("h5py")
np = pytest.importorskip("numpy")


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    """Every test caches under its own tmp_path, never in ~/.cache."""
    monkeypatch.setenv("PURELEARN_CACHE_DIR", str(tmp_path / "cache"))


def write_layout(path, times, units, labels, keys=None, time_dtype="float16", label_dtype="uint8"):
    """An SHD/SSC file written with h5py directly, as published: vlen float times, vlen uint16 units."""
    with h5py.File(path, "w") as f:
        def ragged(rows, dtype):
            out = np.empty(len(rows), dtype=object)
            for i, row in enumerate(rows):
                out[i] = np.asarray(row, dtype=dtype)
            return out
        f.create_dataset("spikes/times", data=ragged(times, time_dtype), dtype=h5py.vlen_dtype(np.dtype(time_dtype)))
        f.create_dataset("spikes/units", data=ragged(units, "uint16"), dtype=h5py.vlen_dtype(np.dtype("uint16")))
        f.create_dataset("labels", data=np.asarray(labels, dtype=label_dtype))
        f.create_dataset("extra/speaker", data=np.zeros(len(labels), dtype="uint16"))
        if keys is not None:
            f.create_dataset("extra/keys", data=np.array([k.encode() for k in keys]))
    return str(path)


def reference_frames(times, units, T, dt, n_units):
    """Per-spike loop: counts [T, N, n_units] and (non-finite, outside) drops."""
    out = torch.zeros(T, len(times), n_units)
    nonfinite = outside = 0
    for n, (ts, us) in enumerate(zip(times, units, strict=True)):
        for t, u in zip(ts, us, strict=True):
            if not math.isfinite(t):
                nonfinite += 1
            elif t < 0 or t > T * dt:
                outside += 1
            else:
                out[min(math.floor(t / dt), T - 1), n, u] += 1
    return out, (nonfinite, outside)


def as_spikes(times, units, labels=None) -> data.Spikes:
    lengths = torch.tensor([len(t) for t in times], dtype=torch.int64)
    flat_t = torch.tensor([t for ts in times for t in ts], dtype=torch.float64)
    flat_u = torch.tensor([u for us in units for u in us], dtype=torch.int64)
    labels = torch.zeros(len(times), dtype=torch.int64) if labels is None else torch.as_tensor(labels)
    return data.Spikes(flat_t, flat_u, lengths, labels)


# ----------------------------------------------------------------------------- binning


_time = st.one_of(st.floats(-0.2, 1.2, allow_nan=False), st.sampled_from([0.0, 0.25, 0.5, 1.0, math.nan, math.inf,
                                                                         -math.inf]))


@st.composite
def _samples(draw):
    n_units = draw(st.integers(1, 6))
    n = draw(st.integers(1, 5))
    times, units = [], []
    for _ in range(n):
        k = draw(st.integers(0, 12))
        times.append(draw(st.lists(_time, min_size=k, max_size=k)))
        units.append(draw(st.lists(st.integers(0, n_units - 1), min_size=k, max_size=k)))
    return times, units, n_units, draw(st.integers(1, 9)), draw(st.sampled_from([0.05, 0.1, 0.125, 1 / 3]))


@given(_samples())
def test_binning_equals_a_per_spike_loop(sample):
    times, units, n_units, T, dt = sample
    counts, stats = data.bin_spikes(as_spikes(times, units), T, dt, n_units)
    expected, drops = reference_frames(times, units, T, dt, n_units)
    assert torch.equal(counts.dense(), expected)
    assert tuple(stats) == drops
    assert torch.equal(counts.spikes_per_sample(), expected.sum(dim=(0, 2)).long())
    assert counts.count.dtype == torch.uint8 and counts.time.dtype == counts.unit.dtype == torch.int16


def test_counts_take_the_smallest_integer_type_that_holds_them():
    counts, _ = data.bin_spikes(as_spikes([[0.0] * 300], [[2] * 300]), 1, 1.0, 3)
    assert counts.count.dtype == torch.int16 and counts.dense()[0, 0, 2] == 300
    assert spikes.smallest_int(255) == torch.uint8 and spikes.smallest_int(70_000) == torch.int32


def test_selecting_samples_then_densifying_equals_densifying_then_selecting():
    raw = data.randman(classes=3, units=7, samples=4, spikes=2, seed=3)
    counts, _ = data.bin_spikes(raw, 10, 0.1, 7)
    full = counts.dense()
    for index in (torch.tensor([5, 0, 11, 5]), torch.tensor([], dtype=torch.int64), torch.arange(12)):
        assert torch.equal(counts[index].dense(), full[:, index])
    assert torch.equal(counts[3:8].dense(), full[:, 3:8]) and len(counts[8:3]) == 0
    both = spikes.concat([counts[:5], counts[5:]])
    assert torch.equal(both.dense(), full) and torch.equal(both.offsets, counts.offsets)


def test_batches_of_compact_data_equal_the_densified_whole():
    split = data.load("randman:classes=3,units=20,samples=10", T=25)
    whole = split.train.x.dense()
    order = torch.randperm(len(split.train), generator=torch.Generator().manual_seed(4))
    got = list(data.batches(split.train, 7, torch.Generator().manual_seed(4)))
    assert [tuple(x.shape) for x, _ in got] == [(25, 7, 20)] * 3 + [(25, 3, 20)]
    assert torch.equal(torch.cat([x for x, _ in got], dim=1), whole[:, order])
    assert torch.equal(torch.cat([y for _, y in got]), split.train.y[order])
    assert torch.equal(data.take(split.train.x, 2, 6), whole[:, 2:6])


# ----------------------------------------------------------------------------- readers


def _small_shd(folder, time_dtype="float16", nan=False):
    folder.mkdir(exist_ok=True)
    train_t = [[0.01, 0.5, 0.52, 1.31], [], [0.2, float("nan") if nan else 0.3], [1.0]]
    train_u = [[0, 699, 699, 5], [], [3, 4], [2]]
    write_layout(folder / "shd_train.h5", train_t, train_u, [0, 1, 2, 1], keys=["zero", "one", "two"],
                 time_dtype=time_dtype)
    write_layout(folder / "shd_test.h5", [[0.1], [0.4, 0.41]], [[1], [1, 1]], [2, 0], keys=["zero", "one", "two"],
                 time_dtype=time_dtype)
    return train_t, train_u


@pytest.mark.parametrize("time_dtype", ["float16", "float32", "float64"])
def test_shd_reader_reads_the_published_layout(tmp_path, time_dtype):
    train_t, train_u = _small_shd(tmp_path / "shd", time_dtype)
    split = data.load(f"shd:{tmp_path / 'shd'}")
    assert (split.name, len(split.train), len(split.test), split.num_classes) == ("shd", 4, 2, 3)
    assert split.classes == ("zero", "one", "two") and split.valid is None
    assert split.train.encoding == "events" and split.train.step_shape == (700,)
    largest = float(np.asarray(1.31, dtype=time_dtype))  # float16: 1.30957..., float32: 1.31000006...
    assert split.train.T == 100 and split.info["span"] == pytest.approx(math.ceil(round(largest / 0.01, 6)) / 100)
    rounded = [[float(np.asarray(t, dtype=time_dtype)) for t in ts] for ts in train_t]
    expected, _ = reference_frames(rounded, train_u, 100, split.info["dt"], 700)
    assert torch.equal(split.train.x.dense(), expected)
    assert torch.equal(split.train.y, torch.tensor([0, 1, 2, 1]))
    assert split.train.x.spikes_per_sample().tolist() == [4, 0, 2, 1]  # an empty sample is valid silence


def test_write_shd_round_trips_through_the_reader(tmp_path):
    raw = data.randman(classes=2, units=9, samples=3, seed=1)
    path = tmp_path / "shd_train.h5"
    data.write_shd(path, raw, keys=["a", "b"])
    back = list(data.read_spikes(str(path), chunk=4))
    assert [len(b.lengths) for b in back] == [4, 2]
    assert torch.equal(torch.cat([b.times for b in back]), raw.times.double())
    assert torch.equal(torch.cat([b.units for b in back]), raw.units)
    assert torch.equal(torch.cat([b.labels for b in back]), raw.labels)
    with h5py.File(path) as f:
        assert h5py.check_vlen_dtype(f["spikes/times"].dtype) == np.float32
        assert list(f["extra/keys"][()]) == [b"a", b"b"] and f["extra/speaker"].shape == (6,)


def test_ssc_reads_its_three_files_and_keeps_the_validation_set(tmp_path):
    folder = tmp_path / "ssc"
    folder.mkdir()
    for part, n in (("train", 5), ("valid", 2), ("test", 3)):
        write_layout(folder / f"ssc_{part}.h5", [[0.1 * i] for i in range(n)], [[i] for i in range(n)],
                     [i % 2 for i in range(n)])
    split = data.load(f"ssc:{folder},dt=0.05")
    assert (len(split.train), len(split.valid), len(split.test)) == (5, 2, 3)
    assert split.num_classes == 2 and split.classes == () and split.train.T == 8  # span 0.4 s: 8 frames of 50 ms
    assert len(split.limit(4).valid) == 1


def test_nan_timestamps_are_dropped_counted_and_reported_once(tmp_path):
    _small_shd(tmp_path / "shd", nan=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        split = data.load(f"shd:{tmp_path / 'shd'}")
    assert [str(w.message) for w in caught] == [
        "shd: dropped 1 spikes with NaN/inf times (1 in shd_train.h5); they are never binned"]
    assert split.info["dropped"]["train"] == {"nonfinite": 1, "outside": 0}
    assert split.train.x.spikes_per_sample().tolist() == [4, 0, 1, 1]
    rows = data.summary(split)["sets"]
    assert rows["train"]["nonfinite"] == 1 and rows["train"]["empty_samples"] == 1


def test_binning_options_span_dt_and_T(tmp_path):
    _small_shd(tmp_path / "shd", "float64")
    folder = tmp_path / "shd"
    by_dt = data.load(f"shd:{folder},dt=0.1")
    assert by_dt.train.T == 14 and by_dt.info["span"] == pytest.approx(1.4)  # ⌈1.31 / 0.1⌉ frames
    both = data.load(f"shd:{folder},dt=0.1", T=5)
    assert both.info["span"] == pytest.approx(0.5) and both.info["dropped"]["train"]["outside"] == 3  # 0.52, 1.0, 1.31
    spanned = data.load(f"shd:{folder},span=2", T=4)
    assert spanned.info["dt"] == 0.5 and spanned.info["span_rule"] == "given"
    with pytest.raises(ValueError, match="at most two of T, dt and span"):
        data.load(f"shd:{folder},dt=0.1,span=1", T=4)
    with pytest.raises(ValueError, match="option `dt` must be a finite number of seconds > 0"):
        data.load(f"shd:{folder},dt=-1")


def test_binned_data_are_cached_and_never_binned_again(tmp_path, monkeypatch):
    _small_shd(tmp_path / "shd")
    calls = []
    original = heidelberg.bin_spikes
    monkeypatch.setattr(heidelberg, "bin_spikes", lambda *a, **k: calls.append(1) or original(*a, **k))
    spec = f"shd:{tmp_path / 'shd'}"
    first = data.load(spec)
    assert len(calls) == 2 and not first.info["cache_hit"]  # one chunk per file
    assert os.path.dirname(first.info["cache"]) == str(tmp_path / "cache")
    again = data.load(spec)
    assert len(calls) == 2 and again.info["cache_hit"] and again.info["cache"] == first.info["cache"]
    assert torch.equal(again.train.x.dense(), first.train.x.dense()) and again.classes == first.classes
    other = data.load(spec, T=50)  # other options: another entry
    assert len(calls) == 4 and other.info["cache"] != first.info["cache"]
    os.utime(tmp_path / "shd" / "shd_test.h5", ns=(0, 0))  # a changed file: binned again
    changed = data.load(spec)
    assert not changed.info["cache_hit"] and changed.info["cache"] != first.info["cache"] and len(calls) == 6
    uncached = data.load(spec + ",cache=none")
    assert uncached.info["cache"] is None and len(calls) == 8
    with open(changed.info["cache"], "wb") as f:  # a file that is not our cache is never overwritten
        f.write(b"someone else's file")
    with pytest.warns(UserWarning, match="is not a purelearn data cache; it is left as it is"):
        assert data.load(spec).info["cache"] is None and len(calls) == 10
    assert open(changed.info["cache"], "rb").read() == b"someone else's file"


def test_a_missing_file_says_where_it_goes_and_where_it_is_published(tmp_path):
    folder = tmp_path / "shd"
    folder.mkdir()
    with pytest.raises(FileNotFoundError) as info:
        data.load(f"shd:{folder}")
    message = str(info.value)
    assert f"{folder}/shd_train.h5 does not exist" in message and "shd_train.h5, shd_test.h5" in message
    assert "Heidelberg spiking datasets" in message and "compneuro.net" in message and "\n" not in message
    (folder / "shd_train.h5.gz").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"shd_train.h5.gz is there: gunzip it"):
        data.load(f"shd:{folder}")


# ----------------------------------------------------------------------------- randman and specs


def test_randman_is_seeded_and_only_spike_timing_tells_the_classes_apart():
    a = data.randman(classes=4, units=10, samples=6, spikes=2, seed=5)
    b = data.randman(classes=4, units=10, samples=6, spikes=2, seed=5)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a.times, data.randman(classes=4, units=10, samples=6, spikes=2, seed=6).times)
    assert a.times.min() >= 0 and a.times.max() <= 1 and a.lengths.eq(20).all()
    assert sorted(a.labels.tolist()) == sorted(list(range(4)) * 6)
    per_unit = torch.zeros(24, 10).index_put_((torch.arange(24).repeat_interleave(20), a.units),
                                              torch.ones(480), accumulate=True)
    assert per_unit.eq(2).all()  # every unit fires twice in every sample: counts carry nothing
    times = a.times.reshape(24, 20)
    assert (times[:, 1:] >= times[:, :-1]).all()  # each sample in time order


def test_randman_spec_loads_binned_and_split(tmp_path):
    split = data.load("randman:classes=3,units=8,samples=10,seed=2", T=20)
    assert (len(split.train), len(split.test), split.num_classes, split.train.step_shape) == (24, 6, 3, (8,))
    assert split.info["options"]["units"] == 8 and split.train.x.dt == 0.05
    raw = data.randman(classes=3, units=8, samples=10, seed=2)
    data.write_shd(tmp_path / "shd_train.h5", raw)
    data.write_shd(tmp_path / "shd_test.h5", raw)
    from_files = data.load(f"shd:{tmp_path},span=1", T=20)
    expected = torch.cat([split.train.x.dense(), split.test.x.dense()], 1)[..., :8]
    train_index, test_index = data.seeded_split(30, 24)
    assert torch.equal(from_files.train.x.dense()[:, torch.cat([train_index, test_index]), :8], expected)
    with pytest.raises(ValueError, match=r"randman: option `units` must be an integer >= 1, got 0"):
        data.load("randman:units=0")
    with pytest.raises(ValueError, match=r"option `classes` must be an integer, got 'x'"):
        data.load("randman:classes=x")


@pytest.mark.parametrize("seed, got", [(1.5, "float 1.5"), (True, "bool True"), (-1, "-1"),
                                       (2**64, "18446744073709551616")])
def test_randman_seed_of_the_wrong_type_or_range_is_refused_naming_seed(seed, got):
    with pytest.raises(ValueError, match=rf"^randman: `seed` must be an int (>= 0|in \[0, 2\*\*63 - 1\]) \(a seed\), "
                                         rf"got {got}$"):
        data.randman(classes=2, units=2, samples=1, seed=seed)


@given(_samples(), st.lists(st.integers(0, 4), max_size=7))
def test_selecting_raw_samples_equals_a_per_sample_loop(sample, picks):
    times, units, *_ = sample
    picks = [i for i in picks if i < len(times)]
    raw = as_spikes(times, units, labels=list(range(len(times))))
    chosen = data.select(raw, torch.tensor(picks, dtype=torch.int64))
    expected = as_spikes([times[i] for i in picks], [units[i] for i in picks],
                         labels=torch.tensor(picks, dtype=torch.int64))
    for a, b in zip(chosen, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)  # NaN times are kept, in place


def test_select_refuses_an_index_out_of_range():
    with pytest.raises(IndexError, match=r"select: index must lie in \[-2, 2\) for 2 samples, got \[2\]"):
        data.select(as_spikes([[0.1], [0.2]], [[0], [1]]), torch.tensor([2]))


def test_randman_written_as_shd_files_bins_to_the_frames_of_the_randman_spec(tmp_path):
    options = dict(classes=3, units=9, samples=10, spikes=2, seed=4)
    train_path, test_path = data.write_randman_shd(tmp_path, **options)
    assert (train_path, test_path) == (tmp_path / "shd_train.h5", tmp_path / "shd_test.h5")
    from_files = data.load(f"shd:{tmp_path},span=1,cache=none", T=20)
    generated = data.load("randman:" + ",".join(f"{k}={v}" for k, v in options.items()), T=20)
    assert from_files.classes == ("class 0", "class 1", "class 2")
    for a, b in ((from_files.train, generated.train), (from_files.test, generated.test)):
        assert torch.equal(a.x.dense()[..., :9], b.x.dense()) and torch.equal(a.y, b.y)
        assert not a.x.dense()[..., 9:].any()
    before = train_path.read_bytes()
    with pytest.raises(FileExistsError, match=r"shd_train.h5, .*shd_test.h5 exist\(s\); pass overwrite=True"):
        data.write_randman_shd(tmp_path, **{**options, "seed": 5})
    assert train_path.read_bytes() == before  # nothing the user made is replaced without the flag
    data.write_randman_shd(tmp_path, **{**options, "seed": 5}, overwrite=True)
    assert train_path.read_bytes() != before
    with pytest.raises(ValueError, match=r"option `units` must be <= 700 \(the SHD layout's units\), got 701"):
        data.write_randman_shd(tmp_path, units=701, overwrite=True)
    with pytest.raises(NotADirectoryError, match=r"is not an existing directory"):
        data.write_randman_shd(tmp_path / "missing")


def test_specs_parse_make_paths_absolute_and_name_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert data.parse("shd:some/dir,dt=0.01,cache=none") == ("shd", "some/dir", {"dt": "0.01", "cache": "none"})
    assert data.parse("shd:a,b,dt=1") == ("shd", "a,b", {"dt": "1"})  # a comma inside a path
    assert data.parse("randman") == ("randman", "", {}) and data.parse("digits") is None
    assert data.parse("my.pt") is None and data.parse("C:/data.pt") is None
    assert data.absolute("shd:d,cache=c") == f"shd:{tmp_path}/d,cache={tmp_path}/c"
    assert data.absolute("randman:classes=3") == "randman:classes=3" and data.absolute("digits") == "digits"
    assert data.absolute("x.pt") == f"{tmp_path}/x.pt"
    assert [data.short_name(s) for s in ("shd:/a/b", "randman:units=3", "digits", "/a/my.pt")] == [
        "shd", "randman", "digits", "my"]
    with pytest.raises(ValueError, match=r"--data shd: unknown option\(s\) \['bins'\]; shd takes dt, span, cache"):
        data.load("shd:/x,bins=3")
    with pytest.raises(ValueError, match=r"give a folder, shd:DIR"):
        data.load("shd")


def test_summary_reports_sizes_spikes_and_binning():
    split = data.load("randman:classes=2,units=5,samples=5,spikes=3", T=10)
    info = data.summary(split)
    assert info["sets"]["train"]["samples"] == 8 and info["sets"]["train"]["spikes_per_sample"] == (15.0, 15, 15)
    assert info["resident_bytes"] == split.train.nbytes + split.test.nbytes
    assert split.train.x.nbytes == 9 * 8 + 5 * int(split.train.x.lengths.sum())
    assert info["T"] == 10 and info["dt"] == 0.1 and info["step_shape"] == [5]
