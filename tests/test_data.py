"""IDX reader, data-directory search and the data sets."""

import gzip

import numpy as np
import pytest

from dlrun.core.config import FashionMNISTData, SyntheticRegressionData
from dlrun.core.data import DataError
from dlrun.core.data import files as datadir
from dlrun.core.data.fashion_mnist import fashion_mnist
from dlrun.core.data.idx import IDXError, parse_idx, read_idx, write_idx
from dlrun.core.data.synthetic import synthetic_regression

from .conftest import write_fake_fashion_mnist


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32])
def test_idx_round_trip(tmp_path, suffix, dtype):
    array = (np.arange(2 * 3 * 4) % 200).astype(dtype).reshape(2, 3, 4)
    write_idx(tmp_path / f"a.idx{suffix}", array)
    out = read_idx(tmp_path / f"a.idx{suffix}")
    assert out.dtype == array.dtype and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, array)


def test_idx_header_is_parsed_big_endian():
    raw = bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(6))
    np.testing.assert_array_equal(parse_idx(raw), [[0, 1, 2], [3, 4, 5]])


def test_idx_errors_name_the_file(tmp_path):
    good = bytes([0, 0, 0x08, 1, 0, 0, 0, 4]) + bytes(4)
    cases = {
        "magic.idx": b"\x12\x34" + good[2:],
        "type.idx": bytes([0, 0, 0x42]) + good[3:],
        "short.idx": good[:6],
        "truncated.idx": good[:-1],
        "long.idx": good + b"\x00",
    }
    for name, raw in cases.items():
        (tmp_path / name).write_bytes(raw)
        with pytest.raises(IDXError, match=name):
            read_idx(tmp_path / name)
    (tmp_path / "cut.gz").write_bytes(gzip.compress(good)[:-6])
    with pytest.raises(IDXError, match="cut.gz: corrupt or truncated gzip"):
        read_idx(tmp_path / "cut.gz")


def test_fashion_mnist_reads_the_configured_directory(fake_fmnist_dir):
    data = fashion_mnist(FashionMNISTData(dir=str(fake_fmnist_dir), num_train=100), seed=0)
    assert data.x_train.shape == (100, 28, 28, 1) and data.x_val.shape == (200, 28, 28, 1)
    assert data.x_train.dtype == np.float32 and 0 <= data.x_train.min() and data.x_train.max() <= 1
    assert data.y_train.dtype == np.int32 and data.num_classes == 10
    assert len(data.label_names) == 10 and data.label_names[9] == "ankle boot"


def test_fashion_mnist_stays_28x28_in_memory_when_resized(fake_fmnist_dir):
    """`resize` happens per batch on the device (core/data/pipeline.py), not in the loader."""
    data = fashion_mnist(FashionMNISTData(dir=str(fake_fmnist_dir), resize=96, num_train=8, num_val=8), seed=0)
    assert data.x_train.shape == (8, 28, 28, 1) and data.x_val.shape == (8, 28, 28, 1)


def test_fashion_mnist_rejects_wrong_files(tmp_path):
    d = write_fake_fashion_mnist(tmp_path / "d", 20, 10)
    write_idx(d / "train-labels-idx1-ubyte.gz", np.zeros((20, 2), np.uint8))  # labels with 2 dims
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz: expected labels"):
        fashion_mnist(FashionMNISTData(dir=str(d)), seed=0)
    write_idx(d / "train-labels-idx1-ubyte.gz", np.zeros(19, np.uint8))  # one label short
    with pytest.raises(DataError, match="20 images but 19 labels"):
        fashion_mnist(FashionMNISTData(dir=str(d)), seed=0)


def test_search_order_is_config_env_cache_system(tmp_path, monkeypatch):
    dirs = {name: tmp_path / name for name in ("cfg", "env", "cache", "system")}
    for d in dirs.values():
        d.mkdir()
        (d / "f.txt").write_text(d.name)
    monkeypatch.setenv("DLRUN_DATA_DIR", str(dirs["env"]))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    (tmp_path / "xdg").mkdir()
    (tmp_path / "xdg" / "dlrun").symlink_to(dirs["cache"])
    remote = datadir.RemoteFile("f.txt", "http://invalid/f.txt", "0" * 40)
    order = []
    for name in ("cfg", "env", "cache", "system"):
        found = datadir.find_or_fetch(remote, dirs["cfg"], (str(dirs["system"]),))
        order.append(found.read_text())
        found.unlink()
    assert order == ["cfg", "env", "cache", "system"]


