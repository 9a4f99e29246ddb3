"""The banana detection set's format (D2L 13.6), its reader, and a generated set in that format.

The format of d2l's banana-detection.zip: `bananas_train/` and `bananas_val/`, each with a
`label.csv` (header `img_name,label,xmin,ymin,xmax,ymax`, corners in pixels of the 256x256
image) and `images/<img_name>`.

The book's authors made their set by pasting rendered bananas of varied rotation and size onto
photos. No banana photo ships here, so `write_generated_bananas` draws one (a yellow crescent
with a darker outline and a brown stem, and its alpha mask), and pastes it at a random angle,
scale and position onto random crops of photographs and relief maps that ship with matplotlib
(`matplotlib.cbook.get_sample_data`). Each box is the tight box of the pasted alpha mask.
"""

from __future__ import annotations

import csv
import shutil
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .. import disk
from ..errors import DataError

SPLITS = {"train": "bananas_train", "val": "bananas_val"}
HEADER = ("img_name", "label", "xmin", "ymin", "xmax", "ymax")
SIDE = 256  # the book's images are 256x256


class Bananas(NamedTuple):
    images: np.ndarray  # float32 (n, size, size, 3) in [0, 1]
    boxes: np.ndarray  # float32 (n, 1, 4) corners as fractions of the width and height
    classes: np.ndarray  # int32 (n, 1)
    bad: tuple[tuple[str, str], ...]  # image files left out, with why


def read_split(folder: Path, size: int) -> Bananas:
    """One split's folder (`bananas_train/`): its label.csv and images, resized to size x size.

    Raises:
        DataError: no label.csv, a line that is not `img_name,label,xmin,ymin,xmax,ymax` with
            numbers, or no readable image.
    """
    from PIL import Image

    labels = folder / "label.csv"
    if not labels.is_file():
        raise DataError(f"{labels}: no label file (expected {','.join(HEADER)} lines)")
    with open(labels, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or tuple(c.strip() for c in rows[0]) != HEADER:
        raise DataError(f"{labels}: the first line must be {','.join(HEADER)}, found {','.join(rows[0]) if rows else 'nothing'}")
    images, boxes, classes, bad = [], [], [], []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(HEADER):
            raise DataError(f"{labels}, line {line}: expected {len(HEADER)} fields ({','.join(HEADER)}), found {len(row)}")
        try:
            label, corners = int(float(row[1])), [float(v) for v in row[2:]]
        except ValueError:
            raise DataError(f"{labels}, line {line}: label and corners must be numbers, found {','.join(row[1:])}") from None
        path = folder / "images" / row[0]
        try:
            with Image.open(path) as image:
                w, h = image.size
                array = np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR), np.float32) / 255.0
        except (OSError, ValueError, SyntaxError) as err:  # missing, damaged or not an image
            bad.append((str(path), str(err) or type(err).__name__))
            continue
        images.append(array)
        boxes.append([[corners[0] / w, corners[1] / h, corners[2] / w, corners[3] / h]])
        classes.append([label])
    if not images:
        raise DataError(f"{folder}: no readable image among the {len(rows) - 1} lines of label.csv")
    return Bananas(np.stack(images), np.asarray(boxes, np.float32), np.asarray(classes, np.int32), tuple(bad))


# ------------------------------------------------------------------------------- generated set


