"""Colour jitter on the device (D2L 13.1.1.2): brightness, contrast, saturation and hue, with
torchvision's definitions for float images in [0, 1].

Each image gets its own factors: brightness, contrast and saturation from [max(0, 1 - a),
1 + a], a hue shift from [-h, h] of the hue circle; and, as torchvision's `ColorJitter`, the
switched-on changes run in an order drawn per image. Every change ends clipped to [0, 1].

- brightness: f x (a blend with black);
- contrast: f x + (1 - f) m, m the mean of the image's grey levels;
- saturation: f x + (1 - f) g, g the image's grey level at each pixel;
- hue: RGB -> HSV, h <- (h + f) mod 1, HSV -> RGB.

Grey is 0.2989 R + 0.587 G + 0.114 B (ITU-R 601-2 luma, as torchvision); a one-channel image
is its own grey, and saturation and hue leave it unchanged (torchvision and PIL do the same).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

LUMA = (0.2989, 0.587, 0.114)
JITTERS = ("brightness", "contrast", "saturation", "hue")  # the order of `Jitter.factors`' columns


def grey(x: jax.Array) -> jax.Array:
    """(batch, H, W, C) -> (batch, H, W): the grey level (a single channel is its own)."""
    if x.shape[-1] == 1:
        return x[..., 0]
    return LUMA[0] * x[..., 0] + LUMA[1] * x[..., 1] + LUMA[2] * x[..., 2]


def _per_image(f: jax.Array) -> jax.Array:
    return f.reshape(-1, 1, 1, 1)


def adjust_brightness(x: jax.Array, f: jax.Array) -> jax.Array:
    """Scale image i by f[i] (batch,), clipped to [0, 1]."""
    return jnp.clip(x * _per_image(f), 0.0, 1.0)


def adjust_contrast(x: jax.Array, f: jax.Array) -> jax.Array:
    """Blend image i with the mean of its grey levels: f x + (1 - f) mean, clipped."""
    mean = grey(x).mean(axis=(1, 2)).reshape(-1, 1, 1, 1)
    f = _per_image(f)
    return jnp.clip(f * x + (1.0 - f) * mean, 0.0, 1.0)


def adjust_saturation(x: jax.Array, f: jax.Array) -> jax.Array:
    """Blend image i with its grey image: f x + (1 - f) grey, clipped; a grey image is kept."""
    if x.shape[-1] == 1:
        return x
    f = _per_image(f)
    return jnp.clip(f * x + (1.0 - f) * grey(x)[..., None], 0.0, 1.0)


def rgb_to_hsv(x: jax.Array) -> jax.Array:
    """(..., 3) RGB in [0, 1] -> (..., 3) HSV, hue in [0, 1) (0 where the pixel is grey)."""
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    maxc, minc = jnp.max(x, axis=-1), jnp.min(x, axis=-1)
    grey_pixel = maxc == minc
    chroma = maxc - minc
    s = chroma / jnp.where(grey_pixel, 1.0, maxc)
    divisor = jnp.where(grey_pixel, 1.0, chroma)
    rc, gc, bc = (maxc - r) / divisor, (maxc - g) / divisor, (maxc - b) / divisor
    h = jnp.where(maxc == r, bc - gc, jnp.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = jnp.where(grey_pixel, 0.0, h)
    return jnp.stack([jnp.mod(h / 6.0 + 1.0, 1.0), s, maxc], axis=-1)


def hsv_to_rgb(x: jax.Array) -> jax.Array:
    """(..., 3) HSV, hue in [0, 1) -> (..., 3) RGB: the sector i = floor(6 h) picks which of v,
    p = v (1 - s), q = v (1 - s f), t = v (1 - s (1 - f)) each channel takes."""
    h, s, v = x[..., 0], x[..., 1], x[..., 2]
    i = jnp.floor(h * 6.0)
    frac = h * 6.0 - i
    i = i.astype(jnp.int32) % 6
    p = jnp.clip(v * (1.0 - s), 0.0, 1.0)
    q = jnp.clip(v * (1.0 - s * frac), 0.0, 1.0)
    t = jnp.clip(v * (1.0 - s * (1.0 - frac)), 0.0, 1.0)
    sectors = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    channels = [jnp.select([i == k for k in range(6)], [sector[c] for sector in sectors]) for c in range(3)]
    return jnp.stack(channels, axis=-1)


def adjust_hue(x: jax.Array, f: jax.Array) -> jax.Array:
    """Turn image i's hues by f[i] (batch,) of the circle, in [-0.5, 0.5]; a grey image is kept."""
    if x.shape[-1] == 1:
        return x
    hsv = rgb_to_hsv(x)
    turned = jnp.mod(hsv[..., 0] + f.reshape(-1, 1, 1), 1.0)
    return jnp.clip(hsv_to_rgb(hsv.at[..., 0].set(turned)), 0.0, 1.0)


