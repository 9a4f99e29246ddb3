"""core.nn.boxes against plain numpy ports of the book's PyTorch code (D2L 13.3-13.4), line for
line, on the book's examples and on random boxes; and under jit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dlrun.core.nn import boxes as B

# ---- numpy ports of the book's code (d2l/torch.py, D2L 13.3-13.4), loops kept as the book has them


def np_corner_to_center(boxes):
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    return np.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), axis=-1)


def np_center_to_corner(boxes):
    cx, cy, w, h = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    return np.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), axis=-1)


def np_multibox_prior(in_height, in_width, sizes, ratios):
    f32 = np.float32
    size_t, ratio_t = np.array(sizes, f32), np.array(ratios, f32)
    boxes_per_pixel = len(sizes) + len(ratios) - 1
    center_h = (np.arange(in_height).astype(f32) + f32(0.5)) * f32(1.0 / in_height)
    center_w = (np.arange(in_width).astype(f32) + f32(0.5)) * f32(1.0 / in_width)
    shift_y, shift_x = np.meshgrid(center_h, center_w, indexing="ij")
    shift_y, shift_x = shift_y.reshape(-1), shift_x.reshape(-1)
    w = np.concatenate((size_t * np.sqrt(ratio_t[0]), f32(sizes[0]) * np.sqrt(ratio_t[1:]))) * f32(in_height) / f32(in_width)
    # `python float / tensor` in PyTorch is tensor.reciprocal() * float
    h = np.concatenate((size_t / np.sqrt(ratio_t[0]), np.reciprocal(np.sqrt(ratio_t[1:])) * f32(sizes[0])))
    manip = np.tile(np.stack((-w, -h, w, h)).T, (in_height * in_width, 1)) / f32(2)
    grid = np.repeat(np.stack([shift_x, shift_y, shift_x, shift_y], axis=1), boxes_per_pixel, axis=0)
    return (grid + manip).astype(f32)


def np_box_iou(boxes1, boxes2):
    area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    upper_left = np.maximum(boxes1[:, None, :2], boxes2[:, :2])
    lower_right = np.minimum(boxes1[:, None, 2:], boxes2[:, 2:])
    inters = np.clip(lower_right - upper_left, 0, None)
    inter = inters[:, :, 0] * inters[:, :, 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / (area(boxes1)[:, None] + area(boxes2) - inter)


def np_assign_anchor_to_bbox(ground_truth, anchors, iou_threshold=0.5):
    num_anchors, num_gt = anchors.shape[0], ground_truth.shape[0]
    jaccard = np_box_iou(anchors, ground_truth)
    anchors_bbox_map = np.full((num_anchors,), -1, np.int64)
    max_ious, indices = jaccard.max(axis=1), jaccard.argmax(axis=1)
    anc_i = np.nonzero(max_ious >= iou_threshold)[0]
    anchors_bbox_map[anc_i] = indices[max_ious >= iou_threshold]
    for _ in range(num_gt):
        max_idx = np.argmax(jaccard)
        box_idx, anc_idx = max_idx % num_gt, max_idx // num_gt
        anchors_bbox_map[anc_idx] = box_idx
        jaccard[:, box_idx] = -1
        jaccard[anc_idx, :] = -1
    return anchors_bbox_map


def np_offset_boxes(anchors, assigned_bb, eps=1e-6):
    c_anc, c_bb = np_corner_to_center(anchors), np_corner_to_center(assigned_bb)
    offset_xy = 10 * (c_bb[:, :2] - c_anc[:, :2]) / c_anc[:, 2:]
    offset_wh = 5 * np.log(eps + c_bb[:, 2:] / c_anc[:, 2:])
    return np.concatenate([offset_xy, offset_wh], axis=1)


def np_multibox_target(anchors, labels):
    """labels: (B, M, 5) rows [class, x1, y1, x2, y2], as the book's."""
    out_offset, out_mask, out_class = [], [], []
    num_anchors = anchors.shape[0]
    for label in labels:
        bbox_map = np_assign_anchor_to_bbox(label[:, 1:], anchors)
        bbox_mask = np.repeat((bbox_map >= 0).astype(np.float32)[:, None], 4, axis=1)
        class_labels = np.zeros(num_anchors, np.int64)
        assigned_bb = np.zeros((num_anchors, 4), np.float32)
        indices_true = np.nonzero(bbox_map >= 0)[0]
        bb_idx = bbox_map[indices_true]
        class_labels[indices_true] = label[bb_idx, 0].astype(np.int64) + 1
        assigned_bb[indices_true] = label[bb_idx, 1:]
        with np.errstate(divide="ignore"):
            offset = np_offset_boxes(anchors, assigned_bb) * bbox_mask
        out_offset.append(offset.reshape(-1))
        out_mask.append(bbox_mask.reshape(-1))
        out_class.append(class_labels)
    return np.stack(out_offset), np.stack(out_mask), np.stack(out_class)


