"""Loaders of object detection data (D2L 13.6): the banana set, generated or the book's zip.

`bananas` returns images (n, size, size, 3) in [0, 1] and targets `{"boxes": (n, 1, 4) corner
fractions, "classes": (n, 1) int32}`: the input pipeline flips and crops the boxes with their
images, and the loss assigns them to anchors (`core.nn.ssd_loss`).
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path

from .. import disk
from ..errors import DataError
from .bananas import SPLITS, read_split, write_generated_bananas
from .dataset import Dataset
from .files import RemoteFile, cache_dir, find_or_fetch, search_dirs
from .text import D2L_DATA_URL

BANANA_ZIP = RemoteFile("banana-detection.zip", D2L_DATA_URL + "banana-detection.zip",
                        "5de26c8fce5ccdea9f91267273464dc968d20d72")
BANANA_DIR = "banana-detection"  # the folder the zip unpacks to
GENERATED_VERSION = 1  # bump when the generator draws differently: a new folder, not a stale one


def real_banana_dir(configured: str | None) -> Path:
    """The unpacked banana-detection folder: found in a data directory, or unpacked beside a
    banana-detection.zip found there (downloaded into the cache if found nowhere)."""
    for d in search_dirs(configured):
        if (d / BANANA_DIR / SPLITS["train"] / "label.csv").is_file():
            return d / BANANA_DIR
    archive = find_or_fetch(BANANA_ZIP, configured,
                            hint=f"\nOr unzip it there, so that {BANANA_DIR}/{SPLITS['train']}/label.csv exists.")
    try:
        return unpack(archive, archive.parent / BANANA_DIR)
    except PermissionError:  # a read-only data directory: unpack into the cache instead
        cache_dir().mkdir(parents=True, exist_ok=True)
        return unpack(archive, cache_dir() / BANANA_DIR)


def unpack(archive: Path, target: Path) -> Path:
    """Unzip `archive` (whose top folder is banana-detection/) into `target`, through a
    temporary folder and a rename. Returns `target`."""
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        try:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(tmp)
        except zipfile.BadZipFile as err:
            raise DataError(f"{archive}: not a zip archive ({err})") from None
        inner = tmp / BANANA_DIR if (tmp / BANANA_DIR).is_dir() else tmp
        if not (inner / SPLITS["train"] / "label.csv").is_file():
            raise DataError(f"{archive}: no {BANANA_DIR}/{SPLITS['train']}/label.csv inside")
        disk.shareable(inner, directory=True)
        try:
            inner.rename(target)
        except OSError:  # another process unpacked it first
            if not (target / SPLITS["train"] / "label.csv").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def generated_banana_dir(cfg) -> Path:
    """The generated set of `cfg`'s counts and seed, in the data cache (written on first use)."""
    name = f"bananas-generated-v{GENERATED_VERSION}-{cfg.num_train}-{cfg.num_val}-seed{cfg.generator_seed}"
    return write_generated_bananas(cache_dir() / name, cfg.num_train, cfg.num_val, cfg.generator_seed)


def bananas(cfg, seed: int) -> Dataset:
    """The banana detection set (D2L 13.6) that `cfg` (a `bananas` data section) names. The
    generated set is drawn with `cfg.generator_seed`, not the run's seed."""
    root = generated_banana_dir(cfg) if cfg.source == "generated" else real_banana_dir(cfg.dir)
    train, val = read_split(root / SPLITS["train"], cfg.size), read_split(root / SPLITS["val"], cfg.size)
    meta = {"source": cfg.source, "dir": str(root), "bad_files": [f"{p}: {why}" for p, why in train.bad + val.bad]}
    return Dataset(train.images, {"boxes": train.boxes, "classes": train.classes},
                   val.images, {"boxes": val.boxes, "classes": val.classes},
                   num_classes=max(1, int(train.classes.max()) + 1), label_names=("banana",), meta=meta)


DETECTION_SOURCES: dict = {"bananas": (bananas, False)}  # data.name -> (load(cfg, seed), seeded)
