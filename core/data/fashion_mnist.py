"""Fashion-MNIST from its four original IDX files (D2L 3.5)."""

from __future__ import annotations

import numpy as np

from ..config import FashionMNISTData
from ..errors import DataError
from .dataset import Dataset
from .files import RemoteFile, cached_array, find_or_fetch
from .idx import IDXError, read_idx

FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_MNIST_SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_LABELS = (
    "t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot",
)  # fmt: skip
# sha1 of the gunzipped IDX bytes (the same for the upstream files and Debian's recompressed copies)
FASHION_MNIST_FILES = {
    "train_images": ("train-images-idx3-ubyte.gz", "b9bd999c0106c9b8b4b0cefce58c9a6060f27095", 0x803),
    "train_labels": ("train-labels-idx1-ubyte.gz", "4bccf37222e01638381eaa326bf730337a597267", 0x801),
    "val_images": ("t10k-images-idx3-ubyte.gz", "880056926db704f9f713097915f99da346f5b1d1", 0x803),
    "val_labels": ("t10k-labels-idx1-ubyte.gz", "958122e8b4b97fd4e71eca2d08ef754ed77c3ad9", 0x801),
}


def fashion_mnist(cfg: FashionMNISTData, seed: int) -> Dataset:
    """The official 60000/10000 split, scaled to [0, 1], at 28x28 (D2L 3.5)."""
    hint = (
        "\nOn Debian/Ubuntu, `apt-get install dataset-fashion-mnist` installs the files into "
        f"{FASHION_MNIST_SYSTEM_DIR}."
    )
    arrays = {}
    for part, (name, sha1, magic) in FASHION_MNIST_FILES.items():
        remote = RemoteFile(name, FASHION_MNIST_URL + name, sha1, sha1_of_content=True)
        path = find_or_fetch(remote, cfg.dir, (FASHION_MNIST_SYSTEM_DIR,), hint)
        arrays[part] = cached_array(path, lambda p, magic=magic: _read_checked(p, magic), "idx")  # parsed once
    for split in ("train", "val"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if len(images) != len(labels):
            raise DataError(f"Fashion-MNIST {split}: {len(images)} images but {len(labels)} labels")
    x_train, y_train = _subset(arrays["train_images"], arrays["train_labels"], cfg.num_train)
    x_val, y_val = _subset(arrays["val_images"], arrays["val_labels"], cfg.num_val)
    return Dataset(
        _to_float_images(x_train),
        y_train.astype(np.int32),
        _to_float_images(x_val),
        y_val.astype(np.int32),
        num_classes=10,
        label_names=FASHION_MNIST_LABELS,
    )


def _read_checked(path, magic: int) -> np.ndarray:
    try:
        array = read_idx(path)
    except IDXError as err:
        raise DataError(str(err)) from None
    expected_ndim = 3 if magic == 0x803 else 1
    if array.ndim != expected_ndim or array.dtype != np.uint8:
        raise DataError(
            f"{path}: expected {'images (n, rows, cols)' if expected_ndim == 3 else 'labels (n,)'} of "
            f"unsigned bytes (IDX magic 0x{magic:08x}), found shape {array.shape} of {array.dtype}"
        )
    if array.shape[0] == 0 or 0 in array.shape[1:]:
        raise DataError(f"{path}: declares {' x '.join(map(str, array.shape))} {'images' if expected_ndim == 3 else 'labels'}; "
                        "expected at least one, of a size above 0")
    if magic == 0x801 and array.size and array.max() > 9:
        raise DataError(f"{path}: labels must lie in 0..9, found {array.max()}")
    return array


def _subset(x: np.ndarray, y: np.ndarray, n: int | None) -> tuple[np.ndarray, np.ndarray]:
    return (x, y) if n is None else (x[:n], y[:n])


def _to_float_images(images: np.ndarray) -> np.ndarray:
    """uint8 (n, rows, cols) -> float32 (n, rows, cols, 1) in [0, 1]; `resize` happens per batch on
    the device (`core.data.pipeline`)."""
    out = np.empty((*images.shape, 1), np.float32)
    np.divide(images[..., None], np.float32(255), out=out, dtype=np.float32)  # one pass, no float copy first
    return out
