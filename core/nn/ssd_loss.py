"""TinySSD's loss and metrics (D2L 13.7.2): written in `core.nn.ssd`'s family; stubs until then."""

from __future__ import annotations

import jax


def ssd_loss(out: dict[str, jax.Array], y: dict[str, jax.Array]) -> jax.Array:
    raise NotImplementedError("ssd_loss")


def class_error(out: dict[str, jax.Array], y: dict[str, jax.Array]) -> jax.Array:
    raise NotImplementedError("class_error")


def bbox_mae(out: dict[str, jax.Array], y: dict[str, jax.Array]) -> jax.Array:
    raise NotImplementedError("bbox_mae")


def top_iou(out: dict[str, jax.Array], y: dict[str, jax.Array]) -> jax.Array:
    raise NotImplementedError("top_iou")
