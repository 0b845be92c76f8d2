"""``benchmarks/run.py --quick`` runs to the end and writes the documented JSON (no timing is checked)."""

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