def banana_sprite(rng: np.random.Generator, side: int = 128) -> np.ndarray:
    """A banana drawn on a side x side canvas: RGBA uint8, alpha 0 off the fruit.

    A crescent (a disc less a shifted disc, cut to an arc), filled yellow with a shade across
    its width, outlined darker, with a brown stem at one tip."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    r, thick = 0.42, rng.uniform(0.13, 0.2)
    outer = np.hypot(xx - 0.5, yy - 0.05) < r
    inner = np.hypot(xx - 0.5, yy - 0.05 + thick) < r
    angle = np.arctan2(yy - 0.05, xx - 0.5)
    arc = (angle > 0.35) & (angle < np.pi - 0.35)
    body = outer & ~inner & arc
    dist = np.hypot(xx - 0.5, yy - 0.05)
    across = np.clip((dist - (r - thick)) / thick, 0, 1)  # 0 on the inner edge, 1 on the outer
    hue = np.array([0.95, 0.82, 0.15]) * rng.uniform(0.85, 1.0) + np.array([0.0, 0.05, 0.0]) * rng.uniform(-1, 1)
    colour = hue[None, None, :] * (0.75 + 0.25 * np.sin(np.pi * across))[..., None]
    edge = body & ~_eroded(body, max(2, side // 40))
    colour[edge] = hue * 0.45
    mid = r - thick / 2  # the stem sits on the arc's middle line, just past its first end
    stem = np.hypot(xx - 0.5 - mid * np.cos(0.3), yy - 0.05 - mid * np.sin(0.3)) < 0.03
    colour[stem] = (0.35, 0.22, 0.08)
    alpha = body | stem
    rgba = np.zeros((side, side, 4), np.uint8)
    rgba[..., :3] = np.clip(colour * 255, 0, 255).astype(np.uint8)
    rgba[..., 3] = alpha * 255
    return rgba


def _eroded(mask: np.ndarray, steps: int) -> np.ndarray:
    """`mask` shrunk by `steps` pixels (4-neighbour erosion)."""
    out = mask.copy()
    for _ in range(steps):
        shrunk = out.copy()
        shrunk[1:] &= out[:-1]
        shrunk[:-1] &= out[1:]
        shrunk[:, 1:] &= out[:, :-1]
        shrunk[:, :-1] &= out[:, 1:]
        out = shrunk
    return out


def backgrounds() -> list[np.ndarray]:
    """Photographs and relief maps that ship with matplotlib, as RGB uint8 arrays."""
    from matplotlib import cbook, colormaps
    from PIL import Image

    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as image:
        found = [np.asarray(image.convert("RGB"))]
    for name, key, cmap in (("topobathy.npz", "topo", "terrain"), ("jacksboro_fault_dem.npz", "elevation", "gist_earth")):
        with np.load(cbook.get_sample_data(name, asfileobj=False)) as arrays:
            z = np.asarray(arrays[key], np.float64)
        z = (z - z.min()) / max(float(z.max() - z.min()), 1e-9)
        found.append((colormaps[cmap](z)[..., :3] * 255).astype(np.uint8))
    return found


def generated_example(rng: np.random.Generator, scenes: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """One 256x256 image: a banana pasted onto a background crop. Returns the image (RGB uint8),
    the pasted alpha mask (bool, 256x256) and its tight box (xmin, ymin, xmax, ymax) in pixels,
    xmax and ymax one past the last covered pixel."""
    from PIL import Image

    scene = scenes[rng.integers(len(scenes))]
    h, w = scene.shape[:2]
    crop = int(rng.uniform(0.35, 1.0) * min(h, w))
    top, left = rng.integers(0, h - crop + 1), rng.integers(0, w - crop + 1)
    background = Image.fromarray(scene[top:top + crop, left:left + crop]).resize((SIDE, SIDE), Image.BILINEAR)
    if rng.uniform() < 0.5:
        background = background.transpose(Image.FLIP_LEFT_RIGHT)
    sprite = Image.fromarray(banana_sprite(rng)).rotate(rng.uniform(0, 360), Image.BICUBIC, expand=True)
    sprite = sprite.crop(sprite.getbbox())
    scale = rng.uniform(0.15, 0.4) * SIDE / max(sprite.size)
    sprite = sprite.resize((max(1, round(sprite.size[0] * scale)), max(1, round(sprite.size[1] * scale))), Image.BILINEAR)
    x, y = rng.integers(0, SIDE - sprite.size[0] + 1), rng.integers(0, SIDE - sprite.size[1] + 1)
    layer = Image.new("RGBA", (SIDE, SIDE), (0, 0, 0, 0))
    layer.paste(sprite, (int(x), int(y)))
    image = Image.alpha_composite(background.convert("RGBA"), layer).convert("RGB")
    alpha = np.asarray(layer)[..., 3] > 0
    rows, cols = np.flatnonzero(alpha.any(1)), np.flatnonzero(alpha.any(0))
    box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
    return np.asarray(image), alpha, box


def write_split(folder: Path, rng: np.random.Generator, count: int, scenes: list[np.ndarray]) -> None:
    """`count` generated images and their label.csv in the real set's layout."""
    from PIL import Image

    (folder / "images").mkdir(parents=True)
    lines = [",".join(HEADER)]
    for i in range(count):
        image, _, box = generated_example(rng, scenes)
        Image.fromarray(image).save(folder / "images" / f"{i}.png", compress_level=1)  # pixels as any level: 5x faster to write
        lines.append(f"{i}.png,0,{box[0]},{box[1]},{box[2]},{box[3]}")
    (folder / "label.csv").write_text("\n".join(lines) + "\n")


def write_generated_bananas(root: Path, num_train: int, num_val: int, seed: int) -> Path:
    """The generated set in `root` (bananas_train/, bananas_val/), written once: built in a
    temporary folder beside it and renamed into place, so a reader never sees half a set.
    Returns `root`."""
    if (root / SPLITS["val"] / "label.csv").is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}."))
    try:
        rng, scenes = np.random.default_rng(seed), backgrounds()
        write_split(tmp / SPLITS["train"], rng, num_train, scenes)
        write_split(tmp / SPLITS["val"], rng, num_val, scenes)
        disk.shareable(tmp, directory=True)
        try:
            tmp.rename(root)
        except OSError:  # another process finished the same set first
            if not (root / SPLITS["val"] / "label.csv").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root
