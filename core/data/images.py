"""Images from files: PNG, JPEG and whatever else Pillow (matplotlib's own dependency) reads, of
any size and mode, decoded to float32 arrays in [0, 1] at one size, grey or RGB.

A file that cannot be read as an image is named and left out, not fatal to the rest
(`ImageFiles.bad`); no image at all is an error that says where it looked.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from ..errors import ConfigError, DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class ImageFiles(NamedTuple):
    images: np.ndarray  # float32 (n, size, size, channels) in [0, 1]
    paths: tuple[Path, ...]  # the file of each image
    bad: tuple[tuple[Path, str], ...]  # files left out, with why


def image_paths(directory: str | Path) -> list[Path]:
    """Every file under `directory` (sub-directories included) named like an image, in sorted order."""
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: not a directory of images")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def read_image(path: Path, size: int, channels: int) -> np.ndarray:
    """One image, converted to grey (`channels` 1) or RGB (3), resized to size x size
    (bilinear, as torchvision's Resize), as float32 (size, size, channels) in [0, 1].

    Raises:
        OSError, ValueError: not an image Pillow can read.
    """
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("L" if channels == 1 else "RGB").resize((size, size), Image.BILINEAR)
        array = np.asarray(image, np.float32) / 255.0
    return array[..., None] if channels == 1 else array


def read_images(paths: Sequence[Path], size: int, channels: int) -> ImageFiles:
    """The images of `paths` that can be read; the others named in `bad`."""
    images, kept, bad = [], [], []
    for path in paths:
        try:
            images.append(read_image(path, size, channels))
            kept.append(path)
        except (OSError, ValueError, SyntaxError) as err:  # Pillow's errors for a damaged or foreign file
            bad.append((path, str(err) or type(err).__name__))
    stacked = np.stack(images) if images else np.zeros((0, size, size, channels), np.float32)
    return ImageFiles(stacked, tuple(kept), tuple(bad))


def read_photo(image: str | None, size: tuple[int, int] | None = None, key: str = "experiment.image") -> tuple[np.ndarray, str]:
    """(H, W, 3) uint8 RGB pixels of `image`, or of the photo that ships with matplotlib
    (grace_hopper.jpg, standing in for the book's photos), resized bilinearly to `size`
    (width, height) unless None; and the path they came from.

    Raises:
        ConfigError: a file that cannot be read as an image (named, with the config `key`).
    """
    from PIL import Image, UnidentifiedImageError

    if image is None:
        from matplotlib import cbook

        image = str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    try:
        with Image.open(image) as im:
            im = im.convert("RGB")
            if size is not None:
                im = im.resize(size, Image.Resampling.BILINEAR)
            return np.asarray(im), image
    except (OSError, UnidentifiedImageError) as err:
        raise ConfigError(f"{key}: cannot read {image} as an image ({err})") from None
