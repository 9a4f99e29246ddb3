"""Checkpoints, exact resume after SIGKILL and SIGINT, refused config changes, locks,
divergence and write failures."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from dlrun.cli.main import app
from dlrun.core import disk
from dlrun.core.report import outputs
from dlrun.core.training.checkpoint import list_checkpoints

from .conftest import CONFIGS

runner = CliRunner()
DLRUN = [sys.executable, "-c", "from dlrun.cli.main import main; main()"]  # the console entry point


def metrics_without_seconds(run_dir: Path) -> str:
    """metrics.csv as text, minus the wall-clock column (the one thing that cannot repeat)."""
    return pd.read_csv(run_dir / "metrics.csv", dtype=str).drop(columns="seconds").to_csv(index=False)


def train_args(fmnist_dir, out, *extra):
    return [
        "train", str(CONFIGS / "mlp.yaml"), "--out", str(out),
        "--set", f"data.dir={fmnist_dir}", "--set", "model.hidden=[64]", "--set", "model.dropout=0.2",
        "--set", "data.batch_size=8", "--set", "trainer.progress=plain", *extra,
    ]  # fmt: skip


def wait_for_checkpoint(run_dir: Path, proc, minimum: int = 1, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if len(list_checkpoints(run_dir / "checkpoints")) >= minimum:
            return
        time.sleep(0.01)
    raise AssertionError(f"no checkpoint appeared (process exit code {proc.poll()})")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, fake_fmnist_dir):
    """An uninterrupted run of each loop, for the interrupted ones to match."""
    refs = {}
    for loop in ("step", "scan"):
        out = tmp_path_factory.mktemp("ref") / loop
        result = runner.invoke(app, train_args(fake_fmnist_dir, out, "--set", "trainer.epochs=6", "--set", f"trainer.loop={loop}"))
        assert result.exit_code == 0, result.output
        refs[loop] = metrics_without_seconds(out)
    return refs


@pytest.mark.slow
@pytest.mark.parametrize("loop", ["step", "scan"])
def test_sigkill_then_resume_gives_the_same_metrics(tmp_path, fake_fmnist_dir, reference, loop):
    out = tmp_path / "run"
    args = train_args(fake_fmnist_dir, out, "--set", "trainer.epochs=6", "--set", f"trainer.loop={loop}")
    proc = subprocess.Popen(DLRUN + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for_checkpoint(out, proc, minimum=1)
    time.sleep(0.15)  # land somewhere inside a later epoch
    proc.kill()
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    from dlrun.core.report.runs import describe

    killed = describe(out)  # it could not say so: its status.json says running, but its lock is free
    assert killed["status"] == "interrupted" and killed["resume"] == f"dlrun train --resume {out}", killed
    for _ in range(2):  # kill the resumed run too, once
        proc = subprocess.Popen(DLRUN + ["train", "--resume", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if _ == 0:
            time.sleep(4)
            proc.kill()
        proc.wait()
    assert proc.returncode == 0, proc.stderr.read().decode()
    assert metrics_without_seconds(out) == reference[loop]
    assert len(list_checkpoints(out / "checkpoints")) <= 2  # keep_checkpoints


@pytest.mark.slow
def test_sigint_writes_a_checkpoint_and_says_how_to_resume(tmp_path, fake_fmnist_dir, reference):
    out = tmp_path / "run"
    args = train_args(fake_fmnist_dir, out, "--set", "trainer.epochs=6", "--set", "trainer.loop=step")
    proc = subprocess.Popen(DLRUN + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for_checkpoint(out, proc, minimum=1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    assert f"dlrun train --resume {out}" in err.decode()
    assert "Traceback" not in err.decode()
    result = runner.invoke(app, ["train", "--resume", str(out)])
    assert result.exit_code == 0, result.output
    assert metrics_without_seconds(out) == reference["step"]


def test_resume_refuses_a_changed_config_but_allows_more_epochs(tmp_path, fake_fmnist_dir):
    out = tmp_path / "run"
    assert runner.invoke(app, train_args(fake_fmnist_dir, out, "--set", "trainer.epochs=1")).exit_code == 0
    refused = runner.invoke(app, ["train", "--resume", str(out), "--set", "optimizer.lr=0.5", "--set", "model.hidden=[8]"])
    assert refused.exit_code == 2
    assert "model.hidden" in refused.output and "optimizer.lr" in refused.output
    more = runner.invoke(app, ["train", "--resume", str(out), "--set", "trainer.epochs=2"])
    assert more.exit_code == 0, more.output
    assert list(pd.read_csv(out / "metrics.csv")["epoch"]) == [1, 2]


def test_resume_of_something_that_is_not_a_run(tmp_path):
    result = runner.invoke(app, ["train", "--resume", str(tmp_path)])
    assert result.exit_code == 2 and "not a run directory" in result.output


def test_a_locked_run_directory_is_refused(tmp_path, fake_fmnist_dir):
    out = tmp_path / "run"
    out.mkdir()
    with disk.RunLock(out):
        result = runner.invoke(app, train_args(fake_fmnist_dir, out, "--set", "trainer.epochs=1"))
    assert result.exit_code == 2 and "in use by another dlrun process" in result.output
    assert not (out / "metrics.csv").exists()


def test_divergence_keeps_the_last_good_checkpoint(tmp_path):
    out = tmp_path / "run"
    args = ["train", str(CONFIGS / "linreg.yaml"), "--out", str(out), "--set", "optimizer.lr=2.2", "--set", "trainer.epochs=30"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "non-finite at step" in result.output and "optimizer.lr" in result.output
    assert list_checkpoints(out / "checkpoints"), "the epochs before the divergence are checkpointed"
    assert (out / "metrics.csv").exists()


def test_a_full_disk_leaves_no_partial_files(tmp_path, monkeypatch):
    def no_space(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(outputs.os, "fsync", no_space)
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", str(CONFIGS / "linreg.yaml"), "--out", str(out)])
    assert result.exit_code == 1 and "No space left on device" in result.output and "Traceback" not in result.output
    assert [p.name for p in out.iterdir() if p.name != ".lock"] == []


def test_an_output_path_that_cannot_be_a_directory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = runner.invoke(app, ["train", str(CONFIGS / "linreg.yaml"), "--out", str(blocker / "run")])
    assert result.exit_code == 2 and "cannot create run directory" in result.output


def test_batch_larger_than_the_data_is_a_clear_error(tmp_path, fake_fmnist_dir):
    result = runner.invoke(app, train_args(fake_fmnist_dir, tmp_path / "r", "--set", "data.batch_size=5000"))
    assert result.exit_code == 2 and "data.batch_size (5000) is larger than the training set (600 examples)" in result.output


def test_resume_before_the_first_checkpoint_starts_over(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text((CONFIGS / "linreg.yaml").read_text())  # killed before epoch 1 ended
    result = runner.invoke(app, ["train", "--resume", str(out)])
    assert result.exit_code == 0, result.output
    assert list(pd.read_csv(out / "metrics.csv")["epoch"]) == [1, 2, 3]


def _descendants(pid: int) -> set[int]:
    """Every live process below `pid` (Linux /proc)."""
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        try:
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        for c in map(int, children):
            if c not in found:
                found.add(c)
                todo.append(c)
    return found


def assert_gone(workers: set[int], seconds: float) -> None:
    """No process of `workers` is alive `seconds` from now (or sooner)."""
    deadline = time.monotonic() + seconds
    while _alive(workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(workers), f"workers left running: {sorted(_alive(workers))}"


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for p in pids:
        try:
            state = Path(f"/proc/{p}/stat").read_text().split(")")[-1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(p)
    return alive


def _start_long_sweep(tmp_path):
    cmd = [*DLRUN, "sweep", str(CONFIGS / "linreg.yaml"), "--grid", "optimizer.lr=0.001,0.002,0.003,0.004",
           "--no-vectorize", "--workers", "2", "--set", "trainer.epochs=100000", "--set", "trainer.progress=none",
           "--out", str(tmp_path / "sw")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "sw").glob("trials/*/checkpoints/epoch_*")):  # the workers train
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "the sweep's workers did not start training"
        time.sleep(0.2)
    workers = _descendants(proc.pid)
    assert len(workers) >= 2
    return proc, workers


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc")
def test_a_sweeps_workers_die_with_it(tmp_path):
    """SIGKILL of a --workers 2 sweep: no worker is left training 10 s later, even one inside a
    long epoch (it stops at a checkpoint if it can, and is ended after a grace of 5 s if not)."""
    proc, workers = _start_long_sweep(tmp_path)
    proc.kill()
    proc.wait()
    assert_gone(workers, 10)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc")
def test_a_sweeps_workers_inside_a_long_epoch_die_with_it(tmp_path):
    """As above, with each trial inside one epoch of minutes (one program, which a stop
    cannot enter): its workers are ended within 10 s of the sweep's SIGKILL all the same."""
    cmd = [*DLRUN, "sweep", str(CONFIGS / "linreg.yaml"), "--grid", "optimizer.lr=0.001,0.002", "--no-vectorize",
           "--workers", "2", "--set", "data.num_train=20000000", "--set", "data.num_val=10", "--set", "trainer.epochs=3",
           "--set", "trainer.loop=scan", "--set", "trainer.progress=none", "--out", str(tmp_path / "sw")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(list((tmp_path / "sw").glob("trials/*/config.yaml"))) < 2:  # both trials started
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "the sweep's workers did not start"
        time.sleep(0.2)
    time.sleep(4)  # into the first epoch
    workers = _descendants(proc.pid)
    assert not list((tmp_path / "sw").glob("trials/*/checkpoints/epoch_*")), "an epoch ended too soon to test this"
    proc.kill()
    proc.wait()
    assert_gone(workers, 10)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc")
def test_sigterm_stops_a_sweep_and_its_workers_cleanly(tmp_path):
    proc, workers = _start_long_sweep(tmp_path)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert f"dlrun sweep --resume {tmp_path / 'sw'}" in err
    deadline = time.monotonic() + 15  # the workers were stopped and joined; multiprocessing's helper follows
    while _alive(workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(workers), f"left running: {sorted(_alive(workers))}"
    for trial in (tmp_path / "sw" / "trials").iterdir():  # every started trial stopped at a checkpoint
        assert not disk.is_locked(trial)


@pytest.mark.slow
def test_a_stop_at_any_moment_of_start_up_ends_cleanly(tmp_path, fake_fmnist_dir):
    """SIGINT and SIGTERM at random moments from the process start to the first epochs: never a
    crash or a traceback; either the run ends (exit 0) or it says where it stopped and how to
    resume (exit 130), and the resume then finishes it."""
    import random

    rng = random.Random(0)
    for i in range(8):
        out = tmp_path / f"run{i}"
        proc = subprocess.Popen([*DLRUN, *train_args(fake_fmnist_dir, out, "--set", "trainer.epochs=2")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(0.5, 4.0))
        proc.send_signal(signal.SIGINT if i % 2 == 0 else signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode in (0, 130), f"try {i}: exit {proc.returncode}\n{stderr[-2000:]}"
        assert "Traceback" not in stderr and "internal error" not in stderr, stderr[-2000:]
        if proc.returncode == 130:
            assert f"dlrun train --resume {out}" in stderr and "stopping at the next safe point" in stderr
            if (out / "config.yaml").is_file():
                resumed = runner.invoke(app, ["train", "--resume", str(out)])
                assert resumed.exit_code == 0, resumed.output
                assert len(pd.read_csv(out / "metrics.csv")) == 2
