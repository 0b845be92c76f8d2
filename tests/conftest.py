"""Shared test configuration: the SpikingJelly oracle, devices, dtypes, tolerances, hypothesis profiles.

Fixtures
--------
``sj``      the SpikingJelly 2.0.0 oracle as a namespace (``sj.neuron``, ``sj.surrogate``,
            ``sj.functional``, ``sj.layer``); tests using it are skipped when it is not installed.
``device``  parametrized over :data:`devices` (cpu always; cuda / mps when available).
``dtype``   parametrized over :data:`dtypes` (float32, float64).
``tol``     the agreement we promise for ``dtype``: 1e-6 in float32, 1e-12 in float64.

``compile_backend``  the ``torch.compile`` backend for "compiled equals eager" tests: ``aot_eager`` (graph
            capture and AOT autograd, seconds on CPU) unless ``PURELEARN_COMPILE_BACKEND`` names another
            (``inductor`` adds code generation; with a cold cache ~30 s per graph on 2 CPU cores).

Hypothesis profiles: ``ci`` (default, 25 examples) and ``long`` (300 examples); pick one with the
environment variable ``HYPOTHESIS_PROFILE``.
"""

from __future__ import annotations

import logging
import os
import warnings
from types import SimpleNamespace

import pytest
import torch
from hypothesis import HealthCheck, settings

# SpikingJelly registers custom ops at import; on a CPU-only torch each registration logs
# "Triton not available" through this logger. It is harmless noise.
logging.getLogger("torch._library.triton").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", message=".*Triton not available.*")

devices: list[str] = ["cpu"]
if torch.cuda.is_available():
    devices.append("cuda")
if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
    devices.append("mps")

dtypes: list[torch.dtype] = [torch.float32, torch.float64]

#: Agreement with the oracles (SpikingJelly, torch) that the library promises, per dtype.
TOLERANCE: dict[torch.dtype, float] = {torch.float32: 1e-6, torch.float64: 1e-12}


def pytest_configure(config: pytest.Config) -> None:
    # SpikingJelly's surrogates still use torch.jit.script_method; the deprecation is the oracle's noise.
    config.addinivalue_line("filterwarnings", "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")


settings.register_profile(
    "ci", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "long", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Every test runs with one intra-op thread (restored afterwards): the tests run thousands of
    tiny ops, and on a small, busy CPU torch's thread pool makes them 10-50x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def sj() -> SimpleNamespace:
    """The SpikingJelly oracle (``activation_based``), or skip the test if it is not installed."""
    pytest.importorskip("spikingjelly.activation_based.neuron")
    from spikingjelly.activation_based import functional, layer, neuron, surrogate

    return SimpleNamespace(neuron=neuron, surrogate=surrogate, functional=functional, layer=layer)


@pytest.fixture(params=devices)
def device(request: pytest.FixtureRequest) -> torch.device:
    """Every available device, cpu first."""
    return torch.device(request.param)


@pytest.fixture(params=dtypes, ids=lambda d: str(d).removeprefix("torch."))
def dtype(request: pytest.FixtureRequest) -> torch.dtype:
    """float32 and float64."""
    return request.param


@pytest.fixture
def tol(dtype: torch.dtype) -> float:
    """Absolute tolerance for comparisons with an oracle in ``dtype``."""
    return TOLERANCE[dtype]


@pytest.fixture(scope="session")
def compile_backend() -> str:
    """Backend for tests that compare ``torch.compile`` with eager (see the module docstring)."""
    return os.environ.get("PURELEARN_COMPILE_BACKEND", "aot_eager")
