"""Event-camera data: ``to_frames`` equals tonic's ``ToFrame`` (and ``Downsample``), and ``load_tonic``
reads tonic's real on-disk layouts offline, bins once and caches.

The tonic oracle tests skip when tonic is not installed (``pip install 'purelearn[tonic]'``)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from purelearn.data import EVENTS, Dataset, batches
from purelearn.data import events as ev
from purelearn.data.events import bin_dataset, frame_shape, load_tonic, to_frames

XYTP = [("x", np.int64), ("y", np.int64), ("t", np.int64), ("p", np.int64)]


@pytest.fixture(scope="module")
def tonic():
    return pytest.importorskip("tonic")


@pytest.fixture
def no_download(monkeypatch, tonic):
    """Fail the test if tonic tries to fetch anything."""
    import tonic.dataset
    import tonic.download_utils

    def refuse(*args, **kwargs):
        raise AssertionError(f"tonic tried to download: {args}")

    for module in (tonic.dataset, tonic.download_utils):
        for fn in ("download_and_extract_archive", "download_url", "extract_archive"):
            if hasattr(module, fn):
                monkeypatch.setattr(module, fn, refuse)


def make_events(n: int, W: int, H: int, P: int, *, has_y=True, t_dtype=np.int64, p_bool=False, seed=0,
                t0=0, span=1000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    fields = [("x", np.int16)] + ([("y", np.int16)] if has_y else [])
    fields += [("t", t_dtype), ("p", bool if p_bool else np.int8)]
    e = np.zeros(n, dtype=fields)
    e["x"] = rng.integers(0, W, n)
    if has_y:
        e["y"] = rng.integers(0, H, n)
    t = np.sort(rng.integers(0, span + 1, n)) + t0
    e["t"] = t / 4 + t0 if np.dtype(t_dtype).kind == "f" else t
    e["p"] = rng.integers(0, P, n) if P > 1 else int(rng.integers(0, 2))
    return e


def tonic_frames(tonic, events, sensor_size, **kw):
    return tonic.transforms.ToFrame(sensor_size=sensor_size, **kw)(events.copy())


def tonic_downsampled(tonic, events, k, small_sensor, n_time_bins):
    """``Downsample(spatial_factor=1/k)`` then ``ToFrame`` (not through ``Compose``, which returns an
    empty recording as it is, not as frames)."""
    events = tonic.transforms.Downsample(spatial_factor=1 / k)(events.copy())
    return tonic_frames(tonic, events, small_sensor, n_time_bins=n_time_bins)


recordings = st.fixed_dictionaries({
    "n": st.integers(0, 80), "W": st.integers(1, 7), "H": st.integers(1, 7), "P": st.sampled_from([1, 2]),
    "has_y": st.booleans(), "t_dtype": st.sampled_from([np.int64, np.uint64, np.float64, np.int32]),
    "p_bool": st.booleans(), "seed": st.integers(0, 2**31), "t0": st.integers(0, 10**6),
    "span": st.sampled_from([0, 3, 17, 100, 5000]),
})


def check_equal(mine, theirs, events, T=None):
    if len(events) == 0:  # tonic: float zeros shaped [T, P, W, H]; ours: the usual shape
        assert not theirs.any() and mine.shape[0] == theirs.shape[0] and not mine.any()
        return
    assert mine.dtype == theirs.dtype == np.int16
    assert mine.shape == theirs.shape
    np.testing.assert_array_equal(mine, theirs)


# ----------------------------------------------------------------------------- to_frames == tonic


@given(rec=recordings, n_time_bins=st.integers(1, 12), overlap=st.sampled_from([0, 0.0, 0.25, 0.5]))
def test_to_frames_equals_tonic_toframe_with_n_time_bins(tonic, rec, n_time_bins, overlap):
    events = make_events(**rec)
    sensor = (rec["W"], rec["H"], rec["P"])
    mine = to_frames(events, sensor, n_time_bins=n_time_bins, overlap=overlap)
    assert mine.shape == (n_time_bins, *frame_shape(sensor, 1, rec["has_y"]))
    check_equal(mine, tonic_frames(tonic, events, sensor, n_time_bins=n_time_bins, overlap=overlap), events)


@given(rec=recordings, time_window=st.sampled_from([1, 7, 50, 333, 2000, 12.5]), incomplete=st.booleans(),
       overlap=st.sampled_from([0, 0.5]), start=st.sampled_from([None, -5, 20]), end=st.sampled_from([None, 40, 900]))
def test_to_frames_equals_tonic_toframe_with_time_window(tonic, rec, time_window, incomplete, overlap, start, end):
    events = make_events(**rec)
    sensor = (rec["W"], rec["H"], rec["P"])
    kw = dict(time_window=time_window, include_incomplete=incomplete, overlap=overlap,
              start_time=None if start is None else rec["t0"] + start,
              end_time=None if end is None else rec["t0"] + end)
    if len(events) and np.dtype(rec["t_dtype"]).kind == "u":  # tonic computes end - start - tw in uint64: it wraps
        first = events["t"][0] if start is None else kw["start_time"]
        last = events["t"][-1] if end is None else kw["end_time"]
        assume(int(last) - int(first) >= time_window and int(first) >= 0)
    mine = to_frames(events, sensor, **kw)
    check_equal(mine, tonic_frames(tonic, events, sensor, **kw), events)


@given(rec=recordings, k=st.integers(1, 5), extra=st.integers(0, 12), n_time_bins=st.integers(1, 6))
def test_downsampling_equals_tonic_downsample_then_toframe(tonic, rec, k, extra, n_time_bins):
    W, H = rec["W"] + extra, rec["H"] + 2 * extra
    events = make_events(**{**rec, "W": W, "H": H})
    small = (math.ceil(W / k), math.ceil(H / k), rec["P"])
    theirs = tonic_downsampled(tonic, events, k, small, n_time_bins)
    mine = to_frames(events, (W, H, rec["P"]), n_time_bins=n_time_bins, downsample=k)
    check_equal(mine, theirs, events)
    full = to_frames(events, (W, H, rec["P"]), n_time_bins=n_time_bins)
    assert mine.sum() == full.sum()  # a block sums its pixels' counts


def test_dvs_gesture_sized_downsampling_128_to_32(tonic):
    events = make_events(20000, 128, 128, 2, seed=3, span=6_000_000, p_bool=True)
    mine = to_frames(events, (128, 128, 2), n_time_bins=20, downsample=4)
    assert mine.shape == (20, 2, 32, 32)
    np.testing.assert_array_equal(mine, tonic_downsampled(tonic, events, 4, (32, 32, 2), 20))


# ----------------------------------------------------------------------------- to_frames on its own


def test_n_time_bins_drops_the_events_at_or_after_t0_plus_n_widths():
    e = np.zeros(5, dtype=XYTP)
    e["t"] = [100, 103, 105, 106, 107]  # w = 7 // 2 = 3: bins [100, 103), [103, 106); 106 and 107 dropped
    assert to_frames(e, (1, 1, 2), n_time_bins=2)[:, 0, 0, 0].tolist() == [1, 2]
    e["t"] = [5, 5, 5, 5, 6]  # span 1 < 2 bins: width 0, every frame empty, as tonic
    assert not to_frames(e, (1, 1, 2), n_time_bins=2).any()


def test_events_without_y_give_frames_t_p_w(tonic):
    e = make_events(50, 9, 1, 2, has_y=False, seed=1)
    mine = to_frames(e, (9, 1, 2), n_time_bins=4)
    assert mine.shape == (4, 2, 9)
    np.testing.assert_array_equal(mine, tonic_frames(tonic, e, (9, 1, 2), n_time_bins=4))


def test_to_frames_does_not_modify_the_events():
    e = make_events(30, 4, 4, 1, seed=2)
    e["p"] = 1
    before = e.copy()
    to_frames(e, (4, 4, 1), n_time_bins=3, downsample=2)
    np.testing.assert_array_equal(e, before)


def test_counts_never_wrap():
    e = np.zeros(300, dtype=XYTP)
    e["t"] = np.arange(300) // 299 * 10  # 299 events at t=0, one at t=10: one bin of width 10
    assert to_frames(e, (1, 1, 2), n_time_bins=1, dtype=np.int16)[0, 0, 0, 0] == 299
    with pytest.raises(OverflowError, match="299 events"):
        to_frames(e, (1, 1, 2), n_time_bins=1, dtype=np.uint8)


@pytest.mark.parametrize("field, value, match", [
    ("x", 4, "'x' must hold integers in \\[0, 4\\)"), ("y", -1, "'y' must hold"), ("p", 2, "'p' must hold"),
    ("p", -1, "'p' must hold"),
])
def test_out_of_range_events_are_refused(field, value, match):
    e = make_events(10, 4, 3, 2)
    e[field][3] = value
    with pytest.raises(ValueError, match=match):
        to_frames(e, (4, 3, 2), n_time_bins=2)


def test_unsorted_or_nonfinite_times_and_bad_options_are_refused():
    e = make_events(10, 4, 3, 2)
    with pytest.raises(ValueError, match="sorted by t"):
        to_frames(e[::-1], (4, 3, 2), n_time_bins=2)
    f = make_events(10, 4, 3, 2, t_dtype=np.float64)
    f["t"][-1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        to_frames(f, (4, 3, 2), n_time_bins=2)
    with pytest.raises(ValueError, match="exactly one"):
        to_frames(e, (4, 3, 2))
    with pytest.raises(ValueError, match="exactly one"):
        to_frames(e, (4, 3, 2), n_time_bins=2, time_window=10)
    with pytest.raises(ValueError, match="n_time_bins"):
        to_frames(e, (4, 3, 2), n_time_bins=0)
    with pytest.raises(ValueError, match="time_window"):
        to_frames(e, (4, 3, 2), time_window=-1)
    with pytest.raises(ValueError, match="downsample"):
        to_frames(e, (4, 3, 2), n_time_bins=2, downsample=0)
    with pytest.raises(ValueError, match="sensor_size"):
        to_frames(e, (4, 3), n_time_bins=2)
    with pytest.raises(ValueError, match="two"):
        to_frames(e, (4, 3, 1), n_time_bins=2)
    with pytest.raises(ValueError, match="structured"):
        to_frames(np.zeros((3, 4)), (4, 3, 2), n_time_bins=2)


def test_bin_dataset_widens_the_dtype_only_when_a_count_needs_it():
    small = make_events(20, 3, 3, 2, seed=4)
    big = np.zeros(400, dtype=XYTP)
    big["t"] = np.arange(400) // 399
    b = bin_dataset([(small, 1), (small, 2)], (3, 3, 2), n_time_bins=2)
    assert b.frames.counts.dtype == torch.uint8 and b.frames.counts.shape == (2, 2, 2, 3, 3)
    assert b.labels.tolist() == [1, 2]
    b = bin_dataset([(small, 1), (big, 0)], (3, 3, 2), n_time_bins=1)
    assert b.frames.counts.dtype == torch.int16 and b.frames.counts[1, 0, 0, 0, 0] == 399
    np.testing.assert_array_equal(b.frames.counts[0].numpy(), to_frames(small, (3, 3, 2), n_time_bins=1))
    binned = to_frames(small, (3, 3, 2), n_time_bins=1).sum() + 399
    assert b.outside.sum() == 20 + 400 - binned  # the events tonic's rule leaves out, counted


def test_frames_are_compact_and_densified_per_batch():
    counts = torch.randint(0, 5, (6, 4, 2, 3, 3), dtype=torch.uint8)
    frames = ev.Frames(counts)
    assert len(frames) == 6 and frames.T == 4 and frames.step_shape == (2, 3, 3) and frames.nbytes == counts.numel()
    dense = frames[torch.tensor([4, 1])].dense()
    assert dense.dtype == torch.float32 and dense.shape == (4, 2, 2, 3, 3) and dense.is_contiguous()
    assert torch.equal(dense, counts[[4, 1]].transpose(0, 1).float())
    assert frames.spikes_per_sample().tolist() == counts.flatten(1).sum(1).tolist()
    ds = Dataset(frames, torch.arange(6), EVENTS, 4)
    (x, y), *_ = batches(ds, 6, None, shuffle=False)
    assert torch.equal(x, counts.transpose(0, 1).float()) and y.tolist() == list(range(6))


def test_bin_dataset_sorts_unsorted_recordings_and_says_so_once():
    e = make_events(20, 3, 3, 2, seed=5)
    with pytest.warns(UserWarning, match="1 of 2 recordings were not sorted"):
        b = bin_dataset([(e[::-1].copy(), 0), (e, 0)], (3, 3, 2), n_time_bins=3)
    assert torch.equal(b.frames.counts[0], b.frames.counts[1]) and b.unsorted == 1


# ----------------------------------------------------------------------------- tonic datasets on disk


def write_nmnist_bin(path: Path, events: np.ndarray) -> None:
    """N-MNIST's binary format: 5 bytes per event, x, y, p (bit 7) with t's bits 22..16, t's 15..8, 7..0."""
    t = events["t"].astype(np.uint32)
    raw = np.zeros((len(events), 5), dtype=np.uint8)
    raw[:, 0], raw[:, 1] = events["x"], events["y"]
    raw[:, 2] = (events["p"].astype(np.uint32) << 7) | ((t >> 16) & 127)
    raw[:, 3], raw[:, 4] = (t >> 8) & 255, t & 255
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw.tobytes())


