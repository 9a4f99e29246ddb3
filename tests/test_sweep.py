"""Running sweeps: results on disk, failures recorded, resume after a kill, halving, workers, Ray, compare."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from dlrun.cli.main import app
from dlrun.core.sweep import executors

from .conftest import CONFIGS

runner = CliRunner()
DLRUN = [sys.executable, "-c", "from dlrun.cli.main import app; app()"]


def fmnist_sweep(tmp_path, fake_dir, body: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(
        f"base: {CONFIGS / 'mlp.yaml'}\n"
        f"set: {{data.dir: {fake_dir}, data.batch_size: 32, trainer.epochs: 2}}\n" + body
    )
    return path


def statuses(sweep_dir: Path) -> dict[str, str]:
    return {d.name: json.loads((d / "status.json").read_text())["status"] for d in sorted((sweep_dir / "trials").iterdir())}


def test_sweep_writes_one_table_plots_and_a_run_per_trial(tmp_path, fake_fmnist_dir):
    spec = fmnist_sweep(tmp_path, fake_fmnist_dir, "parameters:\n  optimizer.lr: [0.02, 0.2]\n  model.hidden: [[8], [16]]\nseeds: 2\n")
    out = tmp_path / "sweep"
    result = runner.invoke(app, ["sweep", str(spec), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "best: optimizer.lr=" in result.output
    df = pd.read_csv(out / "results.csv")
    assert len(df) == 8 and set(df["status"]) == {"done"}
    assert {"optimizer.lr", "model.hidden", "seed", "final val/acc", "best val/acc", "best epoch", "seconds"} <= set(df.columns)
    for trial in (out / "trials").iterdir():  # each a normal run directory
        assert {"config.yaml", "metrics.csv", "summary.json", "status.json"} <= {p.name for p in trial.iterdir()}
    md = (out / "results.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("| 0.")]
    means = [float(line.split("|")[3].split("+-")[0]) for line in table]
    assert len(table) == 4 and means == sorted(means, reverse=True)  # settings, best first, mean over 2 seeds
    expected = df.groupby(["optimizer.lr", "model.hidden"])["final val/acc"].mean().max()
    assert means[0] == pytest.approx(expected, abs=1e-4)
    for png in ("curves.png", "val_acc_vs_optimizer_lr.png", "val_acc_vs_model_hidden.png", "heatmap.png"):
        assert (out / png).stat().st_size > 1000, png
    summary = json.loads(next((out / "trials").iterdir()).joinpath("summary.json").read_text())
    assert summary["loop"] == "vectorised" and summary["group_size"] == 4  # two hidden sizes: two groups of 4


def test_a_failing_trial_is_recorded_and_the_others_finish(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(f"base: {CONFIGS / 'linreg.yaml'}\nset: {{trainer.epochs: 3}}\nparameters:\n  optimizer.lr: [0.01, 50.0, 0.03]\n")
    out = tmp_path / "sweep"
    result = runner.invoke(app, ["sweep", str(spec), "--out", str(out), "--no-vectorize"])
    assert result.exit_code == 1  # the sweep ends, and says that not everything succeeded
    df = pd.read_csv(out / "results.csv")
    assert df["status"].tolist() == ["done", "failed", "done"]
    assert "non-finite" in df["error"][1]
    assert "trial 001-lr=50-seed=0 failed" in result.output  # reported as it happened
    assert "Failed trials" in (out / "results.md").read_text()


@pytest.mark.slow
def test_resume_after_a_killed_sweep_loses_and_reruns_nothing_finished(tmp_path, fake_fmnist_dir):
    """Kill the sweep once the first group has finished, resume it, and check that the finished
    trials were neither lost nor trained again, and that the rest completed."""
    spec = fmnist_sweep(
        tmp_path, fake_fmnist_dir,
        "parameters:\n  model.hidden: [[4], [512, 512]]\n  optimizer.lr: [0.05, 0.1]\nvectorize: true\n",
    )
    spec.write_text(spec.read_text().replace("trainer.epochs: 2", "trainer.epochs: 40"))
    out = tmp_path / "sweep"
    proc = subprocess.Popen(DLRUN + ["sweep", str(spec), "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = [out / "trials" / "000-hidden=4-lr=0.05-seed=0", out / "trials" / "001-hidden=4-lr=0.1-seed=0"]
    deadline = time.time() + 240
    while not all((d / "status.json").exists() for d in first):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline, "the first group did not finish"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "results.csv").exists()  # it really died before the end
    before = {d: (d / "summary.json").stat().st_mtime_ns for d in first}
    metrics_before = {d: (d / "metrics.csv").read_text() for d in first}
    result = runner.invoke(app, ["sweep", "--resume", str(out)])
    assert result.exit_code == 0, result.output
    assert "2 trials in 1 tasks" in result.output  # only the unfinished group ran
    assert all(s == "done" for s in statuses(out).values())
    for d in first:
        assert (d / "summary.json").stat().st_mtime_ns == before[d]
        assert (d / "metrics.csv").read_text() == metrics_before[d]
    assert len(pd.read_csv(out / "results.csv")) == 4


def test_successive_halving_keeps_the_best_third_at_each_rung(tmp_path, fake_fmnist_dir):
    spec = fmnist_sweep(
        tmp_path, fake_fmnist_dir,
        "parameters:\n  optimizer.lr: loguniform(0.001, 0.5)\ntrials: 9\nscheduler: {name: halving, eta: 3, min_epochs: 1}\n",
    )
    spec.write_text(spec.read_text().replace("trainer.epochs: 2", "trainer.epochs: 3"))
    out = tmp_path / "sweep"
    result = runner.invoke(app, ["sweep", str(spec), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "halving at epoch 1: 3 of 9 trials go on" in result.output
    done, pruned = [], []
    for d in sorted((out / "trials").iterdir()):
        status = json.loads((d / "status.json").read_text())
        acc_at_1 = pd.read_csv(d / "metrics.csv").set_index("epoch")["val/acc"][1]
        epochs = len(pd.read_csv(d / "metrics.csv"))
        (done if status["status"] == "done" else pruned).append((acc_at_1, epochs))
    assert len(done) == 3 and len(pruned) == 6
    assert all(e == 3 for _, e in done) and all(e == 1 for _, e in pruned)  # pruned trials cost one epoch
    assert min(a for a, _ in done) >= max(a for a, _ in pruned)  # the best at the rung went on


@pytest.mark.slow
def test_worker_processes_give_the_results_of_one_process(tmp_path, fake_fmnist_dir):
    spec = fmnist_sweep(tmp_path, fake_fmnist_dir, "parameters:\n  optimizer.lr: [0.05, 0.2]\n  model.hidden: [[8], [16]]\n")
    runs = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        result = runner.invoke(app, ["sweep", str(spec), "--out", str(out), "--workers", str(workers)])
        assert result.exit_code == 0, result.output
        runs[workers] = pd.read_csv(out / "results.csv").sort_values("trial").reset_index(drop=True)
    assert "2 worker(s)" in result.output
    cols = ["final train/loss", "final val/acc"]
    np.testing.assert_allclose(runs[1][cols].to_numpy(), runs[2][cols].to_numpy(), rtol=1e-4, atol=1e-5)


def test_pool_workers_are_limited_to_their_share_of_cores():
    import multiprocessing as mp

    if not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two cores and sched_getaffinity")
    cpus = sorted(os.sched_getaffinity(0))
    ctx = mp.get_context("spawn")
    counter = ctx.Value("i", 0)
    with ctx.Pool(2, initializer=executors._limit_threads, initargs=(counter, cpus, len(cpus) // 2)) as pool:
        seen = pool.map(_affinity, range(8), chunksize=1)
    assert all(len(s) == len(cpus) // 2 for s in seen)


def _affinity(_):
    time.sleep(0.05)
    return sorted(os.sched_getaffinity(0))


def _visible(_):
    time.sleep(0.05)
    return os.environ.get("CUDA_VISIBLE_DEVICES")


def test_pool_workers_each_see_one_gpu(monkeypatch):
    """Trials pack across GPUs: worker k of a pool sees GPU k mod their number only."""
    import multiprocessing as mp

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    gpus = executors.visible_gpus()
    assert gpus == ["3", "5"]
    ctx = mp.get_context("spawn")
    counter = ctx.Value("i", 0)
    with ctx.Pool(2, initializer=executors._limit_threads, initargs=(counter, [0], 1, gpus)) as pool:
        seen = pool.map(_visible, range(6), chunksize=1)
    assert set(seen) == {"3", "5"}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert executors.visible_gpus() == []


@pytest.mark.slow
def test_ray_executor_on_a_local_instance(tmp_path, fake_fmnist_dir):
    """`--executor ray` with no address starts a local Ray instance, sends each group to it as
    a task, and stops it. In a subprocess: Ray takes over the process's output streams."""
    pytest.importorskip("ray")
    spec = fmnist_sweep(tmp_path, fake_fmnist_dir, "parameters:\n  optimizer.lr: [0.05, 0.2]\n  model.hidden: [[8], [16]]\n")
    out = tmp_path / "sweep"
    proc = subprocess.run(DLRUN + ["sweep", str(spec), "--out", str(out), "--executor", "ray", "--workers", "2"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "executor ray" in proc.stdout
    df = pd.read_csv(out / "results.csv")
    assert df["status"].tolist() == ["done"] * 4
    assert set(json.loads((out / "trials" / t / "summary.json").read_text())["loop"] for t in df["trial"]) == {"vectorised"}


def write_run(path: Path, lr: float, accs: list[float], hidden=(256,)) -> Path:
    """A run directory written by hand: what compare must read without training anything."""
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(f"name: r\nseed: 0\noptimizer:\n  lr: {lr}\nmodel:\n  hidden: {list(hidden)}\n")
    pd.DataFrame({"epoch": range(1, len(accs) + 1), "train/loss": [1.0] * len(accs), "val/acc": accs}).to_csv(path / "metrics.csv", index=False)
    (path / "summary.json").write_text(json.dumps({"val/acc": accs[-1], "wall_seconds": 2.5}))
    return path


def test_compare_hand_made_run_directories(tmp_path):
    a = write_run(tmp_path / "a", 0.1, [0.5, 0.7, 0.8])
    b = write_run(tmp_path / "b", 0.3, [0.6, 0.9, 0.85])
    c = write_run(tmp_path / "c", 0.01, [0.3, 0.4, 0.45])
    out = tmp_path / "cmp"
    result = runner.invoke(app, ["compare", str(a), str(b), str(c), "--out", str(out)])
    assert result.exit_code == 0, result.output
    df = pd.read_csv(out / "results.csv")
    assert "optimizer.lr" in df.columns and "model.hidden" not in df.columns  # only what differs
    assert df.set_index("optimizer.lr")["best val/acc"].to_dict() == {0.1: 0.8, 0.3: 0.9, 0.01: 0.45}
    assert df.set_index("optimizer.lr")["best epoch"].to_dict() == {0.1: 3, 0.3: 2, 0.01: 3}
    assert "Best: optimizer.lr=0.3: val/acc 0.8500" in result.output  # final epoch, as the table ranks
    assert (out / "curves.png").stat().st_size > 1000 and (out / "val_acc_vs_optimizer_lr.png").exists()


def test_compare_rejects_a_directory_that_is_not_a_run(tmp_path):
    result = runner.invoke(app, ["compare", str(tmp_path)])
    assert result.exit_code == 2 and "not a run directory" in result.output
