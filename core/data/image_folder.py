"""Loaders of labelled images in class folders (D2L 13.13-13.14).

`dir/train/<class>/*` and `dir/valid/<class>/*`, as torchvision's `ImageFolder` reads them: the
classes are the training folder's sub-folders in sorted order, and every image is read at one
size and mode (`core.data.images`, Pillow's bilinear filter). Nothing is cached: reading and
resizing the images takes about 0.4 ms each on a 2-core CPU (1,200 28x28 PNGs 0.5 s, 5,000 in
2.3 s), far less than the first epoch's compilation.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from .. import disk
from ..config.image_folder import ImageFolderData
from ..errors import ConfigError, DataError
from .dataset import Dataset
from .files import cache_dir
from .images import image_paths, read_images


class LabelledImages(NamedTuple):
    images: np.ndarray  # float32 (n, size, size, channels), scaled as the section says
    labels: np.ndarray  # int32 (n,): indices into the classes
    paths: tuple[Path, ...]  # the file of each image
    bad: tuple[tuple[Path, str], ...]  # files left out, with why


def image_folder(cfg: ImageFolderData, seed: int) -> Dataset:  # noqa: ARG001 - the same images whatever the seed
    """The train and valid folders of `cfg.dir` (or of the folder `cfg.make` writes) as a
    classification data set whose label names are the class folders.

    Raises:
        ConfigError: no folder named; a validation class the training folder lacks.
        DataError: a missing folder, an empty class, a class with no readable image.
    """
    root = folder_of(cfg)
    classes = class_names(root / cfg.train)
    train = read_labelled(root / cfg.train, classes, cfg)
    if cfg.valid is not None:
        valid = read_labelled(root / cfg.valid, classes, cfg)
    else:
        valid = LabelledImages(np.zeros((0, cfg.resize, cfg.resize, cfg.channels), np.float32),
                               np.zeros(0, np.int32), (), ())
    warn_left_out(train.bad + valid.bad)
    meta = {"dir": str(root), "num_valid": len(valid.labels), "left_out": [str(p) for p, _ in train.bad + valid.bad]}
    return Dataset(train.images, train.labels, valid.images, valid.labels, num_classes=len(classes),
                   label_names=tuple(classes), meta=meta)


def folder_of(cfg: ImageFolderData) -> Path:
    """`cfg.dir`, or the folder `cfg.make` writes (once) into the cache."""
    if cfg.dir:
        root = Path(cfg.dir).expanduser()
        if not root.is_dir():
            raise DataError(f"data.dir: {root} is not a directory (expected {cfg.train}/<class>/ and "
                            f"{cfg.valid or '<valid>'}/<class>/ folders of images in it)")
        return root
    if cfg.make == "fashion_mnist":
        return make_fashion_mnist_folder(cfg.make_train, cfg.make_valid)
    raise ConfigError("data.dir: an image_folder section needs dir (a folder of train/<class>/ and valid/<class>/ "
                      "images) or make: fashion_mnist")


def class_names(train_dir: Path) -> list[str]:
    """The sorted sub-folder names of `train_dir`: the classes, numbered in this order."""
    if not train_dir.is_dir():
        raise DataError(f"{train_dir}: no such folder; expected one sub-folder of images per class")
    classes = sorted(p.name for p in train_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{train_dir}: has no class folders; expected one sub-folder of images per class")
    return classes


def read_labelled(split_dir: Path, classes: Sequence[str], cfg: ImageFolderData) -> LabelledImages:
    """Every image under `split_dir/<class>/`, labelled by its class's index in `classes`."""
    if not split_dir.is_dir():
        raise DataError(f"{split_dir}: no such folder (data.valid: null trains without a validation folder)")
    found = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    unknown = [name for name in found if name not in classes]
    if unknown:
        raise ConfigError(f"{split_dir}: class folder(s) {', '.join(unknown)} are not among the training classes "
                          f"({', '.join(classes)})")
    images, labels, paths, bad = [], [], [], []
    for name in found:
        files = image_paths(split_dir / name)
        if not files:
            raise DataError(f"{split_dir / name}: an empty class folder (no image files)")
        read = read_images(files, cfg.resize, cfg.channels)
        if not len(read.images):
            raise DataError(f"{split_dir / name}: none of its {len(files)} files could be read as an image")
        images.append(read.images)
        labels.append(np.full(len(read.images), classes.index(name), np.int32))
        paths += read.paths
        bad += read.bad
    x = np.concatenate(images) if images else np.zeros((0, cfg.resize, cfg.resize, cfg.channels), np.float32)
    y = np.concatenate(labels) if labels else np.zeros(0, np.int32)
    return LabelledImages(normalise(x, cfg), y, tuple(paths), tuple(bad))


