"""CIFAR-10 from the python-pickle batches of `cifar-10-python.tar.gz` (D2L 13.1.2).

The archive holds `cifar-10-batches-py/data_batch_1` .. `data_batch_5` (the 50,000 training
images), `test_batch` (10,000) and `batches.meta` (the class names). Each batch is a pickled dict
(written by Python 2) with `data`, a (10000, 3072) uint8 array of rows that are the red, green
and blue 32x32 planes, and `labels`, a list of ints in 0..9. The batches are read straight from
the archive, with an unpickler that builds nothing but dicts, lists, strings, numbers and numpy
arrays, so a damaged or hostile file cannot run code.
"""

from __future__ import annotations

import io
import pickle
import tarfile
import warnings
from pathlib import Path

import numpy as np

from ..config import CIFAR10Data
from ..errors import DataError
from .dataset import Dataset
from .files import RemoteFile, cached_array, find_or_fetch

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_FILE = "cifar-10-python.tar.gz"
# The page https://www.cs.toronto.edu/~kriz/cifar.html publishes the archive's md5
# (c58f30108f718f92721af3b95e74349a), not its sha1; no sha1 could be established without the
# file, so none is pinned: a download is refused by the sha1 check until one is written here.
CIFAR10_SHA1 = "unknown (md5 c58f30108f718f92721af3b95e74349a)"
CIFAR10_LABELS = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
# what the batches' pickles may build: numpy arrays and their dtypes, and bytes (Python 3
# writes bytes at protocol 2 as `_codecs.encode(str, "latin1")`), nothing else
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}  # fmt: skip


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"a CIFAR-10 batch may hold only arrays and plain values, found {module}.{name}")
        with warnings.catch_warnings():  # numpy 2 reads numpy.core under a deprecation warning
            warnings.simplefilter("ignore", DeprecationWarning)
            return super().find_class(module, name)


def read_batch(data: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch -> images (n, 32, 32, 3) uint8 and labels (n,) int32.

    Raises:
        DataError: naming `where` and what was expected.
    """
    try:
        batch = _BatchUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as err:  # noqa: BLE001 - whatever a damaged pickle raises, say which file
        raise DataError(f"{where}: not a CIFAR-10 batch ({type(err).__name__}: {err})") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        keys = sorted(k.decode() if isinstance(k, bytes) else str(k) for k in batch) if isinstance(batch, dict) else type(batch).__name__
        raise DataError(f"{where}: expected a dict with 'data' and 'labels', found {keys}")
    rows, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
    if rows.dtype != np.uint8 or rows.ndim != 2 or rows.shape[1] != 3 * 32 * 32:
        raise DataError(f"{where}: 'data' must be uint8 rows of 3072 values (3 planes of 32x32), found {rows.shape} of {rows.dtype}")
    if labels.shape != (len(rows),):
        raise DataError(f"{where}: {len(rows)} images but {labels.size} labels")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{where}: labels must lie in 0..9, found {labels.min()}..{labels.max()}")
    return rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels.astype(np.int32)


def read_archive(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The archive's training and test images and labels: {"train": (x, y), "val": (x, y)}."""
    try:
        with tarfile.open(path, "r:gz") as tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
            missing = [name for name in (*TRAIN_BATCHES, TEST_BATCH) if name not in members]
            if missing:
                raise DataError(f"{path}: the archive has no {', '.join(missing)} (expected cifar-10-batches-py/...)")
            parts = {name: read_batch(tar.extractfile(members[name]).read(), f"{path}:{members[name].name}")
                     for name in (*TRAIN_BATCHES, TEST_BATCH)}
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DataError(f"{path}: not a readable .tar.gz ({err})") from None
    train = [parts[name] for name in TRAIN_BATCHES]
    return {"train": (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train])), "val": parts[TEST_BATCH]}


def cifar10(cfg: CIFAR10Data, seed: int) -> Dataset:
    """The official 50,000/10,000 split, scaled to [0, 1], at 32x32x3 (D2L 13.1.2)."""
    remote = RemoteFile(CIFAR10_FILE, CIFAR10_URL, CIFAR10_SHA1)
    path = find_or_fetch(remote, cfg.dir, hint="\nThe archive's md5 is c58f30108f718f92721af3b95e74349a.")
    parsed: dict = {}

    def part(split: str, index: int):
        def decode(p: Path) -> np.ndarray:
            if not parsed:
                parsed.update(read_archive(p))
            return parsed[split][index]
        return cached_array(path, decode, f"cifar10-{split}-{'xy'[index]}")  # the archive is parsed once

    (x_train, y_train), (x_val, y_val) = ((part(s, 0), part(s, 1)) for s in ("train", "val"))
    x_train, y_train = x_train[: cfg.num_train], y_train[: cfg.num_train]
    x_val, y_val = x_val[: cfg.num_val], y_val[: cfg.num_val]
    return Dataset(_to_float(x_train), y_train.astype(np.int32), _to_float(x_val), y_val.astype(np.int32),
                   num_classes=10, label_names=CIFAR10_LABELS)


def _to_float(images: np.ndarray) -> np.ndarray:
    out = np.empty(images.shape, np.float32)
    np.divide(images, np.float32(255), out=out, dtype=np.float32)
    return out