def np_offset_inverse(anchors, offset_preds):
    anc = np_corner_to_center(anchors)
    xy = offset_preds[:, :2] * anc[:, 2:] / 10 + anc[:, :2]
    wh = np.exp(offset_preds[:, 2:] / 5) * anc[:, 2:]
    return np_center_to_corner(np.concatenate((xy, wh), axis=1))


def np_nms(boxes, scores, iou_threshold):
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        if order.size == 1:
            break
        iou = np_box_iou(boxes[i].reshape(-1, 4), boxes[order[1:]].reshape(-1, 4)).reshape(-1)
        order = order[np.nonzero(iou <= iou_threshold)[0] + 1]
    return np.array(keep, np.int64)


def np_multibox_detection(cls_probs, offset_preds, anchors, nms_threshold=0.5, pos_threshold=0.009):
    out = []
    num_anchors = anchors.shape[0]
    for cls_prob, offset_pred in zip(cls_probs, offset_preds):
        conf, class_id = cls_prob[1:].max(axis=0), cls_prob[1:].argmax(axis=0)
        predicted = np_offset_inverse(anchors, offset_pred.reshape(-1, 4))
        keep = np_nms(predicted, conf, nms_threshold)
        uniques, counts = np.unique(np.concatenate((keep, np.arange(num_anchors))), return_counts=True)
        non_keep = uniques[counts == 1]
        order = np.concatenate((keep, non_keep))
        class_id = class_id.astype(np.float32)
        class_id[non_keep] = -1
        class_id, conf, predicted = class_id[order], conf[order].copy(), predicted[order]
        below = conf < pos_threshold
        class_id[below] = -1
        conf[below] = 1 - conf[below]
        out.append(np.concatenate((class_id[:, None], conf[:, None], predicted), axis=1))
    return np.stack(out)


# compiled once per shape: the random cases below share their shapes, the padding varying
assign = jax.jit(B.assign_anchor_to_bbox)
target = jax.jit(B.multibox_target)
nms = jax.jit(B.nms, static_argnums=2)
detect = jax.jit(B.multibox_detection, static_argnums=(3, 4))


# ---- the book's examples (D2L 13.4.3-13.4.4)

GROUND_TRUTH = np.array([[0, 0.1, 0.08, 0.52, 0.92], [1, 0.55, 0.2, 0.9, 0.88]], np.float32)
ANCHORS = np.array([[0, 0.1, 0.2, 0.3], [0.15, 0.2, 0.4, 0.4], [0.63, 0.05, 0.88, 0.98],
                    [0.66, 0.45, 0.8, 0.8], [0.57, 0.3, 0.92, 0.9]], np.float32)
NMS_ANCHORS = np.array([[0.1, 0.08, 0.52, 0.92], [0.08, 0.2, 0.56, 0.95],
                        [0.15, 0.3, 0.62, 0.91], [0.55, 0.2, 0.9, 0.88]], np.float32)
NMS_CLS_PROBS = np.array([[0] * 4, [0.9, 0.8, 0.7, 0.1], [0.1, 0.2, 0.3, 0.9]], np.float32)


def test_corner_center_round_trip_on_the_book_boxes():
    pixels = np.array([[60, 45, 378, 516], [400, 112, 655, 493]], np.float32)
    center = np.asarray(B.box_corner_to_center(jnp.asarray(pixels)))
    np.testing.assert_allclose(center, np_corner_to_center(pixels))
    np.testing.assert_array_equal(np.asarray(B.box_center_to_corner(center)), pixels)
    assert B.box_corner_to_center(jnp.zeros((2, 3, 4))).shape == (2, 3, 4)


