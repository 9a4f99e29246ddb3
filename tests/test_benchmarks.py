"""The benchmark scripts run at a tiny size, so that they cannot rot (their figures are not checked)."""

import json
import subprocess
import sys

from .conftest import ROOT


def test_sweep_benchmark_runs_and_writes_its_figures(tmp_path, fake_fmnist_dir):
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/sweep.py"), "--models", "softmax", "--epochs", "1", "--small",
         "--data-dir", str(fake_fmnist_dir), "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "trials/s" in proc.stdout and "ratio" in proc.stdout
    (result,) = out.glob("sweep-*.json")
    figures = json.loads(result.read_text())["models"]["softmax"]
    assert figures["trials"] == 4 and figures["ratio"] > 0 and figures["vectorised_trials_per_s"] > 0
