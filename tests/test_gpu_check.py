"""benchmarks/gpu_check.py, the GPU check, kept working without a GPU: its ``--dry-run`` runs every
phase for real on the cpu (small), and its pieces (the pytest log parser, the device-test finder,
the shell wrapper) are checked on their own. No timing is asserted."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def _load_module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gpu_check = _load_module()


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    pytest.importorskip("spikingjelly.activation_based.learning.online_learning")
    out = tmp_path_factory.mktemp("gpu_check")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return out, proc.stdout, json.loads((out / "gpu_check.json").read_text())


@pytest.mark.slow
def test_dry_run_writes_every_phase_with_the_schema(dry_run):
    out, stdout, result = dry_run
    assert result["schema"] == gpu_check.SCHEMA and result["dry_run"] is True and result["device"] == "cpu"
    assert list(result["phases"]) == list(gpu_check.PHASES)
    assert {name: phase["status"] for name, phase in result["phases"].items()} == dict.fromkeys(gpu_check.PHASES, "ok")
    for phase in result["phases"].values():
        assert phase["seconds"] <= phase["budget_s"] + 5
    assert (out / "gpu_check.md").read_text() == result["markdown"]
    assert result["markdown"] in stdout  # the table to paste is printed
    # what comes back from the device machine: at most 8 plain files, none nested
    assert len(list(out.iterdir())) <= 8 and all(p.is_file() for p in out.iterdir())


@pytest.mark.slow
def test_dry_run_env_reports_versions_and_the_imports_that_matter(dry_run):
    env = dry_run[2]["phases"]["env"]
    assert env["torch"] and env["python"] and env["cuda_available"] in (True, False)
    assert env["imports"] == dict.fromkeys(gpu_check.PROBE_IMPORTS, "ok")
    assert env["packages"]["optree"]["found"] and env["packages"]["spikingjelly"]["version"] == "2.0.0"
    assert "version" in env["jax"] or "error" in env["jax"]


@pytest.mark.slow
def test_dry_run_test_phases_ran_and_passed_real_tests(dry_run):
    out, _, result = dry_run
    for kind in ("tests_device", "tests_general"):
        phase = result["phases"][kind]
        assert phase["counts"]["passed"] > 0 and phase["counts"]["failed"] == phase["counts"]["error"] == 0, phase
        assert phase["returncode"] == 0 and not phase["timed_out"] and phase["summary"]
        assert (out / phase["log"]).is_file()
    device = result["phases"]["tests_device"]
    assert gpu_check.DRY_DEVICE_TEST in device["device_tests_found"]
    assert device["command"][-2:] == ["-k", "cpu"]


@pytest.mark.slow
def test_dry_run_bench_rows_are_finite_and_match_spikingjelly(dry_run):
    bench = dry_run[2]["phases"]["bench"]
    assert bench["rows"] and len(bench["rows"]) == len(bench["config"]["methods"])
    for row in bench["rows"]:
        assert row["errors"] == {} and row["skipped"] == {}, row
        assert set(row["seconds"]) == {"sj", *gpu_check.CONTENDERS}
        assert all(math.isfinite(s) and s > 0 for s in row["seconds"].values())
        assert set(row["ratio_vs_sj"]) == set(gpu_check.CONTENDERS)
        assert set(row["param_diff_vs_sj"]) == set(gpu_check.CONTENDERS)
        assert all(d < 1e-4 for d in row["param_diff_vs_sj"].values()), row["param_diff_vs_sj"]
        assert row["compiled_kind"] in ("whole_sequence", "per_step")
    assert "| fptt |" in dry_run[2]["markdown"]


def test_pytest_logs_are_parsed_with_and_without_a_summary_line():
    plain = """\
tests/test_a.py::test_x[cuda-float32] PASSED [ 25%]
tests/test_a.py::test_y FAILED [ 50%]
tests/test_b.py::test_z SKIPPED (no sj) [ 75%]
purelearn/tree.py::purelearn.tree PASSED [100%]
=========================== short test summary info ============================
FAILED tests/test_a.py::test_y - AssertionError
"""
    got = gpu_check.parse_pytest_log(plain)  # killed before the last line: counted from the test lines
    assert got["counts"]["passed"] == 2 and got["counts"]["failed"] == 1 and got["counts"]["skipped"] == 1
    assert got["failures"] == ["tests/test_a.py::test_y"] and got["summary"] is None
    last = "=========== 1 failed, 2 passed, 1 skipped, 3 errors in 2.50s ===========\n"
    final = gpu_check.parse_pytest_log(plain + last)
    assert final["summary"] == "1 failed, 2 passed, 1 skipped, 3 errors in 2.50s"
    assert final["counts"]["error"] == 3 and final["counts"]["passed"] == 2
    xdist = "[gw1] [ 50%] PASSED tests/test_a.py::test_x[cuda]\n[gw0] [100%] ERROR tests/test_b.py::test_w\n"
    got = gpu_check.parse_pytest_log(xdist)
    assert got["counts"]["passed"] == 1 and got["counts"]["error"] == 1
    assert got["failures"] == ["tests/test_b.py::test_w"]


def test_the_device_tests_are_found_by_their_fixture():
    found = gpu_check.device_tests()
    assert gpu_check.DRY_DEVICE_TEST in found
    assert all(t.startswith("tests/test_") and "::test_" in t for t in found)


def test_the_shell_wrapper_parses():
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    subprocess.run([bash, "-n", str(ROOT / "benchmarks" / "gpu_check.sh")], check=True)
