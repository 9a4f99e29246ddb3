"""Pascal VOC 2012 for semantic segmentation, as D2L 13.9 reads it: the image lists of
`ImageSets/Segmentation`, the JPEG photographs and the RGB colour-map PNGs of their labels.

The layout, under a root `VOCdevkit/VOC2012`:

    ImageSets/Segmentation/train.txt, val.txt   one image name a line
    JPEGImages/<name>.jpg                         the photograph
    SegmentationClass/<name>.png                  each pixel's class as a VOC_COLORMAP colour

The same layout is what `core.data.segmentation` writes its generated stand-in in, so both
go through one reader.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from .. import disk
from ..errors import DataError
from .files import RemoteFile, cache_dir, find_or_fetch, search_dirs

# d2l's DATA_HUB['voc2012']: its DATA_URL + the archive's name, and the archive's sha1
VOC2012 = RemoteFile("VOCtrainval_11-May-2012.tar", "http://d2l-data.s3-accelerate.amazonaws.com/VOCtrainval_11-May-2012.tar",
                     "4e443f8a2eca6b1dac8a6c57641b67dd40621a49")
VOC_SUBDIR = Path("VOCdevkit") / "VOC2012"

# the RGB colour of each class in a label image, and the classes' names (D2L 13.9.1)
VOC_COLORMAP = (
    (0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128), (0, 128, 128),
    (128, 128, 128), (64, 0, 0), (192, 0, 0), (64, 128, 0), (192, 128, 0), (64, 0, 128), (192, 0, 128),
    (64, 128, 128), (192, 128, 128), (0, 64, 0), (128, 64, 0), (0, 192, 0), (128, 192, 0), (0, 64, 128),
)  # fmt: skip
VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "potted plant", "sheep", "sofa", "train", "tv/monitor",
)  # fmt: skip


def colormap_to_label(colormap=VOC_COLORMAP) -> np.ndarray:
    """A (256^3,) int32 table from a colour's index (r * 256 + g) * 256 + b to its class; any
    colour not in `colormap` (VOC's cream object borders among them) maps to 0, the background,
    as the book's `voc_colormap2label` leaves them."""
    table = np.zeros(256**3, np.int32)
    for i, (r, g, b) in enumerate(colormap):
        table[(r * 256 + g) * 256 + b] = i
    return table


def label_indices(rgb: np.ndarray, table: np.ndarray) -> np.ndarray:
    """An RGB label image (H, W, 3) uint8 -> its classes (H, W) int32 (the book's voc_label_indices)."""
    rgb = rgb.astype(np.int32)
    return table[(rgb[..., 0] * 256 + rgb[..., 1]) * 256 + rgb[..., 2]]


def rand_crop(rng: np.random.Generator, feature: np.ndarray, label: np.ndarray, height: int, width: int):
    """The same random height x width window of an image (H, W, C) and its labels (H, W), the
    top-left corner drawn uniformly as torchvision's RandomCrop draws it (the book's voc_rand_crop)."""
    h, w = label.shape[:2]
    if feature.shape[:2] != (h, w):
        raise ValueError(f"image {feature.shape[:2]} and label {(h, w)} differ in size")
    if h < height or w < width:
        raise ValueError(f"a {h}x{w} image is smaller than the {height}x{width} crop")
    top, left = int(rng.integers(0, h - height + 1)), int(rng.integers(0, w - width + 1))
    return feature[top:top + height, left:left + width], label[top:top + height, left:left + width]


def split_names(voc_dir: Path, split: str) -> list[str]:
    """The image names of `train` or `val` (ImageSets/Segmentation/<split>.txt).

    Raises:
        DataError: the list is missing or empty.
    """
    path = Path(voc_dir) / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not path.is_file():
        raise DataError(f"{path}: missing; a VOC directory holds ImageSets/Segmentation/{split}.txt")
    names = path.read_text().split()
    if not names:
        raise DataError(f"{path}: lists no image")
    return names


def read_pair(voc_dir: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """An image's RGB pixels (H, W, 3) uint8 and its RGB label image (H, W, 3) uint8: VOC's
    palette PNGs are converted to their colours, as the book reads them (ImageReadMode.RGB).

    Raises:
        DataError: a file that is missing, cannot be read, or differs in size from its pair.
    """
    from PIL import Image

    voc_dir = Path(voc_dir)
    arrays = []
    for path in (voc_dir / "JPEGImages" / f"{name}.jpg", voc_dir / "SegmentationClass" / f"{name}.png"):
        try:
            with Image.open(path) as image:
                arrays.append(np.asarray(image.convert("RGB"), np.uint8))
        except (OSError, ValueError, SyntaxError) as err:  # Pillow's errors for a missing, damaged or foreign file
            raise DataError(f"{path}: cannot be read as an image ({err or type(err).__name__})") from None
    if arrays[0].shape != arrays[1].shape:
        raise DataError(f"{voc_dir}: image {name}.jpg is {arrays[0].shape[:2]} but its label {name}.png is {arrays[1].shape[:2]}")
    return arrays[0], arrays[1]


def read_split(voc_dir: Path, split: str, crop: tuple[int, int], rng: np.random.Generator, colormap=VOC_COLORMAP,
               limit: int | None = None):
    """Every image of `split` at least `crop` (height, width) in size (the first `limit` of
    them), cropped with its labels at one random window each (D2L 13.9.2's filter and
    voc_rand_crop).

    Returns:
        (images (n, height, width, 3) float32 in [0, 1], labels (n, height, width) int32, how
        many images were left out as smaller than the crop).
    """
    table = colormap_to_label(colormap)
    height, width = crop
    images, labels, small = [], [], 0
    for name in split_names(voc_dir, split):
        if limit is not None and len(images) == limit:
            break
        feature, rgb = read_pair(voc_dir, name)
        if feature.shape[0] < height or feature.shape[1] < width:
            small += 1
            continue
        feature, rgb = rand_crop(rng, feature, rgb, height, width)
        images.append(feature.astype(np.float32) / 255.0)
        labels.append(label_indices(rgb, table))
    if not images:
        raise DataError(f"{voc_dir}: no {split} image is at least {height}x{width} (the crop); make data.crop smaller")
    return np.stack(images), np.stack(labels), small


def find_voc_dir(configured: str | None = None) -> Path:
    """The VOCdevkit/VOC2012 directory: in the first data directory (`data.dir`,
    $DLRUN_DATA_DIR, the cache) that holds it extracted or holds d2l's archive (extracted once
    into the cache); else the archive downloaded (sha1-checked) and extracted.

    Raises:
        DataNotFoundError: neither is anywhere, and the archive cannot be downloaded.
    """
    for d in search_dirs(configured):  # in order: an archive in data.dir beats an extracted copy in the cache
        for candidate in (d / VOC_SUBDIR, d / "voc2012" / VOC_SUBDIR):
            if (candidate / "ImageSets" / "Segmentation").is_dir():
                return candidate
        if (d / VOC2012.name).is_file():
            return extract_once(d / VOC2012.name, cache_dir() / "voc2012") / VOC_SUBDIR
    hint = f"\nOr extract it so that {VOC_SUBDIR}/ sits in one of those directories."
    archive = find_or_fetch(VOC2012, configured, hint=hint)
    return extract_once(archive, cache_dir() / "voc2012") / VOC_SUBDIR


def extract_once(archive: Path, into: Path) -> Path:
    """`archive` (a tar) extracted to `into`, unless it is there already: extracted into a
    temporary directory beside it, then renamed into place in one step."""
    if into.is_dir():
        return into
    into.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=into.parent, prefix=f".{into.name}."))
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        disk.shareable(tmp, directory=True)
        os.replace(tmp, into)
    except tarfile.TarError as err:
        raise DataError(f"{archive}: cannot be extracted ({err}); delete it to have it downloaded again") from None
    except OSError:
        if not into.is_dir():  # another process extracted it first: theirs is as good
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return into
