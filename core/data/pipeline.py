"""What happens to a batch of images on the device before the model sees it: a bilinear resize
(train and evaluation alike) and, in training only, random augmentation (D2L 14.1).

The data set stays at its stored size in memory (60,000 Fashion-MNIST images at 224x224 in
float32 would take 12 GB); each batch is resized where it is used. Augmentation draws from the
step's key, so the same seed gives the same run and each epoch sees new crops and flips.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp


class Pipeline(NamedTuple):
    """`apply(x, key, train) -> x` on a (batch, H, W, C) array; `out_shape` of one example."""

    apply: Callable[[jax.Array, jax.Array | None, bool], jax.Array]
    out_shape: tuple[int, ...]
    identity: bool


def resize(x: jax.Array, size: int) -> jax.Array:
    """(batch, H, W, C) -> (batch, size, size, C), bilinear (antialiased when shrinking)."""
    return jax.image.resize(x, (x.shape[0], size, size, x.shape[-1]), "bilinear")


def random_flip(key: jax.Array, x: jax.Array) -> jax.Array:
    """Mirror each image left-right with probability 1/2."""
    flip = jax.random.bernoulli(key, 0.5, (x.shape[0], 1, 1, 1))
    return jnp.where(flip, x[:, :, ::-1, :], x)


def random_crop(key: jax.Array, x: jax.Array, padding: int) -> jax.Array:
    """Pad each image with `padding` zeros on every side and cut out its original size at an
    offset drawn per image from [0, 2 padding] along each axis."""
    b, h, w, c = x.shape
    padded = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    offsets = jax.random.randint(key, (b, 2), 0, 2 * padding + 1)

    def crop(image, offset):
        return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, c))

    return jax.vmap(crop)(padded, offsets)


def random_brightness(key: jax.Array, x: jax.Array, amount: float) -> jax.Array:
    """Multiply each image by a factor drawn from [1 - amount, 1 + amount], then clip to [0, 1]
    (torchvision's `ColorJitter(brightness=amount)`)."""
    factor = jax.random.uniform(key, (x.shape[0], 1, 1, 1), x.dtype, 1.0 - amount, 1.0 + amount)
    return jnp.clip(x * factor, 0.0, 1.0)


def augment(x: jax.Array, key: jax.Array, cfg) -> jax.Array:
    """Crop, flip, then brightness, as `cfg` (an `AugmentConfig`) switches them on."""
    k_crop, k_flip, k_bright = jax.random.split(key, 3)
    if cfg.crop_padding:
        x = random_crop(k_crop, x, cfg.crop_padding)
    if cfg.flip:
        x = random_flip(k_flip, x)
    if cfg.brightness:
        x = random_brightness(k_bright, x, cfg.brightness)
    return x


def build_pipeline(data_cfg, in_shape: tuple[int, ...]) -> Pipeline:
    """The pipeline `data_cfg` asks for (its `resize` and `augment`, where it has them), for
    examples of `in_shape`."""
    size = getattr(data_cfg, "resize", None)
    aug = getattr(data_cfg, "augment", None)
    size = None if size is None or (len(in_shape) == 3 and in_shape[0] == in_shape[1] == size) else size
    augmenting = aug is not None and aug.active()
    out_shape = (size, size, in_shape[-1]) if size else tuple(in_shape)

    def apply(x, key, train):
        if size:
            x = resize(x, size)
        if train and augmenting:
            if key is None:
                raise ValueError("augmentation in training needs a PRNG key")
            x = augment(x, key, aug)
        return x

    return Pipeline(apply, out_shape, identity=size is None and not augmenting)
