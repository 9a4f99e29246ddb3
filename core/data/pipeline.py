"""What happens to a batch of images on the device before the model sees it: a bilinear resize
(train and evaluation alike) and, in training only, random augmentation (D2L 13.1).

The data set stays at its stored size in memory (60,000 Fashion-MNIST images at 224x224 in
float32 would take 12 GB); each batch is resized where it is used. Augmentation draws from the
step's key, so the same seed gives the same run and each epoch sees new crops and flips.
Random resized crops live in `crops`, the colour changes in `colour`.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from .colour import colour_jitter
from .crops import random_resized_crop


class Pipeline(NamedTuple):
    """`apply(x, key, train) -> x` on a (batch, H, W, C) array; `out_shape` of one example;
    `apply_pair(x, targets, key, train) -> (x, targets)` moves boxes and masks with their
    images (the same draws as `apply`)."""

    apply: Callable[[jax.Array, jax.Array | None, bool], jax.Array]
    out_shape: tuple[int, ...]
    identity: bool
    apply_pair: Callable | None = None


def resize(x: jax.Array, size: int) -> jax.Array:
    """(batch, H, W, C) -> (batch, size, size, C), bilinear (antialiased when shrinking)."""
    return jax.image.resize(x, (x.shape[0], size, size, x.shape[-1]), "bilinear")


# Targets that move with their image (D2L 13.1, 13.6, 13.9): `boxes` (batch, n, 4) as corners
# (x1, y1, x2, y2) in fractions of the image's width and height, and `mask` (batch, H, W) of
# per-pixel labels. Any other target (a class label) is left as it is.
Targets = dict[str, jax.Array]


def flip_targets(flip: jax.Array, targets: Targets | None, width: int) -> Targets | None:
    """The targets of images mirrored left-right where `flip` (batch,) is True."""
    if not targets:
        return targets
    out = dict(targets)
    if "boxes" in out:
        b = out["boxes"]
        mirrored = jnp.stack([1.0 - b[..., 2], b[..., 1], 1.0 - b[..., 0], b[..., 3]], axis=-1)
        out["boxes"] = jnp.where(flip[:, None, None], mirrored, b)
    if "mask" in out:
        out["mask"] = jnp.where(flip[:, None, None], out["mask"][:, :, ::-1], out["mask"])
    return out


def random_flip(key: jax.Array, x: jax.Array, targets: Targets | None = None):
    """Mirror each image left-right with probability 1/2; with `targets`, (images, targets)
    with the boxes and masks mirrored alike."""
    flip = jax.random.bernoulli(key, 0.5, (x.shape[0], 1, 1, 1))
    flipped = jnp.where(flip, x[:, :, ::-1, :], x)
    if targets is None:
        return flipped
    return flipped, flip_targets(flip[:, 0, 0, 0], targets, x.shape[2])


def vertical_flip_targets(flip: jax.Array, targets: Targets | None) -> Targets | None:
    """The targets of images mirrored top-bottom where `flip` (batch,) is True."""
    if not targets:
        return targets
    out = dict(targets)
    if "boxes" in out:
        b = out["boxes"]
        mirrored = jnp.stack([b[..., 0], 1.0 - b[..., 3], b[..., 2], 1.0 - b[..., 1]], axis=-1)
        out["boxes"] = jnp.where(flip[:, None, None], mirrored, b)
    if "mask" in out:
        out["mask"] = jnp.where(flip[:, None, None], out["mask"][:, ::-1, :], out["mask"])
    return out


def random_vertical_flip(key: jax.Array, x: jax.Array, targets: Targets | None = None):
    """Mirror each image top-bottom with probability 1/2 (torchvision's `RandomVerticalFlip`);
    with `targets`, (images, targets) with the boxes and masks mirrored alike."""
    flip = jax.random.bernoulli(key, 0.5, (x.shape[0], 1, 1, 1))
    flipped = jnp.where(flip, x[:, ::-1, :, :], x)
    if targets is None:
        return flipped
    return flipped, vertical_flip_targets(flip[:, 0, 0, 0], targets)


def random_crop(key: jax.Array, x: jax.Array, padding: int, targets: Targets | None = None):
    """Pad each image with `padding` zeros on every side and cut out its original size at an
    offset drawn per image from [0, 2 padding] along each axis. With `targets`, (images,
    targets): boxes shifted by the same offset and clipped to the image, masks cropped alike
    (padding with label 0, the background)."""
    b, h, w, c = x.shape
    padded = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    offsets = jax.random.randint(key, (b, 2), 0, 2 * padding + 1)

    def crop(image, offset):
        return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, c))

    cropped = jax.vmap(crop)(padded, offsets)
    if targets is None:
        return cropped
    out = dict(targets)
    shift = (padding - offsets).astype(jnp.float32)  # pixels the content moves down and right
    if "boxes" in out:
        dx, dy = shift[:, 1, None] / w, shift[:, 0, None] / h
        bx = out["boxes"]
        out["boxes"] = jnp.clip(jnp.stack([bx[..., 0] + dx, bx[..., 1] + dy, bx[..., 2] + dx, bx[..., 3] + dy], -1), 0.0, 1.0)
    if "mask" in out:
        m = jnp.pad(out["mask"], ((0, 0), (padding, padding), (padding, padding)))
        out["mask"] = jax.vmap(lambda mm, o: jax.lax.dynamic_slice(mm, (o[0], o[1]), (h, w)))(m, offsets)
    return cropped, out


def random_brightness(key: jax.Array, x: jax.Array, amount: float) -> jax.Array:
    """Multiply each image by a factor drawn from [max(0, 1 - amount), 1 + amount], then clip to [0, 1]
    (torchvision's `ColorJitter(brightness=amount)`)."""
    factor = jax.random.uniform(key, (x.shape[0], 1, 1, 1), x.dtype, max(0.0, 1.0 - amount), 1.0 + amount)
    return jnp.clip(x * factor, 0.0, 1.0)


def augment(x: jax.Array, key: jax.Array, cfg, targets: Targets | None = None):
    """The random resized crop, the padded crop, the left-right and top-bottom flips, then the
    colour changes, as `cfg` (an `AugmentConfig`) switches them on. With `targets`, (images,
    targets): boxes and masks move with their images, drawn from the same keys, so an image
    augments alike with or without targets.

    The keys of the first three (crop, flip, brightness) are those of the first version of
    this function, and each later change draws from its own `fold_in` of `key`, so a config
    that switches on only those three augments exactly as it always did."""
    k_crop, k_flip, k_bright = jax.random.split(key, 3)
    k_resized, k_vflip, k_jitter = (jax.random.fold_in(key, i) for i in (3, 4, 5))
    pair = targets is not None

    def step(fn, k, *args):
        nonlocal x, targets
        if pair:
            x, targets = fn(k, x, *args, targets=targets)
        else:
            x = fn(k, x, *args)

    if cfg.resized_crop:
        step(random_resized_crop, k_resized, x.shape[1:3], cfg.crop_scale, cfg.crop_ratio)
    if cfg.crop_padding:
        step(random_crop, k_crop, cfg.crop_padding)
    if cfg.flip:
        step(random_flip, k_flip)
    if cfg.vertical_flip:
        step(random_vertical_flip, k_vflip)
    if cfg.jitters_colour():
        x = colour_jitter(k_jitter, k_bright, x, cfg)
    elif cfg.brightness:
        x = random_brightness(k_bright, x, cfg.brightness)
    return (x, targets) if pair else x


def build_pipeline(data_cfg, in_shape: tuple[int, ...]) -> Pipeline:
    """The pipeline `data_cfg` asks for (its `resize` and `augment`, where it has them), for
    examples of `in_shape`."""
    if isinstance(in_shape, dict):  # named inputs (token ids): nothing to resize or augment
        return Pipeline(lambda x, key, train: x, in_shape, identity=True, apply_pair=lambda x, t, key, train: (x, t))
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

    def apply_pair(x, targets, key, train):
        if size:
            x = resize(x, size)
            if "mask" in targets:  # labels are not averaged: the nearest pixel's
                m = targets["mask"]
                targets = targets | {"mask": jax.image.resize(m, (m.shape[0], size, size), "nearest")}
        if train and augmenting:
            if key is None:
                raise ValueError("augmentation in training needs a PRNG key")
            x, targets = augment(x, key, aug, targets)
        return x, targets

    return Pipeline(apply, out_shape, identity=size is None and not augmenting, apply_pair=apply_pair)
