"""Loaders of semantic segmentation data (D2L 13.9): Pascal VOC 2012, or a generated set.

Both are read from VOC's layout by `core.data.voc`: the generated set is written as JPEG
photographs, RGB colour-map PNG labels and the two image lists, once per setting, into the
data cache, so the reader that takes the real data takes it too. Each image is cut with its
labels at one random window (the run's seed) of `data.crop`; `y` is `{"mask": labels}`, so the
input pipeline moves the labels with their images.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .. import disk
from .dataset import Dataset
from .files import cache_dir
from .voc import VOC_CLASSES, VOC_COLORMAP, VOC_SUBDIR, find_voc_dir, read_split

GENERATED_FORMAT = 1  # bump when the drawing changes, so that older cached sets are not reused

# a base colour per object class (1..20); each object's is jittered around its class's
CLASS_COLOURS = (
    (220, 40, 40), (40, 160, 60), (50, 70, 220), (230, 200, 40), (200, 60, 200), (40, 200, 210), (240, 130, 30),
    (120, 60, 20), (150, 150, 255), (20, 90, 60), (250, 170, 170), (90, 20, 120), (170, 230, 120), (30, 30, 90),
    (200, 200, 200), (120, 120, 30), (255, 90, 140), (60, 130, 160), (140, 200, 60), (100, 40, 60),
)  # fmt: skip
SHAPES = ("rectangle", "ellipse", "triangle")  # class c is drawn as SHAPES[(c - 1) % 3]


def _background(rng: np.random.Generator, h: int, w: int):
    """Smooth colour noise: a coarse random grid enlarged bilinearly, plus fine grain."""
    from PIL import Image

    coarse = rng.integers(40, 200, (4, 6, 3)).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BILINEAR), np.float32)
    return np.clip(smooth + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)


def _draw_object(rng: np.random.Generator, image, mask, label: int) -> None:
    """One shape of class `label`, drawn on the image (PIL RGB) and its label map (PIL L)."""
    from PIL import ImageDraw

    w, h = image.size
    bw, bh = int(rng.integers(w // 4, 2 * w // 3 + 1)), int(rng.integers(h // 4, 2 * h // 3 + 1))
    x0, y0 = int(rng.integers(0, w - bw + 1)), int(rng.integers(0, h - bh + 1))
    box = (x0, y0, x0 + bw - 1, y0 + bh - 1)
    colour = tuple(int(np.clip(c + rng.integers(-30, 31), 0, 255)) for c in CLASS_COLOURS[label - 1])
    shape = SHAPES[(label - 1) % len(SHAPES)]
    for canvas, fill in ((ImageDraw.Draw(image), colour), (ImageDraw.Draw(mask), label)):
        if shape == "rectangle":
            canvas.rectangle(box, fill=fill)
        elif shape == "ellipse":
            canvas.ellipse(box, fill=fill)
        else:
            canvas.polygon([(box[0], box[3]), (box[2], box[3]), ((box[0] + box[2]) // 2, box[1])], fill=fill)


def generated_pair(rng: np.random.Generator, g) -> tuple[np.ndarray, np.ndarray]:
    """One generated image (H, W, 3) uint8 and its labels (H, W) int32, for `g` (a
    `core.config.segmentation.GeneratedVOC`): later shapes cover earlier ones."""
    from PIL import Image

    h = int(rng.integers(g.min_size[0], g.max_size[0] + 1))
    w = int(rng.integers(g.min_size[1], g.max_size[1] + 1))
    image = Image.fromarray(_background(rng, h, w))
    mask = Image.new("L", (w, h), 0)
    for _ in range(int(rng.integers(1, g.max_objects + 1))):
        _draw_object(rng, image, mask, int(rng.integers(1, g.num_classes)))
    return np.asarray(image, np.uint8), np.asarray(mask, np.int32)


def write_voc_tree(voc_dir: Path, images: dict[str, list[tuple[str, np.ndarray, np.ndarray]]], colormap=VOC_COLORMAP) -> None:
    """Images and labels in VOC's layout under `voc_dir`: `images` maps a split (train, val) to
    its (name, RGB uint8 image, int labels) triples; labels are written as RGB colour maps."""
    from PIL import Image

    palette = np.asarray(colormap, np.uint8)
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc_dir / sub).mkdir(parents=True, exist_ok=True)
    for split, triples in images.items():
        for name, image, labels in triples:
            Image.fromarray(image).save(voc_dir / "JPEGImages" / f"{name}.jpg", quality=95)
            Image.fromarray(palette[labels]).save(voc_dir / "SegmentationClass" / f"{name}.png", compress_level=1)
        (voc_dir / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("".join(f"{n}\n" for n, _, _ in triples))


def write_generated_voc(g, into: Path | None = None) -> Path:
    """The generated set `g` describes, as a VOC directory (`.../VOCdevkit/VOC2012`) in the
    data cache (or under `into`): written once per setting into a temporary directory and
    renamed into place, then reused. The draw depends on `g` alone (its own `seed`)."""
    key = hashlib.sha1(json.dumps([GENERATED_FORMAT, g.model_dump(mode="json")], sort_keys=True).encode()).hexdigest()[:16]
    root = (into or cache_dir() / "voc_generated") / key
    if (root / VOC_SUBDIR / "ImageSets").is_dir():
        return root / VOC_SUBDIR
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{key}."))
    try:
        rng = np.random.default_rng(g.seed)
        splits = {split: [(f"gen_{split}_{i:05d}", *generated_pair(rng, g)) for i in range(n)]
                  for split, n in (("train", g.num_train), ("val", g.num_val))}
        write_voc_tree(tmp / VOC_SUBDIR, splits, VOC_COLORMAP[: g.num_classes])
        disk.shareable(tmp, directory=True)
        os.replace(tmp, root)
    except OSError:
        if not (root / VOC_SUBDIR / "ImageSets").is_dir():  # another process wrote it first: the same draw
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root / VOC_SUBDIR


def majority_share(labels: np.ndarray, num_classes: int) -> float:
    """The share of pixels of the commonest class: the pixel accuracy of always guessing it."""
    return float(np.bincount(labels.reshape(-1), minlength=num_classes).max() / labels.size)


def voc(cfg, seed: int) -> Dataset:
    """A `data: {name: voc}` section's images and labels (D2L 13.9): VOC 2012 or the generated
    set, each image cut with its labels at one window of `cfg.crop` drawn with `seed` (train and
    val from their own streams)."""
    if cfg.source == "generated":
        voc_dir, num_classes = write_generated_voc(cfg.generated), cfg.generated.num_classes
    else:
        voc_dir, num_classes = find_voc_dir(cfg.dir), len(VOC_CLASSES)
    colormap = VOC_COLORMAP[:num_classes]
    x_train, m_train, small_train = read_split(voc_dir, "train", cfg.crop, np.random.default_rng([seed, 0]), colormap,
                                               cfg.num_train)
    x_val, m_val, small_val = read_split(voc_dir, "val", cfg.crop, np.random.default_rng([seed, 1]), colormap, cfg.num_val)
    meta = {"source": cfg.source, "dir": str(voc_dir), "num_train": len(x_train), "num_val": len(x_val),
            "left_out_smaller_than_crop": {"train": small_train, "val": small_val},
            "train_majority_share": majority_share(m_train, num_classes),
            "val_majority_share": majority_share(m_val, num_classes),
            "colormap": [list(c) for c in colormap]}
    return Dataset(x_train, {"mask": m_train}, x_val, {"mask": m_val}, num_classes, VOC_CLASSES[:num_classes], meta=meta)


# data.name -> (load(cfg, seed) -> Dataset, whether the data depends on the seed: the crops are drawn with it)
SEGMENTATION_SOURCES: dict = {"voc": (voc, True)}
