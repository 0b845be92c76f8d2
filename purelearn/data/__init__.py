r"""Datasets for the command line and notebooks, local files only (nothing is ever downloaded).

Everything the learners see is **time-major**: a batch is ``x_seq`` [T, N, ...] with integer
labels [N]. Every random draw (the shuffle and the rate-coded spikes) comes from an explicit
``torch.Generator``, so a run is reproducible from its seed and resumable from the generator's
``get_state()``.

One module per concept:

================= =====================================================================================
``dataset``        :class:`Dataset`, :class:`Split`, :func:`batches` (dense batches built on the fly)
``encodings``      :func:`encode`: ``"rate"``, ``"sequential"``, ``"none"``, ``"events"`` (compact counts)
``digits``         the bundled scikit-learn digits (``digits``, ``seq-digits``)
``tensor_file``    user files written with ``torch.save`` (:func:`load_tensor_file`)
``spikes``         raw :class:`Spikes`, vectorised :func:`bin_spikes`, compact :class:`SpikeCounts`
``heidelberg``     SHD / SSC from the published HDF5 files (h5py), :func:`write_shd`
``synthetic``      randman: generated data whose classes differ only in spike timing; in SHD files
``cache``          the on-disk cache of binned data
``spec``           ``--data SPEC`` -> a reader (:func:`load`, :data:`READERS`)
``summary``        what ``purelearn data SPEC`` prints
================= =====================================================================================

``load("digits")``, ``load("seq-digits")``, ``load("PATH.pt")``, ``load("shd:DIR")``,
``load("ssc:DIR")``, ``load("randman:classes=10")`` (:mod:`purelearn.data.spec`).
"""

from .dataset import (
    SPLIT_SEED,
    Compact,
    Dataset,
    Split,
    batch_indices,
    batches,
    fingerprint,
    generator_state,
    seeded_split,
    take,
)
from .digits import DIGITS_SIZE, DIGITS_TEST, DIGITS_TRAIN, digits_split, load_digits, load_digits_images
from .encodings import ENCODINGS, EVENTS, encode, rate_encode, sequential_encode
from .heidelberg import UNITS, load_heidelberg, read_spikes, write_shd
from .spec import READERS, absolute, load, parse, short_name
from .spikes import BinStats, SpikeCounts, Spikes, bin_spikes, select
from .summary import summary
from .synthetic import load_randman, randman, write_randman_shd
from .tensor_file import load_tensor_file

__all__ = [
    "ENCODINGS",
    "EVENTS",
    "DIGITS_SIZE",
    "DIGITS_TRAIN",
    "DIGITS_TEST",
    "SPLIT_SEED",
    "UNITS",
    "Compact",
    "Dataset",
    "Split",
    "Spikes",
    "SpikeCounts",
    "BinStats",
    "READERS",
    "load_digits_images",
    "digits_split",
    "load_digits",
    "rate_encode",
    "sequential_encode",
    "encode",
    "load_tensor_file",
    "load_heidelberg",
    "read_spikes",
    "write_shd",
    "randman",
    "load_randman",
    "write_randman_shd",
    "select",
    "bin_spikes",
    "load",
    "parse",
    "absolute",
    "short_name",
    "summary",
    "batches",
    "batch_indices",
    "take",
    "seeded_split",
    "generator_state",
    "fingerprint",
]