@pytest.mark.parametrize("shape, sizes, ratios", [
    ((561, 728), (0.75, 0.5, 0.25), (1, 2, 0.5)), ((4, 4), (0.15,), (1, 2, 0.5)), ((3, 5), (0.2, 0.4), (1.5, 0.7, 3.0)),
])
def test_multibox_prior_is_the_books_to_the_bit(shape, sizes, ratios):
    got = np.asarray(B.multibox_prior(*shape, sizes, ratios))
    want = np_multibox_prior(*shape, sizes, ratios)
    assert got.shape == (shape[0] * shape[1] * (len(sizes) + len(ratios) - 1), 4) and got.dtype == np.float32
    np.testing.assert_array_equal(got, want)


def test_multibox_prior_matches_the_book_in_torch():
    torch = pytest.importorskip("torch")
    h, w, sizes, ratios = 7, 11, [0.75, 0.5, 0.25], [1, 2, 0.5]
    size_t, ratio_t = torch.tensor(sizes), torch.tensor(ratios)
    center_h = (torch.arange(h) + 0.5) * (1.0 / h)
    center_w = (torch.arange(w) + 0.5) * (1.0 / w)
    sy, sx = (a.reshape(-1) for a in torch.meshgrid(center_h, center_w, indexing="ij"))
    ww = torch.cat((size_t * torch.sqrt(ratio_t[0]), sizes[0] * torch.sqrt(ratio_t[1:]))) * h / w
    hh = torch.cat((size_t / torch.sqrt(ratio_t[0]), sizes[0] / torch.sqrt(ratio_t[1:])))
    manip = torch.stack((-ww, -hh, ww, hh)).T.repeat(h * w, 1) / 2
    want = torch.stack([sx, sy, sx, sy], dim=1).repeat_interleave(len(sizes) + len(ratios) - 1, dim=0) + manip
    np.testing.assert_array_equal(np.asarray(B.multibox_prior(h, w, sizes, ratios)), want.numpy())


def test_labelling_the_books_five_anchors():
    offsets, mask, labels = target(jnp.asarray(ANCHORS), jnp.asarray(GROUND_TRUTH[None, :, 1:]),
                                              jnp.asarray(GROUND_TRUTH[None, :, 0], jnp.int32))
    want_offsets, want_mask, want_labels = np_multibox_target(ANCHORS, GROUND_TRUTH[None])
    assert offsets.shape == (1, 5, 4) and mask.shape == (1, 5, 4) and labels.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(labels), want_labels)
    np.testing.assert_array_equal(np.asarray(labels), [[0, 1, 2, 0, 2]])  # the book's printed labels
    np.testing.assert_array_equal(np.asarray(mask).reshape(1, -1), want_mask)
    np.testing.assert_allclose(np.asarray(offsets).reshape(1, -1), want_offsets, rtol=1e-5, atol=1e-5)


def test_padding_changes_nothing():
    rng = np.random.default_rng(0)
    anchors = np.asarray(B.multibox_prior(6, 6, (0.3, 0.6), (1, 2, 0.5)))
    gt = GROUND_TRUTH[:, 1:]
    padded = np.concatenate((gt, rng.uniform(0, 1, (3, 4)).astype(np.float32)))
    classes = np.array([0, 1, -1, -1, -1], np.int32)
    got = target(jnp.asarray(anchors), jnp.asarray(padded[None]), jnp.asarray(classes[None]))
    want = np_multibox_target(anchors, GROUND_TRUTH[None])
    for g, w in zip(got, want):
        np.testing.assert_allclose(np.asarray(g).reshape(w.shape), w, rtol=1e-5, atol=1e-5)


def random_boxes(rng, n):
    xy = rng.uniform(0, 0.8, (n, 2))
    wh = rng.uniform(0.05, 0.5, (n, 2))
    return np.concatenate((xy, np.minimum(xy + wh, 1.0)), axis=1).astype(np.float32)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), num_boxes=st.integers(1, 4))
