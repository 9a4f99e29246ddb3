"""Images for a GAN (D2L 17.2): Fashion-MNIST or a folder of images, in [-1, 1] at one size."""

from __future__ import annotations

import sys

import numpy as np

from ..errors import DataError
from .dataset import Dataset
from .images import image_paths, read_images


def gan_images(cfg, seed: int) -> Dataset:  # noqa: ARG001 - the same images whatever the seed
    """The training images, resized on load (bilinear) and scaled to [-1, 1] as the book's
    `Normalize(0.5, 0.5)`; y is zeros and there is no validation split."""
    if cfg.source == "folder":
        paths = image_paths(cfg.dir)[: cfg.num_train]
        found = read_images(paths, cfg.size, cfg.channels)
        for path, why in found.bad:
            print(f"warning: {path}: not an image ({why}); left out", file=sys.stderr, flush=True)
        if not len(found.images):
            raise DataError(f"{cfg.dir}: no image could be read (looked for {', '.join(('png', 'jpg', 'jpeg', 'bmp', 'gif'))} files)")
        images, meta = found.images, {"source": str(cfg.dir), "left_out": [str(p) for p, _ in found.bad]}
    else:
        from ..config import FashionMNISTData
        from .fashion_mnist import fashion_mnist

        data = fashion_mnist(FashionMNISTData(dir=cfg.dir, num_train=cfg.num_train, num_val=1), seed)
        images, meta = _resized(data.x_train, cfg.size), {"source": "fashion_mnist"}
    x = (2.0 * images - 1.0).astype(np.float32)
    empty = np.zeros((0, *x.shape[1:]), np.float32)
    return Dataset(x, np.zeros((len(x), 1), np.float32), empty, np.zeros((0, 1), np.float32), num_classes=None, meta=meta)


def _resized(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of (n, h, w, c) images to (n, size, size, c), in chunks."""
    if images.shape[1:3] == (size, size):
        return images
    import jax

    chunks = [np.asarray(jax.image.resize(images[i:i + 4096], (len(images[i:i + 4096]), size, size, images.shape[-1]),
                                          "bilinear")) for i in range(0, len(images), 4096)]
    return np.concatenate(chunks).astype(np.float32)
