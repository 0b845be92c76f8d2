"""``benchmarks/run.py --quick`` and ``benchmarks/shd_scale.py memory|data-time --quick`` run to the end and
write the documented JSON (no timing is checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_quick_benchmark_writes_valid_json(tmp_path):
    pytest.importorskip("spikingjelly.activation_based.learning.online_learning")
    out = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert {"meta", "methods", "floor", "sweeps", "memory", "cold_start", "targets"} <= set(res)
    assert res["meta"]["quick"] is True and res["meta"]["threads"] == 1
    methods = {(r["net"], r["method"]) for r in res["methods"]}
    assert methods == {("B", m) for m in ("fptt", "fptt_dual", "ottt_o", "ottt_a", "sltt", "sltt_k", "bptt")}
    for row in res["methods"]:
        assert {"eager"} <= set(row["seconds"]) and "ratio_eager" in row and "reference" in row
        assert ("sj" in row["seconds"]) == (row["method"] != "fptt_dual")
    assert res["floor"]["seconds"] > 0
    assert res["sweeps"][0]["K"] == 32 and "speedup" in res["sweeps"][0]
    assert {p["method"] for p in res["memory"]} == {"fptt", "bptt"}
    assert all(p["peak_bytes"] is None or p["peak_bytes"] > 0 for p in res["memory"])
    assert {t["key"] for t in res["targets"]} >= {"fptt_A_best_vs_sj", "sweep_B_speedup", "cold_start_s"}
    assert "Targets" in proc.stdout


def _shd_scale(part: str, out: Path) -> subprocess.CompletedProcess:
    script = ROOT / "benchmarks" / "shd_scale.py"
    return subprocess.run([sys.executable, str(script), part, "--quick", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)


@pytest.mark.slow
def test_shd_scale_memory_quick_writes_valid_json(tmp_path):
    out = tmp_path / "memory.json"
    proc = _shd_scale("memory", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["meta"]["quick"] is True and res["meta"]["threads"] == 1 and res["meta"]["part"] == "memory"
    assert res["units"] == 700 and len(res["Ts"]) >= 2
    assert {(p["algo"], p["T"]) for p in res["points"]} == {(a, T) for a in res["learners"] for T in res["Ts"]}
    for p in res["points"]:
        assert p["model"] == "srnn"
        assert p["peak_bytes"] is None or (p["peak_bytes"] > 0 and p["growth_mib"] is not None)
    fptt = next(p for p in res["points"] if p["algo"] == "fptt")
    assert fptt["options"] == "window 8"  # the events default, from the registry
    assert [r["algo"] for r in res["rows"]] == res["learners"]
    assert all({"growth_mib", "growth_mib_run", "difference_mib", "ratio"} <= set(r) for r in res["rows"])
    assert "| learner |" in proc.stdout


@pytest.mark.slow
def test_shd_scale_data_time_quick_writes_valid_json(tmp_path):
    out = tmp_path / "data_time.json"
    proc = _shd_scale("data-time", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["meta"]["quick"] is True and res["meta"]["threads"] == 1 and res["meta"]["part"] == "data-time"
    assert res["units"] == 700 and res["train_samples"] >= res["generated_samples"]
    assert res["batches_per_epoch"] == -(-res["train_samples"] // res["batch"])
    assert res["data_s_per_epoch"] > 0 and res["data_over_compute"] > 0
    compute = res["compute"]
    assert compute["algo"] == "fptt" and compute["model"] == "srnn" and compute["measured_batches"] >= 1
    assert compute["s_per_epoch_estimated"] > 0
    assert "data / compute" in proc.stdout


@pytest.mark.slow
def test_shd_learning_quick_trains_from_generated_shd_files(tmp_path):
    out = tmp_path / "learning.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "shd_learning.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["meta"]["quick"] is True and res["meta"]["threads"] == 1
    rows = res["rows"]
    assert set(rows) == {"chance", "time ignored", "fptt", "bptt"}
    assert rows["chance"]["test_accuracy"] == 1 / res["meta"]["data"]["classes"]
    for algo in ("fptt", "bptt"):  # the command line's defaults on shd:DIR, as the table's runs
        assert rows[algo]["config"]["algo"] == algo and rows[algo]["config"]["model"] == "srnn"
        assert rows[algo]["config"]["data"].startswith("shd:")
        assert rows[algo]["estimated_real_shd_epoch_s"] > rows[algo]["time_per_epoch_s"] > 0
    assert "| learner |" in proc.stdout