def normalise(images: np.ndarray, cfg: ImageFolderData) -> np.ndarray:
    """(x - mean) / std per channel, when the section names them (D2L 13.13's `Normalize`)."""
    if cfg.mean is None:
        return images
    mean, std = np.asarray(cfg.mean, np.float32), np.asarray(cfg.std, np.float32)
    return ((images - mean) / std).astype(np.float32)


def warn_left_out(bad: Sequence[tuple[Path, str]]) -> None:
    """One warning naming every file left out, and why."""
    if bad:
        lines = "\n".join(f"  {path}: {why}" for path, why in bad)
        print(f"warning: {len(bad)} file(s) could not be read as images and were left out:\n{lines}",
              file=sys.stderr, flush=True)


def write_pngs(images: np.ndarray, paths: Sequence[Path]) -> None:
    """uint8 (n, h, w) images as grey PNG files (each file's folder is made)."""
    from PIL import Image

    for image, path in zip(images, paths):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, mode="L").save(path)


def build_once(target: Path, build) -> Path:
    """`build(tmp)` into a temporary folder beside `target`, then renamed to `target`, so that a
    half-written folder is never read; an existing `target` is reused as it is."""
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        build(tmp)
        disk.shareable(tmp, directory=True)
        os.replace(tmp, target)
    except OSError:
        if not target.is_dir():  # another process that made it first is fine; anything else is not
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def fashion_mnist_arrays() -> dict[str, np.ndarray]:
    """Fashion-MNIST's uint8 images (n, 28, 28) and labels, as `core.data.fashion_mnist` finds them."""
    from ..config import FashionMNISTData
    from .fashion_mnist import fashion_mnist

    data = fashion_mnist(FashionMNISTData(), 0)
    return {"x_train": _as_bytes(data.x_train), "y_train": data.y_train, "x_val": _as_bytes(data.x_val),
            "y_val": data.y_val, "names": np.array(data.label_names)}


def _as_bytes(images: np.ndarray) -> np.ndarray:
    """float (n, h, w, 1) in [0, 1] -> the uint8 (n, h, w) they were read from."""
    return np.round(images[..., 0] * 255).astype(np.uint8)


def first_per_class(labels: np.ndarray, count: int, num_classes: int) -> np.ndarray:
    """Indices of the first `count` examples of each class, in the order of `labels`."""
    picked = [np.flatnonzero(labels == c)[:count] for c in range(num_classes)]
    return np.sort(np.concatenate(picked))


def make_fashion_mnist_folder(per_class_train: int, per_class_valid: int) -> Path:
    """`<cache>/image_folders/fashion_mnist-<train>-<valid>/{train,valid}/<class>/<i>.png`: the
    first images of each class of Fashion-MNIST's training (train) and test (valid) files,
    written once."""
    target = cache_dir() / "image_folders" / f"fashion_mnist-{per_class_train}-{per_class_valid}"
    if target.is_dir():
        return target

    def build(tmp: Path) -> None:
        arrays = fashion_mnist_arrays()
        names = [str(n) for n in arrays["names"]]
        for split, source, count in (("train", "train", per_class_train), ("valid", "val", per_class_valid)):
            x, y = arrays[f"x_{source}"], arrays[f"y_{source}"]
            rows = first_per_class(y, count, len(names))
            write_pngs(x[rows], [tmp / split / names[y[i]] / f"{i:05d}.png" for i in rows])

    return build_once(target, build)


# data.name -> (load(cfg, seed) -> Dataset, whether the data depends on the seed)
IMAGE_FOLDER_SOURCES: dict = {"image_folder": (image_folder, False)}