def test_missing_file_offline_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.delenv("DLRUN_DATA_DIR", raising=False)
    monkeypatch.setattr("dlrun.core.data.fashion_mnist.FASHION_MNIST_SYSTEM_DIR", str(tmp_path / "not-installed"))
    with pytest.raises(datadir.DataNotFoundError) as err:
        fashion_mnist(FashionMNISTData(dir=str(tmp_path)), seed=0)
    message = str(err.value)
    assert "train-images-idx3-ubyte.gz" in message and str(tmp_path) in message
    assert "DLRUN_DATA_DIR" in message and "apt-get install dataset-fashion-mnist" in message
    assert "http://fashion-mnist" in message


def test_download_verifies_sha1(tmp_path):
    src = tmp_path / "src.txt"
    src.write_text("hello")
    good = datadir.RemoteFile("x.txt", src.as_uri(), "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d")
    assert datadir.download(good, tmp_path / "into").read_text() == "hello"
    bad = datadir.RemoteFile("y.txt", src.as_uri(), "0" * 40)
    with pytest.raises(OSError, match="sha1 mismatch"):
        datadir.download(bad, tmp_path / "into")
    assert sorted(p.name for p in (tmp_path / "into").iterdir()) == ["x.txt"]  # nothing half-written


def test_download_extracts_a_zip_member_after_checking_the_archive(tmp_path):
    import hashlib
    import zipfile

    archive = tmp_path / "pairs.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("pairs/pairs.txt", "go .\tva !\n")
    sha1 = hashlib.sha1(archive.read_bytes()).hexdigest()
    remote = datadir.RemoteFile("pairs/pairs.txt", archive.as_uri(), sha1, member="pairs/pairs.txt")
    got = datadir.download(remote, tmp_path / "into")
    assert got == tmp_path / "into" / "pairs" / "pairs.txt" and got.read_text() == "go .\tva !\n"
    missing = datadir.RemoteFile("other.txt", archive.as_uri(), sha1, member="pairs/other.txt")
    with pytest.raises(OSError, match="no member pairs/other.txt"):
        datadir.download(missing, tmp_path / "into2")
    assert not (tmp_path / "into2" / "other.txt").exists()


def test_synthetic_regression_follows_its_definition():
    cfg = SyntheticRegressionData(noise=0.0, num_train=50, num_val=30)
    data = synthetic_regression(cfg, seed=1)
    assert data.x_train.shape == (50, 2) and data.y_val.shape == (30, 1)
    np.testing.assert_allclose(data.y_train[:, 0], data.x_train @ np.array([2, -3.4]) + 4.2, rtol=1e-4, atol=1e-5)
    again = synthetic_regression(cfg, seed=1)
    np.testing.assert_array_equal(data.x_train, again.x_train)
    assert not np.array_equal(synthetic_regression(cfg, seed=2).x_train, data.x_train)


def test_decoded_files_are_cached_under_their_checksum(tmp_path, monkeypatch):
    """The IDX files are parsed once: the decoded arrays are kept under the sha1 of each file's
    bytes, so a changed file is decoded anew, and the cached arrays equal the decoded ones."""
    from dlrun.core.config import FashionMNISTData
    from dlrun.core.data.fashion_mnist import fashion_mnist

    from .conftest import write_fake_fashion_mnist

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DLRUN_DATA_CACHE", raising=False)
    data_dir = write_fake_fashion_mnist(tmp_path / "fm", n_train=50, n_val=20)
    first = fashion_mnist(FashionMNISTData(dir=str(data_dir)), 0)
    entries = sorted((tmp_path / "cache" / "dlrun" / "arrays").glob("*.npy"))
    assert len(entries) == 4
    again = fashion_mnist(FashionMNISTData(dir=str(data_dir)), 0)
    np.testing.assert_array_equal(again.x_train, first.x_train)
    np.testing.assert_array_equal(again.y_val, first.y_val)
    write_fake_fashion_mnist(data_dir, n_train=50, n_val=20, seed=1)  # new contents, same names
    changed = fashion_mnist(FashionMNISTData(dir=str(data_dir)), 0)
    assert not np.array_equal(changed.x_train, first.x_train)
    assert len(list((tmp_path / "cache" / "dlrun" / "arrays").glob("*.npy"))) == 8
    monkeypatch.setenv("DLRUN_DATA_CACHE", "off")
    np.testing.assert_array_equal(fashion_mnist(FashionMNISTData(dir=str(data_dir)), 0).x_train, changed.x_train)
