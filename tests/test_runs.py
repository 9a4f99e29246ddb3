"""status.json and `dlrun runs`: a run in every status, listed newest first with its progress,
result and resume command (a run killed with SIGKILL: tests/test_reliability.py)."""

import json
import os
import time

from typer.testing import CliRunner

from dlrun.cli.main import app
from dlrun.core import disk
from dlrun.core.config import load_config
from dlrun.core.report import outputs
from dlrun.core.report.status import mark_started
from dlrun.core.report.status import write_status as mark
from dlrun.experiments import run_config

from .conftest import CONFIGS


def linreg(*overrides):
    return load_config(CONFIGS / "linreg.yaml", ["trainer.progress=none", *overrides])


def listed(directory):
    result = CliRunner().invoke(app, ["runs", str(directory), "--json"])
    assert result.exit_code == 0, result.output
    return {r["name"]: r for r in json.loads(result.output)}


def test_runs_in_every_status(tmp_path):
    runs = tmp_path / "outputs"
    run_config(linreg(), runs / "done")
    time.sleep(1.1)  # start times are kept to the second
    try:
        run_config(linreg("optimizer.lr=100"), runs / "diverged")
    except Exception as err:  # noqa: BLE001
        assert type(err).__name__ == "TrainingDiverged"
    run_config(linreg("trainer.epochs=3"), runs / "stopped", stop_epoch=1)
    # a run that is training now: its status says running and its lock is held
    (runs / "running").mkdir()
    (runs / "running" / "config.yaml").write_text((runs / "done" / "config.yaml").read_text())
    mark_started(runs / "running", 3, resumed=False)
    # a run whose process failed with an error
    (runs / "failed").mkdir()
    (runs / "failed" / "config.yaml").write_text((runs / "done" / "config.yaml").read_text())
    mark(runs / "failed", "failed", error="RuntimeError: out of memory")
    with disk.RunLock(runs / "running"):
        rows = listed(runs)
    assert rows["done"]["status"] == "done" and rows["done"]["epochs"] == rows["done"]["planned"] == 3
    assert rows["done"]["metric"] == "val/loss" and rows["done"]["value"] < 1e-3 and rows["done"]["resume"] == ""
    assert rows["diverged"]["status"] == "diverged" and "non-finite" in rows["diverged"]["error"]
    assert rows["stopped"]["status"] == "stopped" and rows["stopped"]["epochs"] == 1
    assert rows["running"]["status"] == "running"
    assert rows["failed"]["status"] == "failed" and "out of memory" in rows["failed"]["error"]
    order = [r["name"] for r in json.loads(CliRunner().invoke(app, ["runs", str(runs), "--json"]).output)]
    assert order.index("diverged") < order.index("done")  # newest first
    assert listed(runs)["running"]["status"] == "interrupted"  # the lock is free now: nobody trains it


def test_status_json_follows_a_resumed_run(tmp_path):
    run = tmp_path / "r"
    run_config(linreg("trainer.epochs=3"), run, stop_epoch=1)
    started = json.loads((run / "status.json").read_text())["started"]
    run_config(linreg("trainer.epochs=3"), run, resume=True)
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "done" and status["started"] == started and status["pid"] == os.getpid()


def test_the_plain_listing_shows_the_resume_command(tmp_path):
    runs = tmp_path / "outputs"
    run_config(linreg("trainer.epochs=3"), runs / "a", stop_epoch=1)
    mark(runs / "a", "interrupted")
    result = CliRunner().invoke(app, ["runs", str(runs)])
    assert result.exit_code == 0 and "interrupted" in result.output
    assert f"resume: dlrun train --resume {runs / 'a'}" in result.output
    assert CliRunner().invoke(app, ["runs", str(tmp_path / "nowhere")]).exit_code == 2


def test_metrics_csv_is_what_pandas_writes():
    """metrics.csv is written without pandas (start-up time); pandas' to_csv is the reference,
    over rows with ints, NaN, infinities, tiny and huge floats and a column that starts late."""
    import math

    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    for _ in range(20):
        rows = []
        for epoch in range(1, 6):
            row = {"epoch": epoch, "train/loss": float(rng.lognormal(0, 6)), "examples": int(rng.integers(0, 10**9))}
            if epoch > 2:
                row["val/acc"] = float(rng.choice([math.nan, math.inf, -math.inf, rng.random(), 1e-30, 123456789.123]))
            row["seconds"] = float(rng.random())
            rows.append(row)
        expected = pd.DataFrame(rows).to_csv(index=False, float_format="%.8g")
        assert outputs.metrics_csv(rows) == expected
