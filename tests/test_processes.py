"""Training over several processes, as a hostile user would start it: a coordinator address that
cannot be, `auto` outside a cluster, a process whose peers never come, a process that cannot
reach process 0, and `trainer.devices` left at 1. Each ends before training with exit 2 and a
message that names the option or setting (and who is missing), within its stated timeout."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dlrun.core.errors import ConfigError
from dlrun.core.training.devices import start_processes

from .conftest import CONFIGS
from .test_devices import free_port

DLRUN = [str(Path(sys.executable).parent / "dlrun"), "train", str(CONFIGS / "linreg.yaml")]
CLUSTER = ("SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK")


def no_cluster_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in CLUSTER and not k.startswith("DLRUN_")}
    return env | {"JAX_PLATFORMS": "cpu", **extra}


def run(args, env=None, timeout=60):
    t0 = time.monotonic()
    proc = subprocess.run([*DLRUN, *args], capture_output=True, text=True, timeout=timeout, env=env or no_cluster_env())
    return proc, time.monotonic() - t0


@pytest.mark.parametrize("address, phrase", [
    ("127.0.0.1:99999", "out of range"),
    ("127.0.0.1:0", "out of range"),
    ("no-such-host.invalid:1234", "cannot be resolved"),
    (":1234", "expected HOST:PORT"),
    ("localhost:", "expected HOST:PORT"),
    ("localhost:12ab", "expected HOST:PORT"),
    ("auto", "no cluster scheduler"),
])
def test_a_coordinator_that_cannot_be_is_a_usage_error_before_anything_starts(tmp_path, address, phrase):
    out = tmp_path / "run"
    proc, seconds = run(["--out", str(out), "--coordinator", address, "--num-processes", "2", "--process-id", "0"])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "--coordinator" in proc.stderr and phrase in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists() and seconds < 30


@settings(max_examples=30, deadline=None)
@given(st.text(max_size=30))
def test_any_malformed_address_is_a_config_error_not_a_crash(address):
    """Whatever is given, `start_processes` either refuses it as a ConfigError naming
    --coordinator, or (a well-formed, resolvable address) is not reached here."""
    host, sep, port = address.rpartition(":")
    if address == "auto" or (sep and host and port.isdigit() and 1 <= int(port) <= 65535):
        return  # well formed: the rendezvous would start
    with pytest.raises(ConfigError, match="--coordinator"):
        start_processes(address, 2, 0, timeout=1)


def test_process_0_whose_peer_never_comes_names_it_after_the_timeout(tmp_path):
    port = free_port()
    proc, seconds = run(["--out", str(tmp_path / "run"), "--coordinator", f"localhost:{port}", "--num-processes", "3",
                         "--process-id", "0", "--peer-timeout", "2"])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "waiting up to 2 s" in proc.stderr and "process(es) 1, 2 of --num-processes 3 had not joined" in proc.stderr
    assert "Traceback" not in proc.stderr and seconds < 30


def test_a_process_that_cannot_reach_process_0_says_so_after_the_timeout(tmp_path):
    proc, seconds = run(["--out", str(tmp_path / "run"), "--coordinator", f"localhost:{free_port()}", "--num-processes", "2",
                         "--process-id", "1", "--peer-timeout", "2"])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "could not reach process 0" in proc.stderr and "--peer-timeout" in proc.stderr and seconds < 30


def wait_for_line(proc, text, timeout=60):
    """Read `proc`'s stderr until a line holds `text` (the process has begun to wait for its peers)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if text in line:
            return
        assert line or proc.poll() is None, f"the process ended first (exit code {proc.poll()})"
    raise AssertionError(f"no line with {text!r}")


def test_a_second_process_with_the_same_rank_is_refused(tmp_path):
    port = free_port()
    env = no_cluster_env(DLRUN_COORDINATOR=f"localhost:{port}", DLRUN_NUM_PROCESSES="3", DLRUN_PEER_TIMEOUT="20")
    start = lambda rank: subprocess.Popen([*DLRUN, "--out", str(tmp_path / "run")], env=env | {"DLRUN_PROCESS_ID": rank},  # noqa: E731
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    host = start("0")
    first = None
    try:
        wait_for_line(host, "waiting up to")
        first = start("1")
        wait_for_line(first, "waiting up to")
        time.sleep(1.0)  # it has joined: its first attempt comes at once, the next 0.2 s later
        twin, _ = run(["--out", str(tmp_path / "run")], env=env | {"DLRUN_PROCESS_ID": "1", "DLRUN_PEER_TIMEOUT": "5"})
        assert twin.returncode == 2 and "--process-id 1 is already taken" in twin.stderr, twin.stderr
    finally:
        for p in (host, first):
            if p is not None:
                p.kill()
                p.communicate(timeout=30)


@pytest.mark.slow
def test_two_processes_with_devices_1_are_refused_naming_the_setting(tmp_path):
    env = no_cluster_env(DLRUN_COORDINATOR=f"localhost:{free_port()}", DLRUN_NUM_PROCESSES="2", DLRUN_PEER_TIMEOUT="60")
    procs = [subprocess.Popen([*DLRUN, "--out", str(tmp_path / "run")], env=env | {"DLRUN_PROCESS_ID": str(i)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    try:
        outs = [p.communicate(timeout=180) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 2, err[-2000:]
        assert "trainer.devices: 1 of the 2 devices of 2 processes" in err and "'all'" in err
        assert "Traceback" not in err