ADJUST = {"brightness": adjust_brightness, "contrast": adjust_contrast, "saturation": adjust_saturation, "hue": adjust_hue}


class Jitter(NamedTuple):
    """One batch's draws: `factors` (batch, 4) in the order of `JITTERS` (brightness, contrast,
    saturation, hue; 1 or 0 for a change that is off), `order` (batch, k) the indices into
    `JITTERS` of the k switched-on changes, in the order each image gets them."""

    factors: jax.Array
    order: jax.Array


def switched_on(cfg) -> tuple[int, ...]:
    """Indices into `JITTERS` of the changes `cfg` (an `AugmentConfig`) switches on."""
    return tuple(i for i, name in enumerate(JITTERS) if getattr(cfg, name) > 0)


def draw_jitter(key: jax.Array, brightness_key: jax.Array, n: int, cfg, dtype=jnp.float32) -> Jitter:
    """The factors and order for `n` images. The brightness factor comes from `brightness_key`
    exactly as brightness alone draws it (`random_brightness`), so switching on another change
    leaves each image's brightness factor as it was."""
    k_contrast, k_saturation, k_hue, k_order = jax.random.split(key, 4)

    def factor(k, amount):
        return jax.random.uniform(k, (n,), dtype, max(0.0, 1.0 - amount), 1.0 + amount)

    columns = [
        jax.random.uniform(brightness_key, (n, 1, 1, 1), dtype, max(0.0, 1.0 - cfg.brightness), 1.0 + cfg.brightness)[:, 0, 0, 0]
        if cfg.brightness else jnp.ones((n,), dtype),
        factor(k_contrast, cfg.contrast) if cfg.contrast else jnp.ones((n,), dtype),
        factor(k_saturation, cfg.saturation) if cfg.saturation else jnp.ones((n,), dtype),
        jax.random.uniform(k_hue, (n,), dtype, -cfg.hue, cfg.hue) if cfg.hue else jnp.zeros((n,), dtype),
    ]
    on = jnp.asarray(switched_on(cfg), jnp.int32)
    order = on[jnp.argsort(jax.random.uniform(k_order, (n, len(on))), axis=1)]  # a uniform permutation per image
    return Jitter(jnp.stack(columns, axis=1), order)


def apply_jitter(x: jax.Array, jitter: Jitter, on: tuple[int, ...]) -> jax.Array:
    """Run each image's changes in its own order; `on`: the switched-on changes
    (`switched_on`). At position p every one of them is computed for the whole batch and each
    image keeps the one its order names."""
    for p in range(len(on)):
        pick = jitter.order[:, p].reshape(-1, 1, 1, 1)
        out = x
        for i in on:
            out = jnp.where(pick == i, ADJUST[JITTERS[i]](x, jitter.factors[:, i]), out)
        x = out
    return x


def colour_jitter(key: jax.Array, brightness_key: jax.Array, x: jax.Array, cfg) -> jax.Array:
    """torchvision's `ColorJitter(cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue)` on
    each image of (batch, H, W, C), drawn from the keys (`draw_jitter`)."""
    return apply_jitter(x, draw_jitter(key, brightness_key, x.shape[0], cfg, x.dtype), switched_on(cfg))
