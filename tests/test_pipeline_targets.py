"""Targets that move with their image (D2L 13.1, 13.6, 13.9): a flip or a crop moves each box and
each mask exactly as it moves the pixels; checked against where a drawn rectangle ends up."""

import jax
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dlrun.core.config import AugmentConfig, FashionMNISTData
from dlrun.core.data.pipeline import augment, build_pipeline


def rectangles(seed: int, b: int = 6, h: int = 12, w: int = 16):
    """Images with one bright rectangle each, its box (fractions) and its mask (label 1)."""
    rng = np.random.default_rng(seed)
    x = np.zeros((b, h, w, 1), np.float32)
    mask = np.zeros((b, h, w), np.int32)
    boxes = np.zeros((b, 1, 4), np.float32)
    for i in range(b):
        x1, y1 = rng.integers(0, w - 4), rng.integers(0, h - 4)
        x2, y2 = x1 + rng.integers(2, 4), y1 + rng.integers(2, 4)
        x[i, y1:y2, x1:x2] = 1.0
        mask[i, y1:y2, x1:x2] = 1
        boxes[i, 0] = (x1 / w, y1 / h, x2 / w, y2 / h)
    return x, {"boxes": boxes, "mask": mask, "label": np.arange(b)}


def box_of(image: np.ndarray) -> np.ndarray:
    """The bounding box (fractions, corners) of the bright pixels."""
    h, w = image.shape[:2]
    ys, xs = np.nonzero(image[..., 0] > 0.5)
    return np.array([xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h])


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), flip=st.booleans(), padding=st.sampled_from([0, 1, 2]))
def test_boxes_and_masks_move_with_their_images(seed, flip, padding):
    x, targets = rectangles(seed)
    cfg = AugmentConfig(flip=flip, crop_padding=padding)
    key = jax.random.PRNGKey(seed)
    out, moved = augment(x, key, cfg, targets)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(augment(x, key, cfg)))  # the same draws as images alone
    out, moved = np.asarray(out), jax.device_get(moved)
    for i in range(len(x)):
        if not (out[i] > 0.5).any():  # the crop pushed the whole rectangle out (it cannot, with padding <= 2)
            continue
        np.testing.assert_allclose(moved["boxes"][i, 0], box_of(out[i]), atol=1e-6)
        np.testing.assert_array_equal(moved["mask"][i], (out[i, ..., 0] > 0.5).astype(np.int32))
    np.testing.assert_array_equal(moved["label"], targets["label"])


def test_the_pipeline_resizes_masks_by_nearest_label_and_keeps_boxes():
    x, targets = rectangles(0, h=8, w=8)
    data = FashionMNISTData(resize=16)
    pipeline = build_pipeline(data, (8, 8, 1))
    out, moved = pipeline.apply_pair(x, targets, None, False)
    assert out.shape == (6, 16, 16, 1) and moved["mask"].shape == (6, 16, 16)
    assert set(np.unique(np.asarray(moved["mask"]))) <= {0, 1}
    np.testing.assert_array_equal(np.asarray(moved["mask"])[:, ::2, ::2], targets["mask"])
    np.testing.assert_array_equal(moved["boxes"], targets["boxes"])


