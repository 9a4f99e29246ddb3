"""TinySSD's loss and metrics (D2L 13.7.2), per example, on the outputs of `core.nn.ssd`.

Each labels the anchors from the batch's ground truth first (`multibox_target`: the class of
each anchor, 0 for background, and the offsets to its box where it has one), inside the jitted
step, so the boxes the input pipeline moved are the ones labelled.

    out: {"cls": (B, N, C + 1) logits, "bbox": (B, N, 4) offsets, "anchors": (B, N, 4)}
    y:   {"boxes": (B, M, 4) corner fractions, "classes": (B, M) int32, -1 for padding}
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .boxes import box_iou, multibox_target, offset_inverse


def anchor_labels(out: dict[str, jax.Array], y: dict[str, jax.Array]):
    """(offsets (B, N, 4), mask (B, N, 4), labels (B, N)) of the anchors, as the book's
    `multibox_target(anchors, Y)` gives them (D2L 13.4.3); the anchors are the same for every
    example."""
    return multibox_target(out["anchors"][0], y["boxes"], y["classes"])


def ssd_loss(out: dict[str, jax.Array], y: dict[str, jax.Array]) -> jax.Array:
    """The book's `calc_loss`: the class cross-entropy averaged over anchors, plus the L1 error
    of the offsets of the anchors that have a box, averaged over all anchors' four offsets.
    Returns (B,)."""
    offsets, mask, labels = anchor_labels(out, y)
    log_p = jax.nn.log_softmax(out["cls"], axis=-1)
    cls = -jnp.mean(jnp.take_along_axis(log_p, labels[..., None], axis=-1)[..., 0], axis=1)
    bbox = jnp.mean(jnp.abs(out["bbox"] * mask - offsets * mask), axis=(1, 2))
    return cls + bbox


def class_error(out: dict[str, jax.Array], y: dict[str, jax.Array]) -> jax.Array:
    """1 - the fraction of anchors whose most probable class is their label (the book's
    `cls_eval`, as an error). Returns (B,)."""
    _, _, labels = anchor_labels(out, y)
    return 1.0 - jnp.mean((jnp.argmax(out["cls"], axis=-1) == labels).astype(jnp.float32), axis=1)


def bbox_mae(out: dict[str, jax.Array], y: dict[str, jax.Array]) -> jax.Array:
    """The mean absolute offset error over all anchors' four offsets, zero where an anchor has
    no box (the book's `bbox_eval`). Returns (B,)."""
    offsets, mask, _ = anchor_labels(out, y)
    return jnp.mean(jnp.abs((offsets - out["bbox"]) * mask), axis=(1, 2))


def _top_box(cls: jax.Array, bbox: jax.Array, anchors: jax.Array) -> jax.Array:
    """One image's box predicted at the anchor of the highest non-background probability: (4,)."""
    score = jnp.max(jax.nn.softmax(cls, axis=-1)[:, 1:], axis=-1)
    best = jnp.argmax(score)
    return offset_inverse(anchors[best][None], bbox[best][None])[0]


def top_iou(out: dict[str, jax.Array], y: dict[str, jax.Array]) -> jax.Array:
    """The IoU of the most confident detection with the example's first ground-truth box: a
    number that says how well one object is found, whatever the anchors' labels. Returns (B,)."""
    boxes = jax.vmap(_top_box)(out["cls"], out["bbox"], out["anchors"])
    iou = jax.vmap(lambda a, b: box_iou(a[None], b[None])[0, 0])(boxes, y["boxes"][:, 0])
    return jnp.nan_to_num(iou)  # an empty predicted and true box: 0 / 0
