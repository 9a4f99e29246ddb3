"""Shared fixtures. Tests never download: DLRUN_OFFLINE is set for the whole session."""

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

os.environ["DLRUN_OFFLINE"] = "1"
# The suite checks what programs compute, not how fast they run: at XLA's default, LLVM's optimisation of the CPU
# kernels is most of a test's compile time (googlenet_cpu's train step: 87 s against 35 s at level 0, on 2 cores)
# while the kernels it speeds up run for milliseconds at the tests' sizes. Its subprocesses inherit it.
# DLRUN_TEST_XLA_DEFAULT=1 compiles as users' runs do.
if not os.environ.get("DLRUN_TEST_XLA_DEFAULT") and "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()
# one compilation cache for the whole session (and its subprocesses): tests that train the same
# programs compile them once; the per-test cache directories below would otherwise hide it
os.environ.setdefault("DLRUN_COMPILE_CACHE", tempfile.mkdtemp(prefix="dlrun-test-compile-cache-"))
# oneDNN's convolution wrapper, compiled once for all the tests' processes (the library's name is a
# digest of what it is built from, so a stale one is never picked up)
os.environ.setdefault("DLRUN_KERNEL_CACHE", str(Path(tempfile.gettempdir()) / f"dlrun-test-kernels-{os.getuid()}"))

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
REAL_FASHION_MNIST = [
    Path(os.environ["DLRUN_DATA_DIR"]) if os.environ.get("DLRUN_DATA_DIR") else None,
    Path("/usr/share/datasets/fashion-mnist"),
]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Point the user cache at an empty directory so that no test depends on it."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


def numeric_grad(f, x, eps=1e-6):
    """Central finite differences of a scalar NumPy function, in float64."""
    x = np.asarray(x, np.float64)
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        d = np.zeros_like(x)
        d[i] = eps
        g[i] = (f(x + d) - f(x - d)) / (2 * eps)
    return g


@pytest.fixture
def key():
    import jax

    return jax.random.PRNGKey(0)


def write_fake_fashion_mnist(directory: Path, n_train: int = 600, n_val: int = 200, seed: int = 0) -> Path:
    """Four IDX files shaped like Fashion-MNIST whose classes are learnable: class c lights up
    a 4-pixel-high band at row 2 * c + 4, on top of noise."""
    from dlrun.core.data.idx import write_idx

    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_val)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 80, (n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(labels):
            images[i, 2 * c + 4 : 2 * c + 8, 4:24] = 220
        write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return directory


@pytest.fixture(scope="session")
def fake_fmnist_dir(tmp_path_factory) -> Path:
    return write_fake_fashion_mnist(tmp_path_factory.mktemp("fmnist"))


@pytest.fixture(scope="session")
def real_fmnist_dir() -> Path:
    for d in REAL_FASHION_MNIST:
        if d is not None and (d / "train-images-idx3-ubyte.gz").is_file():
            return d
    pytest.skip("the real Fashion-MNIST files are not installed (apt-get install dataset-fashion-mnist)")


@pytest.fixture(scope="session")
def d2l_data_dir() -> Path:
    """The directory holding the small D2L data files (timemachine.txt, fra-eng/fra.txt):
    $DLRUN_DATA_DIR, or the shared copy beside the checkout; tests needing it skip otherwise."""
    for d in (os.environ.get("DLRUN_DATA_DIR"), ROOT.parent / "shared" / "data"):
        if d and (Path(d) / "timemachine.txt").is_file():
            return Path(d)
    pytest.skip("timemachine.txt not found: point DLRUN_DATA_DIR at the directory holding the D2L data files")