def test_the_training_step_moves_masks_with_the_images_it_augments():
    """A per-pixel classifier trained on flipped and cropped images sees its masks flipped and
    cropped alike: the step with the pipeline equals the plain step on the batch the pipeline
    makes with the same key."""
    import jax.numpy as jnp
    import optax

    from dlrun.core.data import Dataset
    from dlrun.core.nn import layers as L
    from dlrun.core.nn.losses import Loss
    from dlrun.core.nn.models import from_layer, pipeline_key, with_targets
    from dlrun.core.training.setup import moving_targets
    from dlrun.core.training.state import Arrays, init_state
    from dlrun.core.training.steps import make_train_step

    x, targets = rectangles(3, b=4, h=8, w=8)
    y = {"mask": targets["mask"]}
    assert moving_targets(Dataset(x, y, x[:0], {"mask": y["mask"][:0]}, num_classes=2))
    pipeline = build_pipeline(FashionMNISTData(augment=AugmentConfig(flip=True, crop_padding=1)), (8, 8, 1))
    model = with_targets(from_layer(L.conv2d(2, 1), (8, 8, 1)), pipeline.apply_pair, (8, 8, 1))

    def pixel_loss(out, y):
        log_p = jax.nn.log_softmax(out, -1)
        return -jnp.take_along_axis(log_p, y["mask"][..., None], -1)[..., 0].mean(axis=(1, 2))

    loss, optimizer = Loss(pixel_loss, classify=False), optax.sgd(0.5)
    state = init_state(model, optimizer, jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(11)
    batch = Arrays(jnp.asarray(x), {"mask": jnp.asarray(y["mask"])})
    with_pipeline, _ = make_train_step(model, loss, optimizer)(state, batch, key)
    px, py = model.prepare(batch.x, batch.y, pipeline_key(key), True)
    assert not np.array_equal(np.asarray(py["mask"]), y["mask"])  # the draw moved some masks
    plain, _ = make_train_step(model._replace(prepare=None), loss, optimizer)(state, Arrays(px, py), key)
    jax.tree_util.tree_map(np.testing.assert_array_equal, with_pipeline.params, plain.params)


def bright_box(image: np.ndarray) -> np.ndarray | None:
    return box_of(image) if (image[..., 0] > 0.5).any() else None


def mask_box(mask: np.ndarray) -> np.ndarray | None:
    return box_of(mask[..., None].astype(np.float32)) if mask.any() else None


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**16), flip=st.booleans(), vertical=st.booleans(), resized=st.booleans(),
       padding=st.sampled_from([0, 1]))
def test_boxes_and_masks_move_with_vertical_flips_and_resized_crops(seed, flip, vertical, resized, padding):
    """Top-bottom flips move boxes and masks exactly. A random resized crop resamples: a
    rectangle's edge lands between output pixels, so its bright pixels (bilinear, > 0.5) and
    its mask (nearest label) end within one output pixel of where its box says."""
    x, targets = rectangles(seed)
    cfg = AugmentConfig(flip=flip, vertical_flip=vertical, resized_crop=resized, crop_padding=padding,
                        crop_scale=(0.3, 1.0), crop_ratio=(0.6, 1.6))
    key = jax.random.PRNGKey(seed)
    out, moved = augment(x, key, cfg, targets)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(augment(x, key, cfg)))
    out, moved = np.asarray(out), jax.device_get(moved)
    h, w = x.shape[1:3]
    tolerance = np.array([1 / w, 1 / h, 1 / w, 1 / h]) + 1e-6 if resized else 1e-6
    assert out.shape == x.shape and moved["mask"].shape == targets["mask"].shape
    for i in range(len(x)):
        image_box, label_box = bright_box(out[i]), mask_box(moved["mask"][i])
        if image_box is None or label_box is None:  # the window left the rectangle out (or nearly)
            continue
        assert np.all(np.abs(moved["boxes"][i, 0] - image_box) <= tolerance), (moved["boxes"][i, 0], image_box)
        assert np.all(np.abs(moved["boxes"][i, 0] - label_box) <= tolerance), (moved["boxes"][i, 0], label_box)
        if not resized:
            np.testing.assert_array_equal(moved["mask"][i], (out[i, ..., 0] > 0.5).astype(np.int32))
    assert set(np.unique(moved["mask"])) <= {0, 1}  # labels are picked, never blended
    np.testing.assert_array_equal(moved["label"], targets["label"])


def test_a_vertical_flip_mirrors_a_box_top_to_bottom():
    from dlrun.core.data.pipeline import vertical_flip_targets

    boxes = np.array([[[0.1, 0.2, 0.4, 0.5]], [[0.1, 0.2, 0.4, 0.5]]], np.float32)
    moved = vertical_flip_targets(np.array([True, False]), {"boxes": boxes})
    np.testing.assert_allclose(moved["boxes"][:, 0], [[0.1, 0.5, 0.4, 0.8], [0.1, 0.2, 0.4, 0.5]], atol=1e-7)