def test_assignment_and_targets_on_random_boxes(seed, num_boxes):
    rng = np.random.default_rng(seed)
    anchors, gt = random_boxes(rng, 24), random_boxes(rng, 4)  # boxes past num_boxes are padding
    valid = np.arange(4) < num_boxes
    want = np_assign_anchor_to_bbox(gt[:num_boxes], anchors)
    np.testing.assert_array_equal(np.asarray(assign(gt, anchors, valid)), want)
    np.testing.assert_allclose(np.asarray(B.box_iou(anchors, gt)), np_box_iou(anchors, gt), rtol=1e-6, atol=1e-7)
    classes = np.where(valid, rng.integers(0, 3, 4), -1).astype(np.int32)
    got = target(anchors, gt[None], classes[None])
    want = np_multibox_target(anchors, np.concatenate((classes[:, None], gt), axis=1)[None, :num_boxes].astype(np.float32))
    for g, w in zip(got, want):
        np.testing.assert_allclose(np.asarray(g).reshape(w.shape), w, rtol=1e-4, atol=1e-4)


@settings(max_examples=25, deadline=None)
@given(boxes=hnp.arrays(np.float32, (6, 4), elements=st.floats(-2, 2, width=32)),
       offsets=hnp.arrays(np.float32, (6, 4), elements=st.floats(-3, 3, width=32)))
def test_offsets_invert(boxes, offsets):
    anchors = np.concatenate((boxes[:, :2], boxes[:, :2] + np.abs(boxes[:, 2:]) + 0.1), axis=1)
    predicted = np.asarray(B.offset_inverse(anchors, offsets))
    np.testing.assert_allclose(predicted, np_offset_inverse(anchors, offsets), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(B.offset_boxes(anchors, predicted)), offsets, rtol=1e-3, atol=1e-3)


def test_nms_and_detection_on_the_books_example():
    keep = np.asarray(nms(NMS_ANCHORS, NMS_CLS_PROBS[1:].max(0), 0.5))
    np.testing.assert_array_equal(np.nonzero(keep)[0], sorted(np_nms(NMS_ANCHORS, NMS_CLS_PROBS[1:].max(0), 0.5)))
    out = np.asarray(detect(NMS_CLS_PROBS[None], np.zeros((1, 4, 4), np.float32), NMS_ANCHORS, 0.5, 0.009))
    want = np_multibox_detection(NMS_CLS_PROBS[None], np.zeros((1, 16), np.float32), NMS_ANCHORS)
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, -1, -1])  # the book's printed classes


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), threshold=st.sampled_from([0.1, 0.3, 0.5, 0.7]))
def test_nms_and_detection_on_random_boxes(seed, threshold):
    rng = np.random.default_rng(seed)
    n = 16
    boxes = random_boxes(rng, n)
    scores = rng.permutation(n).astype(np.float32) / n  # distinct scores: the order is unambiguous
    keep = np.asarray(nms(boxes, scores, threshold))
    np.testing.assert_array_equal(np.nonzero(keep)[0], np.sort(np_nms(boxes, scores, threshold)))
    probs = rng.dirichlet(np.ones(4), n).T.astype(np.float32)[None]
    offsets = rng.normal(0, 0.5, (1, n, 4)).astype(np.float32)
    got = np.asarray(detect(probs, offsets, boxes, threshold, 0.2))
    want = np_multibox_detection(probs, offsets.reshape(1, -1), boxes, threshold, 0.2)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_everything_runs_under_jit_and_vmap():
    anchors = jnp.asarray(B.multibox_prior(4, 4, (0.2, 0.5), (1, 2, 0.5)))
    boxes = jnp.asarray(np.stack([GROUND_TRUTH[:, 1:], GROUND_TRUTH[::-1, 1:]]))
    classes = jnp.asarray([[0, 1], [2, -1]], jnp.int32)
    offsets, mask, labels = target(anchors, boxes, classes)
    # the second image holds one box of class 2 and one padded row, which must label no anchor
    want_offsets, want_mask, want_labels = np_multibox_target(np.asarray(anchors), np.array([[[2, *GROUND_TRUTH[1, 1:]]]], np.float32))
    np.testing.assert_allclose(np.asarray(offsets[1]).reshape(-1), want_offsets[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(labels[1]), want_labels[0])
    n = anchors.shape[0]
    probs = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(0), (2, 3, n)), axis=1)
    out = detect(probs, jnp.zeros((2, n, 4)), anchors, 0.5, 0.009)
    assert out.shape == (2, n, 6)
    np.testing.assert_allclose(np.asarray(out), np_multibox_detection(np.asarray(probs), np.zeros((2, n * 4)), np.asarray(anchors)), atol=1e-6)
    assert nms(anchors, probs[0, 1], 0.5).dtype == jnp.bool_
