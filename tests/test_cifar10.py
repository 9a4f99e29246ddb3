"""The CIFAR-10 loader (D2L 13.1.2) on a tiny archive in the real format: a .tar.gz of pickled
batches (dicts with b"data" rows of three 32x32 planes and b"labels"), as `cifar-10-python.tar.gz`
holds them."""

import io
import pickle
import tarfile

import numpy as np
import pytest

from dlrun.core.config import CIFAR10Data, validate
from dlrun.core.data import cifar10 as C
from dlrun.core.data.registry import load_dataset
from dlrun.core.errors import DataError, DataNotFoundError


def batch(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {b"batch_label": b"a batch", b"labels": rng.integers(0, 10, n).tolist(),
            b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8), b"filenames": [b"x.png"] * n}


def write_archive(path, batches: dict, members=None):
    """A .tar.gz holding cifar-10-batches-py/<name> for each pickled batch (protocol 2, the
    format the real files were written in)."""
    with tarfile.open(path, "w:gz") as tar:
        for name, content in batches.items():
            if members is not None and name not in members:
                continue
            data = content if isinstance(content, bytes) else pickle.dumps(content, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def archive_batches():
    names = [*C.TRAIN_BATCHES, C.TEST_BATCH]
    out = {name: batch(3, i) for i, name in enumerate(names)}
    out["batches.meta"] = {b"label_names": [name.encode() for name in C.CIFAR10_LABELS]}
    return out


def test_reads_every_batch_as_hwc_rgb_in_order(tmp_path, archive_batches):
    write_archive(tmp_path / C.CIFAR10_FILE, archive_batches)
    data = C.cifar10(CIFAR10Data(dir=str(tmp_path)), seed=0)
    assert data.x_train.shape == (15, 32, 32, 3) and data.x_val.shape == (3, 32, 32, 3) and data.num_classes == 10
    rows = np.concatenate([archive_batches[name][b"data"] for name in C.TRAIN_BATCHES])
    labels = [label for name in C.TRAIN_BATCHES for label in archive_batches[name][b"labels"]]
    for i in (0, 7, 14):  # pixel (r, c) of channel k is entry k * 1024 + r * 32 + c of the row
        for r, c, k in ((0, 0, 0), (5, 17, 1), (31, 2, 2)):
            assert data.x_train[i, r, c, k] == pytest.approx(rows[i, k * 1024 + r * 32 + c] / 255, abs=1e-7)
    np.testing.assert_array_equal(data.y_train, labels)
    np.testing.assert_array_equal(data.y_val, archive_batches[C.TEST_BATCH][b"labels"])
    assert data.label_names == C.CIFAR10_LABELS and data.x_train.dtype == np.float32
    cfg = validate({"name": "c", "data": {"name": "cifar10", "dir": str(tmp_path), "num_train": 4, "num_val": 2, "batch_size": 2}}, "test")
    small = load_dataset(cfg.data, 0)  # through the registry; parsed again from the cache
    np.testing.assert_array_equal(small.x_train, data.x_train[:4])
    assert small.x_val.shape == (2, 32, 32, 3)


class Hostile:
    def __reduce__(self):
        import os

        return (os.system, ("touch pwned",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path, archive_batches, monkeypatch):
    monkeypatch.chdir(tmp_path)
    archive_batches["data_batch_3"] = pickle.dumps({b"data": Hostile(), b"labels": []}, protocol=2)
    write_archive(tmp_path / C.CIFAR10_FILE, archive_batches)
    with pytest.raises(DataError, match=r"data_batch_3: not a CIFAR-10 batch .*posix.system|data_batch_3: not a CIFAR-10 batch .*os.system"):
        C.cifar10(CIFAR10Data(dir=str(tmp_path)), seed=0)
    assert not (tmp_path / "pwned").exists()


def test_damaged_archives_are_named_with_what_was_expected(tmp_path, archive_batches):
    write_archive(tmp_path / C.CIFAR10_FILE, archive_batches, members={*C.TRAIN_BATCHES})
    with pytest.raises(DataError, match="has no test_batch"):
        C.cifar10(CIFAR10Data(dir=str(tmp_path)), seed=0)
    archive_batches["data_batch_2"][b"data"] = np.zeros((3, 100), np.uint8)
    write_archive(tmp_path / C.CIFAR10_FILE, archive_batches)
    with pytest.raises(DataError, match=r"data_batch_2: 'data' must be uint8 rows of 3072"):
        C.cifar10(CIFAR10Data(dir=str(tmp_path)), seed=0)
    (tmp_path / C.CIFAR10_FILE).write_bytes(b"not a tar")
    with pytest.raises(DataError, match="not a readable .tar.gz"):
        C.cifar10(CIFAR10Data(dir=str(tmp_path)), seed=0)
    with pytest.raises(DataError, match="labels must lie in 0..9"):
        C.read_batch(pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]}, protocol=2), "b")


def test_a_missing_archive_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.delenv("DLRUN_DATA_DIR", raising=False)
    with pytest.raises(DataNotFoundError, match=r"cifar-10-python.tar.gz not found(.|\n)*www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"):
        C.cifar10(CIFAR10Data(dir=str(tmp_path / "empty")), seed=0)
