"""The Kaggle CIFAR-10 layout and its reorganisation into class folders (D2L 13.13).

The competition gives `train/<id>.png`, `trainLabels.csv` (id,label) and `test/<id>.png`. The
book's `reorg_train_valid` holds out, per class, n = max(1, floor(m * valid_ratio)) training
images, m the size of the smallest class, into `valid/<label>/`; the rest go to `train/<label>/`,
and all of them to `train_valid/<label>/`; `reorg_test` puts every test image into
`test/unknown/`. Here the files are hard links (copies across file systems), the training
files are taken in the order of their numeric ids (the book's `os.listdir` order is whatever the
file system gives, so its split differs from machine to machine), and the new tree is built
beside its place and renamed into it.
"""

from __future__ import annotations

import collections
import csv
import math
import os
import shutil
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import DataError
from .files import cache_dir
from .image_folder import build_once, fashion_mnist_arrays, write_pngs

SPLITS = ("train", "valid", "train_valid", "test")


class Reorganised(NamedTuple):
    root: Path  # holds train/, valid/, train_valid/<label>/ and test/unknown/
    n_valid_per_label: int
    classes: tuple[str, ...]
    test_ids: tuple[str, ...]  # the test files' ids, in numeric order


def id_order(name: str) -> tuple[int, int | str]:
    """Sort key of a file name by its id (`12.png` -> 12): numeric ids in numeric order, any
    others after them by name."""
    stem = name.split(".")[0]
    return (0, int(stem)) if stem.isdigit() else (1, stem)


def read_csv_labels(path: str | Path) -> dict[str, str]:
    """`trainLabels.csv` (a header, then id,label lines) as {id: label} (the book's
    `read_csv_labels`).

    Raises:
        DataError: a missing file or a line that is not id,label.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; the Kaggle layout has trainLabels.csv (id,label) beside train/")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    labels = {}
    for number, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != 2 or not row[0].strip() or not row[1].strip():
            raise DataError(f"{path}, line {number}: expected id,label, found {','.join(row)!r}")
        labels[row[0].strip()] = row[1].strip()
    if not labels:
        raise DataError(f"{path}: no id,label lines after the header")
    return labels


def place(source: Path, folder: Path) -> None:
    """`source` into `folder` (made if needed), hard-linked or, across file systems, copied."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, folder / source.name)
    except OSError:
        shutil.copy(source, folder / source.name)


def reorg_train_valid(data_dir: Path, labels: dict[str, str], valid_ratio: float, out: Path) -> int:
    """Split `data_dir/train/` into `out/{train,valid,train_valid}/<label>/`; returns n, the
    number of images per class in valid."""
    n = collections.Counter(labels.values()).most_common()[-1][1]  # the smallest class
    n_valid_per_label = max(1, math.floor(n * valid_ratio))
    label_count: dict[str, int] = {}
    for name in sorted(os.listdir(data_dir / "train"), key=id_order):
        file_id = name.split(".")[0]
        if file_id not in labels:
            raise DataError(f"{data_dir / 'train' / name}: id {file_id} has no line in {data_dir / 'trainLabels.csv'}")
        label = labels[file_id]
        place(data_dir / "train" / name, out / "train_valid" / label)
        if label_count.get(label, 0) < n_valid_per_label:
            place(data_dir / "train" / name, out / "valid" / label)
            label_count[label] = label_count.get(label, 0) + 1
        else:
            place(data_dir / "train" / name, out / "train" / label)
    return n_valid_per_label


def reorg_test(data_dir: Path, out: Path) -> tuple[str, ...]:
    """Every file of `data_dir/test/` into `out/test/unknown/`; returns their ids in numeric order."""
    names = sorted(os.listdir(data_dir / "test"), key=id_order)
    for name in names:
        place(data_dir / "test" / name, out / "test" / "unknown")
    return tuple(name.split(".")[0] for name in names)


def reorganise(data_dir: str | Path, valid_ratio: float, out: str | Path) -> Reorganised:
    """The Kaggle layout of `data_dir` reorganised into `out` (D2L 13.13's `reorg_cifar10_data`).
    A finished `out` is replaced whole: the new tree is built beside it first.

    Raises:
        DataError: a missing train/, test/ or trainLabels.csv, or a training file with no label.
    """
    data_dir, out = Path(data_dir).expanduser(), Path(out)
    for folder in ("train", "test"):
        if not (data_dir / folder).is_dir():
            raise DataError(f"{data_dir / folder}: no such folder; the Kaggle layout has train/<id>.png, "
                            "trainLabels.csv and test/<id>.png")
    labels = read_csv_labels(data_dir / "trainLabels.csv")
    result = {}

    def build(tmp: Path) -> None:
        result["n"] = reorg_train_valid(data_dir, labels, valid_ratio, tmp)
        result["test_ids"] = reorg_test(data_dir, tmp)
        (tmp / "test" / "unknown").mkdir(parents=True, exist_ok=True)  # an empty test folder is still a folder

    if out.is_dir():
        shutil.rmtree(out)
    build_once(out, build)
    return Reorganised(out, result["n"], tuple(sorted(set(labels.values()))), result["test_ids"])


def make_fashion_mnist_kaggle(num_train: int, num_test: int) -> Path:
    """A Kaggle-layout folder from Fashion-MNIST, written once into the cache:
    `<cache>/kaggle_layouts/fashion_mnist-<train>-<test>/` with `train/<id>.png` (the first
    `num_train` training images), `trainLabels.csv`, `test/<id>.png` (the first `num_test` test
    images) and `testLabels.csv`, the answers Kaggle keeps to itself, so that a submission can be
    scored. Ids count from 1 in each folder, as the competition's do."""
    target = cache_dir() / "kaggle_layouts" / f"fashion_mnist-{num_train}-{num_test}"
    if target.is_dir():
        return target

    def build(tmp: Path) -> None:
        arrays = fashion_mnist_arrays()
        names = [str(n).replace(" ", "_") for n in arrays["names"]]
        for split, source, count in (("train", "train", num_train), ("test", "val", num_test)):
            x, y = arrays[f"x_{source}"][:count], arrays[f"y_{source}"][:count]
            ids = np.arange(1, len(x) + 1)
            write_pngs(x, [tmp / split / f"{i}.png" for i in ids])
            lines = ["id,label"] + [f"{i},{names[c]}" for i, c in zip(ids, y)]
            (tmp / f"{split}Labels.csv").write_text("\n".join(lines) + "\n")

    return build_once(target, build)
