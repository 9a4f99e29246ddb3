"""Box geometry for object detection (D2L 13.3-13.4): corner and centre forms, anchor boxes,
intersection over union, labelling anchors with ground truth, offsets, non-maximum suppression.

Boxes are float32 corners (x1, y1, x2, y2) as fractions of the image's width and height unless a
docstring says pixels. Every function works under `jax.jit` with fixed shapes: a variable number
of ground-truth boxes is padded, padding marked by class -1 or a False `valid` entry; loops over
data run as `lax.fori_loop` over a static count. Each follows the book's algorithm step for step,
so that its numbers (and its choices on ties) are the book's.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

# the book's offset scaling (D2L 13.4.3): centres by 10 = 1 / 0.1, log sizes by 5 = 1 / 0.2
CENTER_SCALE = 10.0
SIZE_SCALE = 5.0


def box_corner_to_center(boxes: jax.Array) -> jax.Array:
    """Corners (x1, y1, x2, y2) -> centre and size (cx, cy, w, h) (D2L 13.3.1): (..., 4) -> (..., 4)."""
    x1, y1, x2, y2 = (boxes[..., i] for i in range(4))
    return jnp.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), axis=-1)


def box_center_to_corner(boxes: jax.Array) -> jax.Array:
    """Centre and size (cx, cy, w, h) -> corners (x1, y1, x2, y2) (D2L 13.3.1): (..., 4) -> (..., 4)."""
    cx, cy, w, h = (boxes[..., i] for i in range(4))
    return jnp.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), axis=-1)


def multibox_prior(height: int, width: int, sizes: Sequence[float], ratios: Sequence[float]) -> jax.Array:
    """Anchor boxes centred on every pixel of a height x width map (D2L 13.4.1).

    Per pixel, in the book's order: every size with the first ratio, then the first size with
    every other ratio, len(sizes) + len(ratios) - 1 boxes. An anchor of size s and ratio r is
    s sqrt(r) * height / width wide and s / sqrt(r) high (as fractions of the width and the
    height), so that on a non-square image it is s sqrt(r) times the height wide in pixels: the
    book's width correction. Computed in float32 in the book's order of operations, so the values
    are the book's to the last bit.

    Args:
        height, width: the map's size in pixels (static).
        sizes: anchor sizes s in (0, 1]; ratios: width-to-height ratios r > 0.

    Returns:
        (height * width * (len(sizes) + len(ratios) - 1), 4) corners, pixel-major (row by row),
        the boxes of one pixel consecutive. The book's leading batch axis of 1 is left out.
    """
    # static sizes make the table a constant: it is computed on the host in float32, because XLA
    # would rewrite a division by a constant as a multiplication by its reciprocal, moving the last bit
    f32 = np.float32
    size, ratio = np.asarray(sizes, f32), np.asarray(ratios, f32)
    center_y = (np.arange(height, dtype=f32) + f32(0.5)) * f32(1.0 / height)
    center_x = (np.arange(width, dtype=f32) + f32(0.5)) * f32(1.0 / width)
    shift_y, shift_x = (a.reshape(-1) for a in np.meshgrid(center_y, center_x, indexing="ij"))
    w = np.concatenate((size * np.sqrt(ratio[0]), size[0] * np.sqrt(ratio[1:]))) * f32(height) / f32(width)
    # the book's `sizes[0] / tensor` is PyTorch's reciprocal-then-multiply, which it copies
    h = np.concatenate((size / np.sqrt(ratio[0]), np.reciprocal(np.sqrt(ratio[1:])) * size[0]))
    half = np.stack((-w, -h, w, h), axis=-1) / f32(2)  # (boxes per pixel, 4)
    centers = np.stack((shift_x, shift_y, shift_x, shift_y), axis=-1)  # (height * width, 4)
    return jnp.asarray((centers[:, None, :] + half[None, :, :]).reshape(-1, 4))


def box_area(boxes: jax.Array) -> jax.Array:
    """(..., 4) corners -> (...,) areas."""
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def box_iou(boxes1: jax.Array, boxes2: jax.Array) -> jax.Array:
    """Intersection over union (Jaccard index) of every pair (D2L 13.4.2): (N, 4), (M, 4) -> (N, M).
    Two boxes of zero area give 0 / 0 = NaN, as in the book."""
    upper_left = jnp.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    lower_right = jnp.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    inter = jnp.clip(lower_right - upper_left, 0)
    inter_area = inter[..., 0] * inter[..., 1]
    union = box_area(boxes1)[:, None] + box_area(boxes2)[None, :] - inter_area
    return inter_area / union


def assign_anchor_to_bbox(ground_truth: jax.Array, anchors: jax.Array, valid: jax.Array, iou_threshold: float = 0.5) -> jax.Array:
    """The ground-truth box each anchor is labelled with, or -1 (D2L 13.4.3.1).

    The book's algorithm: first every anchor whose largest IoU with a ground-truth box reaches
    `iou_threshold` takes that box; then, once per ground-truth box, the largest remaining entry
    of the IoU matrix assigns its anchor to its box (overriding the first step), and that
    anchor's row and box's column are discarded. Ties go to the first entry in row-major
    (anchor, box) order, as the book's argmax.

    Args:
        ground_truth: (M, 4) corners, padded; anchors: (N, 4) corners.
        valid: (M,) bool, False for padding (padding after the real boxes keeps the book's ties).
        iou_threshold: the IoU from which an anchor takes its best box in the first step.

    Returns:
        (N,) int32 indices into `ground_truth`, -1 for an anchor left as background.
    """
    ground_truth, anchors, valid = jnp.asarray(ground_truth), jnp.asarray(anchors), jnp.asarray(valid, bool)
    num_boxes = ground_truth.shape[0]
    # padding's columns sit below the discarded entries (-1), so that no pick lands on them
    jaccard = jnp.where(valid[None, :], box_iou(anchors, ground_truth), -2.0)
    best = jnp.argmax(jaccard, axis=1).astype(jnp.int32)
    assigned = jnp.where(jnp.max(jaccard, axis=1) >= iou_threshold, best, -1)
    num_valid = jnp.sum(valid.astype(jnp.int32))

    def pick(k, carry):
        jaccard, assigned = carry
        flat = jnp.argmax(jaccard)
        anchor, box = (flat // num_boxes).astype(jnp.int32), (flat % num_boxes).astype(jnp.int32)
        active = k < num_valid
        assigned = jnp.where(active, assigned.at[anchor].set(box), assigned)
        discarded = jaccard.at[:, box].set(jnp.where(valid[box], -1.0, -2.0)).at[anchor, :].set(jnp.where(valid, -1.0, -2.0))
        return jnp.where(active, discarded, jaccard), assigned

    _, assigned = jax.lax.fori_loop(0, num_boxes, pick, (jaccard, assigned))
    return assigned


def offset_boxes(anchors: jax.Array, assigned: jax.Array, eps: float = 1e-6) -> jax.Array:
    """The offsets that move each anchor onto its box (D2L 13.4.3): (N, 4), (N, 4) -> (N, 4),
    (10 (x_b - x_a) / w_a, 10 (y_b - y_a) / h_a, 5 log(eps + w_b / w_a), 5 log(eps + h_b / h_a))
    with centres and sizes from the corners."""
    anc, box = box_corner_to_center(anchors), box_corner_to_center(assigned)
    offset_xy = CENTER_SCALE * (box[:, :2] - anc[:, :2]) / anc[:, 2:]
    offset_wh = SIZE_SCALE * jnp.log(eps + box[:, 2:] / anc[:, 2:])
    return jnp.concatenate((offset_xy, offset_wh), axis=1)


def offset_inverse(anchors: jax.Array, offsets: jax.Array) -> jax.Array:
    """The boxes that `offsets` (from `offset_boxes`) predict around `anchors` (D2L 13.4.3):
    (N, 4), (N, 4) -> (N, 4) corners."""
    anc = box_corner_to_center(anchors)
    xy = offsets[:, :2] * anc[:, 2:] / CENTER_SCALE + anc[:, :2]
    wh = jnp.exp(offsets[:, 2:] / SIZE_SCALE) * anc[:, 2:]
    return box_center_to_corner(jnp.concatenate((xy, wh), axis=1))


def _target_one(anchors: jax.Array, boxes: jax.Array, classes: jax.Array, iou_threshold: float):
    assigned = assign_anchor_to_bbox(boxes, anchors, classes >= 0, iou_threshold)
    positive = assigned >= 0
    index = jnp.maximum(assigned, 0)
    labels = jnp.where(positive, classes[index] + 1, 0).astype(jnp.int32)
    assigned_boxes = jnp.where(positive[:, None], boxes[index], 0.0)
    mask = jnp.broadcast_to(positive[:, None], anchors.shape).astype(jnp.float32)
    return offset_boxes(anchors, assigned_boxes) * mask, mask, labels


def multibox_target(anchors: jax.Array, boxes: jax.Array, classes: jax.Array, iou_threshold: float = 0.5):
    """Label anchors with classes and offsets from a batch's ground truth (D2L 13.4.3).

    Args:
        anchors: (N, 4) corners.
        boxes: (B, M, 4) ground-truth corners, padded.
        classes: (B, M) int32 classes from 0, -1 for padding.
        iou_threshold: as `assign_anchor_to_bbox`.

    Returns:
        offsets (B, N, 4) float32, zero for background anchors; mask (B, N, 4) float32, 1 where
        an anchor has a box (the book's bbox_mask, unflattened); labels (B, N) int32, 0 for
        background and class + 1 for an anchor's box.
    """
    return jax.vmap(_target_one, in_axes=(None, 0, 0, None))(anchors, boxes, jnp.asarray(classes, jnp.int32), iou_threshold)


def _nms_sorted(boxes: jax.Array, scores: jax.Array, iou_threshold: float):
    """`nms`'s work: (order (N,) by descending score, stable; keep (N,) bool in that order)."""
    order = jnp.argsort(-scores, stable=True)
    ranked = boxes[order]
    later = jnp.arange(boxes.shape[0])

    def visit(i, keep):
        iou = box_iou(jax.lax.dynamic_slice_in_dim(ranked, i, 1), ranked)[0]
        # the book keeps a box whose IoU is <= the threshold; NaN (two empty boxes) is not kept
        suppressed = keep[i] & (later > i) & ~(iou <= iou_threshold)
        return keep & ~suppressed

    return order, jax.lax.fori_loop(0, boxes.shape[0], visit, jnp.ones(boxes.shape[0], bool))


def nms(boxes: jax.Array, scores: jax.Array, iou_threshold: float) -> jax.Array:
    """Non-maximum suppression (D2L 13.4.4): greedily keep the highest-scoring box left and drop
    every box whose IoU with it exceeds `iou_threshold`. Ties in score go to the lower index.

    Args:
        boxes: (N, 4) corners; scores: (N,).

    Returns:
        keep: (N,) bool, in the input's order.
    """
    order, keep_ranked = _nms_sorted(boxes, scores, iou_threshold)
    return jnp.zeros(boxes.shape[0], bool).at[order].set(keep_ranked)


def _detect_one(cls_prob, offset_pred, anchors, nms_threshold, pos_threshold):
    num_anchors = anchors.shape[0]
    conf, class_id = jnp.max(cls_prob[1:], axis=0), jnp.argmax(cls_prob[1:], axis=0)
    predicted = offset_inverse(anchors, offset_pred)
    order, keep_ranked = _nms_sorted(predicted, conf, nms_threshold)
    # the book's row order: kept boxes by descending score, then the others by index
    rank = jnp.zeros(num_anchors, jnp.int32).at[order].set(jnp.arange(num_anchors, dtype=jnp.int32))
    keep = jnp.zeros(num_anchors, bool).at[order].set(keep_ranked)
    rows = jnp.argsort(jnp.where(keep, rank, num_anchors + jnp.arange(num_anchors)))
    class_id = jnp.where(keep, class_id, -1)[rows]
    conf, predicted = conf[rows], predicted[rows]
    below = conf < pos_threshold
    class_id = jnp.where(below, -1, class_id)
    conf = jnp.where(below, 1 - conf, conf)
    return jnp.concatenate((class_id[:, None].astype(jnp.float32), conf[:, None], predicted), axis=1)


def multibox_detection(cls_probs: jax.Array, offset_preds: jax.Array, anchors: jax.Array,
                       nms_threshold: float = 0.5, pos_threshold: float = 0.009) -> jax.Array:
    """Predicted boxes after non-maximum suppression (D2L 13.4.4).

    Each anchor predicts the box `offset_inverse` gives and its most probable non-background
    class; NMS (over all classes at once, as the book) keeps some; a box that is not kept, or
    whose score is below `pos_threshold`, gets class -1 (a low score becomes 1 - score).

    Args:
        cls_probs: (B, C + 1, N) class probabilities, background first.
        offset_preds: (B, N, 4) predicted offsets; anchors: (N, 4) corners.

    Returns:
        (B, N, 6) float32 rows [class id or -1, score, x1, y1, x2, y2]: kept boxes first by
        descending score, then the rest by anchor index (the book's order).
    """
    detect = jax.vmap(_detect_one, in_axes=(0, 0, None, None, None))
    return detect(cls_probs, offset_preds.reshape(offset_preds.shape[0], -1, 4), anchors, nms_threshold, pos_threshold)