@pytest.fixture
def nmnist_root(tmp_path):
    """A tiny N-MNIST in tonic's layout: root/NMNIST/{Train,Test}/<digit>/<id>.bin; the events per file."""
    root, samples = tmp_path / "data", {}
    for folder, digits in (("Train", (3, 0, 7)), ("Test", (5, 3))):
        for j, digit in enumerate(digits):
            e = make_events(200 + 37 * j, 34, 34, 2, seed=10 * j + digit, span=300_000)
            path = root / "NMNIST" / folder / str(digit) / f"{j:05d}.bin"
            write_nmnist_bin(path, e)
            samples[str(path)] = (e, digit)
    return root, samples


def expected(samples, folder, tonic, sensor, k, T):
    rows = [samples[p] for p in sorted(samples) if f"/{folder}/" in p]
    return np.stack([tonic_downsampled(tonic, e.astype(XYTP), k, sensor, T) for e, _ in rows]), [d for _, d in rows]


@pytest.mark.parametrize("k", [1, 2])
def test_load_tonic_nmnist_reads_the_real_layout_offline(tonic, no_download, nmnist_root, tmp_path, k):
    root, samples = nmnist_root
    split = load_tonic("NMNIST", root, n_time_bins=5, downsample=k, cache_dir=str(tmp_path / "cache"))
    sensor = (34 // k, 34 // k, 2)
    assert split.name == "tonic:NMNIST" and split.num_classes == 10 and split.classes[3] == "3 - three"
    for ds, folder in ((split.train, "Train"), (split.test, "Test")):
        frames, labels = expected(samples, folder, tonic, sensor, k, 5)
        counts = ds.x.counts
        assert ds.encoding == EVENTS and ds.T == 5 and counts.dtype == torch.uint8
        assert counts.shape == (len(labels), 5, 2, 34 // k, 34 // k) and ds.step_shape == (2, 34 // k, 34 // k)
        np.testing.assert_array_equal(counts.numpy(), frames)
        assert ds.y.dtype == torch.int64 and ds.y.tolist() == labels
        events = sum(len(samples[p][0]) for p in samples if f"/{folder}/" in p)
        assert split.info["dropped"][folder.lower()]["outside"] == events - frames.sum()
    assert not split.info["cache_hit"] and split.info["unsorted"] == 0


def test_load_tonic_caches_and_never_bins_twice(tonic, no_download, nmnist_root, tmp_path, monkeypatch):
    root, _ = nmnist_root
    cache = tmp_path / "cache"
    before = sorted(p for p in root.rglob("*"))
    first = load_tonic("NMNIST", root / "NMNIST", n_time_bins=4, cache_dir=str(cache))  # root may be NAME/ itself
    files = sorted(cache.iterdir())
    assert len(files) == 1 and files[0].name.startswith("tonic-NMNIST-") and first.info["cache"] == str(files[0])
    assert sorted(p for p in root.rglob("*")) == before  # nothing written next to the data

    def refuse(*args, **kwargs):
        raise AssertionError("binned again")

    monkeypatch.setattr(ev, "bin_dataset", refuse)
    again = load_tonic("NMNIST", root, n_time_bins=4, cache_dir=str(cache))
    assert again.info["cache_hit"] and again.info["dropped"] == first.info["dropped"]
    assert torch.equal(again.train.x.counts, first.train.x.counts) and torch.equal(again.test.y, first.test.y)
    for options in ({"n_time_bins": 3}, {"n_time_bins": 4, "downsample": 2}, {"n_time_bins": 4, "cache_dir": None}):
        with pytest.raises(AssertionError, match="binned again"):  # other options: another cache entry
            load_tonic("NMNIST", root, **{"cache_dir": str(cache), **options})


def test_load_tonic_without_a_disk_cache_writes_nothing(tonic, no_download, nmnist_root, tmp_path, monkeypatch):
    root, _ = nmnist_root
    monkeypatch.setenv("PURELEARN_CACHE_DIR", str(tmp_path / "default-cache"))
    split = load_tonic("NMNIST", root, n_time_bins=4, cache_dir=None)
    assert split.info["cache"] is None and not (tmp_path / "default-cache").exists()
    load_tonic("NMNIST", root, n_time_bins=4)  # "": the default folder
    assert len(list((tmp_path / "default-cache").iterdir())) == 1


def test_missing_nmnist_files_give_one_line_and_no_download(tonic, no_download, tmp_path, nmnist_root):
    with pytest.raises(FileNotFoundError) as err:
        load_tonic("NMNIST", tmp_path / "nothing", n_time_bins=4, cache_dir=str(tmp_path / "cache"))
    message = str(err.value)
    assert "\n" not in message and "NMNIST/Train" in message and "train.zip" in message and "http" in message
    root, _ = nmnist_root
    for f in (root / "NMNIST" / "Test").rglob("*.bin"):
        f.unlink()
    with pytest.raises(FileNotFoundError, match="NMNIST/Test.*test.zip"):
        load_tonic("NMNIST", root, n_time_bins=4, cache_dir=str(tmp_path / "cache"))


def test_load_tonic_dvsgesture_reads_the_real_layout_offline(tonic, no_download, tmp_path):
    """root/DVSGesture/ibmGesture{Train,Test}/user<NN>_<lighting>/<label>.npy, columns x, y, p, t (ms)."""
    root, rows = tmp_path / "data", {}
    layout = (("ibmGestureTrain", "user01_led", (4, 0, 10)), ("ibmGestureTest", "user24_natural", (2,)))
    for folder, user, labels in layout:
        for j, label in enumerate(labels):
            e = make_events(300, 128, 128, 2, seed=j + label, span=6000)
            arr = np.stack([e["x"], e["y"], e["p"], e["t"]], axis=1).astype(np.int64)
            path = root / "DVSGesture" / folder / user / f"{label}.npy"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, arr)
            rows[str(path)] = (e, label)
    split = load_tonic("DVSGesture", root, n_time_bins=6, downsample=4, cache_dir=str(tmp_path / "cache"))
    assert split.num_classes == 11 and split.train.x.counts.shape == (3, 6, 2, 32, 32)
    for ds, folder in ((split.train, "Train"), (split.test, "Test")):
        paths = sorted(p for p in rows if f"ibmGesture{folder}" in p)
        assert ds.y.tolist() == [rows[p][1] for p in paths]
        for i, p in enumerate(paths):
            e = rows[p][0].copy()  # tonic converts ms to µs; the bins are relative, the frames the same
            np.testing.assert_array_equal(ds.x.counts[i].numpy(), to_frames(e, (128, 128, 2), n_time_bins=6,
                                                                             downsample=4))


def test_missing_cifar10dvs_files_give_one_line(tonic, no_download, tmp_path):
    with pytest.raises(FileNotFoundError, match="^tonic:CIFAR10DVS: no .aedat4 files under .*CIFAR10DVS.*http"):
        load_tonic("CIFAR10DVS", tmp_path, n_time_bins=4, cache_dir=str(tmp_path / "cache"))


def test_load_tonic_cifar10dvs_walks_the_class_folders_and_splits_per_class(tonic, no_download, tmp_path,
                                                                               monkeypatch):
    """root/CIFAR10DVS/<class>/*.aedat4. AEDAT4 cannot be written here, so tonic's ``read_aedat4`` reads
    our events from each file instead (``np.load``); the folder walk, labels, split and binning are real."""
    import types

    import tonic.datasets.cifar10dvs as cifar

    monkeypatch.setitem(sys.modules, "aedat", types.ModuleType("aedat"))
    monkeypatch.setattr(cifar, "read_aedat4", lambda path: np.load(path))
    root, rows = tmp_path / "data", {}
    for c, name in enumerate(("airplane", "cat", "truck")):
        for j in range(10):
            made = make_events(100, 128, 128, 2, seed=100 * c + j, span=10**6, p_bool=True)
            e = np.zeros(100, dtype=[("t", np.uint64), ("x", np.uint16), ("y", np.uint16), ("p", bool)])
            for field in "txyp":  # by name (structured astype assigns by position)
                e[field] = made[field]
            path = root / "CIFAR10DVS" / name / f"cifar10_{name}_{j}.aedat4"
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as f:
                np.save(f, e)
            rows[str(path)] = (e, cifar.CIFAR10DVS.classes[name])
    split = load_tonic("CIFAR10DVS", root, n_time_bins=3, downsample=2, cache_dir=None)
    assert split.num_classes == 10 and split.classes[9] == "truck"
    assert load_tonic("CIFAR10DVS", root, cache_dir=None).train.T == 10  # the papers' T by default
    assert torch.bincount(split.train.y).tolist() == [9, 0, 0, 9, 0, 0, 0, 0, 0, 9]
    assert torch.bincount(split.test.y).tolist() == [1, 0, 0, 1, 0, 0, 0, 0, 0, 1]
    paths = sorted(rows)
    frames = np.stack([to_frames(rows[p][0], (128, 128, 2), n_time_bins=3, downsample=2) for p in paths])
    train, test = ev._class_split(torch.tensor([rows[p][1] for p in paths]), 0.9, 0)
    np.testing.assert_array_equal(split.train.x.counts.numpy(), frames[train.numpy()])
    np.testing.assert_array_equal(split.test.x.counts.numpy(), frames[test.numpy()])


def test_cifar10dvs_split_is_seeded_per_class():
    labels = torch.arange(10).repeat_interleave(1000)
    train, test = ev._class_split(labels, 0.9, 0)
    assert torch.bincount(labels[train]).tolist() == [900] * 10 and torch.bincount(labels[test]).tolist() == [100] * 10
    assert torch.equal(torch.sort(torch.cat([train, test])).values, torch.arange(10000))
    again = ev._class_split(labels, 0.9, 0)
    assert torch.equal(again[0], train) and not torch.equal(ev._class_split(labels, 0.9, 1)[0], train)


def test_unknown_dataset_names_are_refused(tonic, tmp_path):
    with pytest.raises(ValueError, match="one of .*NMNIST.*bin_dataset"):
        load_tonic("POKERDVS", tmp_path, n_time_bins=4)


def test_without_tonic_one_line_says_which_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tonic", None)
    with pytest.raises(ImportError, match=r"^event-camera data needs tonic: pip install 'purelearn\[tonic\]'$"):
        load_tonic("NMNIST", tmp_path, n_time_bins=4)


def test_the_command_line_trains_and_summarises_tonic_data_from_its_spec(tonic, no_download, nmnist_root,
                                                                           tmp_path, capsys):
    """``--data tonic:NMNIST:DIR,downsample=2`` reaches load_tonic through the data spec; a run
    stores the absolute folder; a spec without a folder is one line, exit 2."""
    from purelearn import data
    from purelearn.app.cli import main

    root, _ = nmnist_root
    spec = f"tonic:NMNIST:{root},downsample=2,cache={tmp_path / 'cache'}"
    split = data.load(spec, 4)
    assert split.train.step_shape == (2, 17, 17) and split.train.T == 4 and len(split.train) == 3
    assert data.absolute(f"tonic:NMNIST:{root}") == f"tonic:NMNIST:{root.resolve()}"
    assert main(["data", spec, "--T", "4"]) == 0
    assert "3" in capsys.readouterr().out
    out = tmp_path / "run"
    assert main(["train", "--data", spec, "--T", "4", "--epochs", "1", "--batch-size", "2", "--out", str(out),
                 "--no-plot", "--quiet"]) == 0
    assert main(["train", "--data", "tonic:NMNIST", "--epochs", "1"]) == 2
    assert "tonic:NAME:DIR" in capsys.readouterr().err
