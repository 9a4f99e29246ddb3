"""Data parallel training (D2L 12.5-12.6) on 4 virtual CPU devices: the metrics equal the one-device
run's to float32 reduction order, for the step loop (an MLP with dropout) and the scan loop
(BN-LeNet, with autodiff's and the written-out batch-norm gradient: batch statistics over the
whole batch); a resumed 4-device run equals an
uninterrupted one; two processes on localhost equal one; bad device requests are config errors."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from dlrun.core.config import TrainerConfig
from dlrun.core.errors import ConfigError
from dlrun.core.training.devices import resolve

SCRIPT = textwrap.dedent("""
    import json, sys
    import jax
    from dlrun.core.config import load_config
    from dlrun.core.training.train import train

    base, out = sys.argv[1], sys.argv[2]
    assert len(jax.devices()) == 4, jax.devices()
    common = ["trainer.progress=none", "trainer.epochs=3", "data.batch_size=32"]
    runs = {
        "mlp_dropout_step": ["model={name: mlp, hidden: [32], dropout: 0.2}", "trainer.loop=step"],
        "bn_lenet_scan": ["model={name: bn_lenet, padding: 2}", "trainer.loop=scan", "optimizer.lr=0.3"],
        "bn_lenet_fused_scan": ["model={name: bn_lenet, padding: 2, batch_norm: fused}", "trainer.loop=scan", "optimizer.lr=0.3"],
    }
    result = {}
    for name, overrides in runs.items():
        for devices in (1, 4):
            cfg = load_config(base, common + overrides + [f"trainer.devices={devices}"])
            result[f"{name}/{devices}"] = train(cfg, f"{out}/{name}-{devices}", plot=False).rows
    # a 4-device run stopped after epoch 2 and resumed equals one never stopped
    cfg = load_config(base, common + runs["mlp_dropout_step"] + ["trainer.devices=4"])
    train(cfg, f"{out}/resumed", plot=False, stop_epoch=2)
    result["resumed"] = train(cfg, f"{out}/resumed", plot=False, resume=True).rows
    json.dump(result, open(f"{out}/rows.json", "w"))
""")


@pytest.fixture(scope="module")
def rows(tmp_path_factory, fake_fmnist_dir):
    out = tmp_path_factory.mktemp("devices")
    base = out / "base.yaml"
    base.write_text(f"name: dp\ndata: {{name: fashion_mnist, dir: {fake_fmnist_dir}}}\noptimizer: {{lr: 0.1}}\n")
    env = dict(os.environ, XLA_FLAGS=os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(base), str(out)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "rows.json").read_text())


def metrics(rows):
    return np.array([[r[k] for k in ("train/loss", "train/acc", "val/loss", "val/acc")] for r in rows])


@pytest.mark.parametrize("run", ["mlp_dropout_step", "bn_lenet_scan", "bn_lenet_fused_scan"])
def test_four_devices_equal_one(rows, run):
    one, four = metrics(rows[f"{run}/1"]), metrics(rows[f"{run}/4"])
    np.testing.assert_allclose(four, one, rtol=2e-4, atol=2e-5)
    assert one[-1, 0] < one[0, 0]  # it trained


def test_resumed_four_device_run_equals_uninterrupted(rows):
    np.testing.assert_array_equal(metrics(rows["resumed"]), metrics(rows["mlp_dropout_step/4"]))


def test_bad_device_requests_are_config_errors():
    with pytest.raises(ConfigError, match=r"batch_size \(10\) does not divide evenly over 3 devices"):
        resolve(3, 10)
    with pytest.raises(ConfigError, match="64 devices asked for"):
        resolve(64, 64)
    assert resolve(1, 7) is None
    with pytest.raises(ValueError, match="at least 1"):
        TrainerConfig(devices=0)
    assert TrainerConfig(devices="all").devices == "all"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_on_localhost_equal_one(tmp_path, fake_fmnist_dir):
    """`dlrun train --coordinator` with 2 processes of 2 virtual CPU devices each (CPU collectives
    over localhost): metrics.csv equals a single process's with the same global batch; only
    process 0 writes the run directory, and the other leaves no scratch directory behind."""
    import pandas as pd

    base = tmp_path / "base.yaml"
    base.write_text(f"name: mp\ndata: {{name: fashion_mnist, dir: {fake_fmnist_dir}, batch_size: 32}}\n"
                    "model: {name: mlp, hidden: [32], dropout: 0.2}\noptimizer: {lr: 0.1}\n"
                    "trainer: {epochs: 2, progress: plain}\n")
    dlrun = [str(Path(sys.executable).parent / "dlrun"), "train", str(base)]
    single = subprocess.run([*dlrun, "--out", str(tmp_path / "single")], capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-2000:]
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = dict(os.environ, XLA_FLAGS=os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu",
               TMPDIR=str(scratch), DLRUN_COORDINATOR=f"localhost:{free_port()}", DLRUN_NUM_PROCESSES="2")
    procs = [subprocess.Popen([*dlrun, "--out", str(tmp_path / "multi"), "--set", "trainer.devices=all"],
                              env=env | {"DLRUN_PROCESS_ID": str(i)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(2)]
    try:
        outs = [p.communicate(timeout=240) for p in procs]
    finally:  # a process whose peer died waits for it forever: never leave one behind
        for p in procs:
            p.kill()
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    cols = ["train/loss", "train/acc", "val/loss", "val/acc"]
    one = pd.read_csv(tmp_path / "single" / "metrics.csv")[cols].to_numpy()
    two = pd.read_csv(tmp_path / "multi" / "metrics.csv")[cols].to_numpy()
    np.testing.assert_allclose(two, one, rtol=2e-4, atol=2e-5)
    assert list(scratch.iterdir()) == []
