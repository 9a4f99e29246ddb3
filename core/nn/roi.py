"""Region-of-interest max pooling (D2L 13.8.4; Girshick 2015, Fast R-CNN), with the rounding of
`torchvision.ops.roi_pool`, so that its numbers are the book's.

Each region is rounded to whole feature-map cells: its corners are scaled by `spatial_scale` and
rounded half away from zero (C's `round`), its size counts both end cells (x2 - x1 + 1, at least
1); bin (i, j) of an h x w output covers rows floor(i * H_roi / h) to ceil((i + 1) * H_roi / h)
(end exclusive) and columns likewise, clipped to the feature map. A bin that falls outside the
map is 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _round_half_away(x: jax.Array) -> jax.Array:
    """C's round(): halves away from zero (jnp.round rounds them to even)."""
    return jnp.sign(x) * jnp.floor(jnp.abs(x) + 0.5)


def _bins(start: jax.Array, end: jax.Array, bins: int, size: int) -> jax.Array:
    """(R,) rounded first and last cells of the regions along one axis -> (R, bins, size) bool:
    which of the `size` cells each bin covers."""
    # floor(i * length / bins) and ceil((i + 1) * length / bins) in integers: XLA turns a division
    # by a constant into a multiplication by its reciprocal, whose rounding can cross a whole
    # number (7 * (1/3) * 3 > 7) where torchvision's float32 division lands on it
    length = jnp.maximum(end - start + 1, 1)[:, None]
    index = jnp.arange(bins, dtype=jnp.int32)[None, :]
    low = (index * length) // bins + start[:, None]
    high = -((-(index + 1) * length) // bins) + start[:, None]
    low, high = jnp.clip(low, 0, size), jnp.clip(high, 0, size)
    cells = jnp.arange(size)
    return (cells[None, None, :] >= low[..., None]) & (cells[None, None, :] < high[..., None])


def roi_pool(features: jax.Array, rois: jax.Array, output_size: tuple[int, int], spatial_scale: float = 1.0) -> jax.Array:
    """Max-pool each region of interest to a fixed size (D2L 13.8.4).

    Args:
        features: (B, H, W, C) NHWC feature maps.
        rois: (R, 5) rows [batch index, x1, y1, x2, y2], corners in pixels of the input image.
        output_size: (h, w) bins per region (static).
        spatial_scale: feature-map cells per input pixel (0.1 for a map 10 times smaller).

    Returns:
        (R, h, w, C): the largest feature in each bin, 0 for a bin outside the map.
    """
    out_h, out_w = output_size
    _, height, width, _ = features.shape
    rois = jnp.asarray(rois, jnp.float32)
    batch = rois[:, 0].astype(jnp.int32)
    corners = _round_half_away(rois[:, 1:] * jnp.float32(spatial_scale)).astype(jnp.int32)
    rows = _bins(corners[:, 1], corners[:, 3], out_h, height)  # (R, h, H)
    cols = _bins(corners[:, 0], corners[:, 2], out_w, width)  # (R, w, W)
    maps = features[batch]  # (R, H, W, C)
    low = jnp.finfo(features.dtype).min
    # a bin is a rectangle, so its max is the max over its rows of the max over its columns
    over_cols = jnp.max(jnp.where(cols[:, :, None, :, None], maps[:, None], low), axis=3)  # (R, w, H, C)
    pooled = jnp.max(jnp.where(rows[:, :, None, :, None], over_cols[:, None], low), axis=3)  # (R, h, w, C)
    empty = ~(jnp.any(rows, axis=2)[:, :, None] & jnp.any(cols, axis=2)[:, None, :])  # (R, h, w)
    return jnp.where(empty[..., None], 0.0, pooled).astype(features.dtype)
