"""Random resized crops on the device (D2L 13.1.1.1): torchvision's `RandomResizedCrop`, each
image of a batch cropped at its own window and resized to one fixed output size.

The window follows torchvision's `get_params`: up to `tries` (10) draws of an area fraction
from `scale` and an aspect ratio w/h from `ratio` (uniform in log ratio), w = round(sqrt(A r)),
h = round(sqrt(A / r)); the first draw that fits inside the image is kept, its corner drawn
uniformly among the positions where it fits. When none fits, the fall-back is torchvision's: a
centre crop of the whole image with its aspect ratio clamped into `ratio`. All tries are drawn
at once, so every shape stays fixed under `jit`.

The window is resized by bilinear interpolation with half-pixel centres inside the window
(PyTorch's `interpolate(mode="bilinear", align_corners=False, antialias=False)` of the cropped
image: no antialiasing when the window shrinks). Masks take the nearest label; boxes are mapped
into the window and clipped to it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp


class Window(NamedTuple):
    """Per image (batch,) int32: the crop's top row, left column, height and width in pixels."""

    top: jax.Array
    left: jax.Array
    height: jax.Array
    width: jax.Array


def fallback_window(h: int, w: int, ratio: tuple[float, float]) -> tuple[int, int, int, int]:
    """torchvision's fall-back: (top, left, height, width) of the centred crop of the whole
    image whose aspect ratio is the image's, clamped into `ratio`."""
    in_ratio = w / h
    if in_ratio < min(ratio):
        cw, ch = w, round(w / min(ratio))
    elif in_ratio > max(ratio):
        ch, cw = h, round(h * max(ratio))
    else:
        ch, cw = h, w
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def draw_window(key: jax.Array, n: int, h: int, w: int, scale: tuple[float, float], ratio: tuple[float, float],
                tries: int = 10) -> Window:
    """Crop windows for `n` images of h x w (the module's docstring says how)."""
    k_area, k_ratio, k_top, k_left = jax.random.split(key, 4)
    area = h * w * jax.random.uniform(k_area, (n, tries), minval=scale[0], maxval=scale[1])
    r = jnp.exp(jax.random.uniform(k_ratio, (n, tries), minval=math.log(ratio[0]), maxval=math.log(ratio[1])))
    cw, ch = jnp.round(jnp.sqrt(area * r)).astype(jnp.int32), jnp.round(jnp.sqrt(area / r)).astype(jnp.int32)
    fits = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
    first = jnp.argmax(fits, axis=1)[:, None]  # the first try that fits (0 when none does)
    cw, ch = jnp.take_along_axis(cw, first, 1)[:, 0], jnp.take_along_axis(ch, first, 1)[:, 0]
    # torch.randint(0, h - ch + 1): a uniform integer in [0, h - ch]
    top = jnp.floor(jax.random.uniform(k_top, (n,)) * (h - ch + 1)).astype(jnp.int32)
    left = jnp.floor(jax.random.uniform(k_left, (n,)) * (w - cw + 1)).astype(jnp.int32)
    found = fits.any(axis=1)
    f_top, f_left, f_h, f_w = fallback_window(h, w, ratio)
    return Window(jnp.where(found, top, f_top), jnp.where(found, left, f_left),
                  jnp.where(found, ch, f_h), jnp.where(found, cw, f_w))


def _source(start: jax.Array, length: jax.Array, out: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Bilinear sampling along one axis: for `out` output pixels of a window [start, start +
    length), the lower and upper source pixels and the upper one's weight, (out,) each."""
    pos = (jnp.arange(out) + 0.5) * (length / out) - 0.5
    pos = jnp.clip(pos, 0.0, length - 1.0)
    lower = jnp.floor(pos)
    weight = pos - lower
    lower = lower.astype(jnp.int32)
    upper = jnp.minimum(lower + 1, length - 1)
    return start + lower, start + upper, weight


def crop_resize(x: jax.Array, window: Window, size: tuple[int, int]) -> jax.Array:
    """(batch, H, W, C) -> (batch, *size, C): each image's window, bilinearly resized."""

    def one(image, top, left, height, width):
        y0, y1, wy = _source(top, height, size[0])
        x0, x1, wx = _source(left, width, size[1])
        rows = image[y0] * (1 - wy)[:, None, None] + image[y1] * wy[:, None, None]
        return rows[:, x0] * (1 - wx)[None, :, None] + rows[:, x1] * wx[None, :, None]

    return jax.vmap(one)(x, *window)


def crop_resize_mask(mask: jax.Array, window: Window, size: tuple[int, int]) -> jax.Array:
    """(batch, H, W) labels -> (batch, *size): the label of the pixel each output pixel's centre
    falls in."""

    def one(m, top, left, height, width):
        rows = top + jnp.minimum(jnp.floor((jnp.arange(size[0]) + 0.5) * (height / size[0])).astype(jnp.int32), height - 1)
        cols = left + jnp.minimum(jnp.floor((jnp.arange(size[1]) + 0.5) * (width / size[1])).astype(jnp.int32), width - 1)
        return m[rows][:, cols]

    return jax.vmap(one)(mask, *window)


def crop_boxes(boxes: jax.Array, window: Window, h: int, w: int) -> jax.Array:
    """Boxes (batch, n, 4) as corner fractions of the h x w image -> corner fractions of each
    image's window, clipped to [0, 1] (a box outside the window shrinks to an edge)."""
    top, left = window.top[:, None].astype(jnp.float32), window.left[:, None].astype(jnp.float32)
    ch, cw = window.height[:, None].astype(jnp.float32), window.width[:, None].astype(jnp.float32)
    x1, y1 = (boxes[..., 0] * w - left) / cw, (boxes[..., 1] * h - top) / ch
    x2, y2 = (boxes[..., 2] * w - left) / cw, (boxes[..., 3] * h - top) / ch
    return jnp.clip(jnp.stack([x1, y1, x2, y2], axis=-1), 0.0, 1.0)


def random_resized_crop(key: jax.Array, x: jax.Array, size: tuple[int, int], scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3), targets: dict | None = None):
    """torchvision's `RandomResizedCrop(size, scale, ratio)` on each image of (batch, H, W, C)
    -> (batch, *size, C). With `targets`, (images, targets): boxes mapped into each window,
    masks cropped and resized by nearest label, other targets kept."""
    b, h, w, _ = x.shape
    window = draw_window(key, b, h, w, scale, ratio)
    out = crop_resize(x, window, size)
    if targets is None:
        return out
    moved = dict(targets)
    if "boxes" in moved:
        moved["boxes"] = crop_boxes(moved["boxes"], window, h, w)
    if "mask" in moved:
        moved["mask"] = crop_resize_mask(moved["mask"], window, size)
    return out, moved
