"""JAX's persistent compilation cache: on by default in the user cache directory, turned off by
DLRUN_COMPILE_CACHE=off, and a run that loads its programs from it gives the same numbers."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dlrun.core.training import compile_cache

from .conftest import CONFIGS


def test_where_the_cache_lives(monkeypatch, tmp_path):
    monkeypatch.delenv("DLRUN_COMPILE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compile_cache.cache_path() == tmp_path / "dlrun" / "jax"
    monkeypatch.setenv("DLRUN_COMPILE_CACHE", str(tmp_path / "elsewhere"))
    assert compile_cache.cache_path() == tmp_path / "elsewhere"
    for off in ("off", "0", "false", ""):
        monkeypatch.setenv("DLRUN_COMPILE_CACHE", off)
        assert compile_cache.cache_path() is None


def train_in_a_fresh_process(tmp_path, run, fake_fmnist_dir, cache):
    """A `dlrun train` of a LeNet in its own process (JAX reads the cache setting once)."""
    env = dict(os.environ, DLRUN_COMPILE_CACHE=cache)
    dlrun = str(Path(sys.executable).parent / "dlrun")
    proc = subprocess.run([dlrun, "train", str(CONFIGS / "lenet.yaml"), "--out", str(tmp_path / run),
                           "--set", f"data.dir={fake_fmnist_dir}", "--set", "trainer.epochs=1", "--set", "trainer.progress=none"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads((tmp_path / run / "summary.json").read_text())


@pytest.mark.slow
def test_a_cached_run_gives_the_same_numbers_and_off_writes_nothing(tmp_path, fake_fmnist_dir):
    cache = tmp_path / "cache"
    first = train_in_a_fresh_process(tmp_path, "first", fake_fmnist_dir, str(cache))
    entries = sorted(p.name for p in cache.rglob("*") if p.is_file())
    assert entries, "the first run left no compiled program in the cache"
    second = train_in_a_fresh_process(tmp_path, "second", fake_fmnist_dir, str(cache))
    metrics = [k for k in first if "/" in k]
    assert metrics and all(first[k] == second[k] for k in metrics)
    assert sorted(p.name for p in cache.rglob("*") if p.is_file()) == entries  # nothing compiled anew
    off = train_in_a_fresh_process(tmp_path, "off", fake_fmnist_dir, "off")
    assert all(off[k] == first[k] for k in metrics)
    assert sorted(p.name for p in cache.rglob("*") if p.is_file()) == entries
