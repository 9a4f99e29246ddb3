"""The exact geometry of D2L 13.3-13.5, 13.8 and 13.10: each experiment reproduces the book's
printed values through `run_config`, a wrong book value makes its check fail, and RoI pooling
agrees with a numpy port of torchvision's algorithm."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dlrun.core.config import load_config
from dlrun.core.nn.roi import roi_pool
from dlrun.experiments import geometry_anchors, geometry_book, geometry_pooling, run_config

from .conftest import CONFIGS

PICTURES = {
    "bounding_boxes": ["bounding_boxes.png"], "anchor_boxes": ["anchors.png", "labelling.png", "nms.png"],
    "multiscale_anchors": ["multiscale_anchors.png"], "roi_pooling": ["roi_pooling.png"], "transposed_conv": ["transposed_conv.png"],
}


def run(name, tmp_path):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    summary = run_config(cfg, tmp_path / name, source=f"{name}.yaml")
    return cfg, summary


@pytest.mark.parametrize("name", sorted(PICTURES))
def test_each_experiment_reproduces_the_book(name, tmp_path):
    cfg, summary = run(name, tmp_path)
    low, high = cfg.book.reported
    assert cfg.book.metric == "max_difference" and low <= summary["max_difference"] <= high
    on_disk = json.loads((tmp_path / name / "summary.json").read_text())
    assert on_disk["max_difference"] == summary["max_difference"]
    for picture in PICTURES[name]:
        assert (tmp_path / name / picture).stat().st_size > 1000


@pytest.mark.parametrize("name, book, key, wrong", [
    ("anchor_boxes", geometry_anchors.BOOK["13.4"], "labels", [[0, 1, 2, 0, 1]]),
    ("anchor_boxes", geometry_anchors.BOOK["13.4"], "anchor_250_250", [0.06, 0.07, 0.63, 0.83]),
    ("bounding_boxes", geometry_anchors.BOOK["13.3"], "centers", [[219.0, 280.5, 318.0, 471.0], [527.5, 302.5, 255.0, 382.0]]),
    ("roi_pooling", geometry_pooling.BOOK["13.8"], "output", [[[5, 6], [9, 10]], [[9, 11], [13, 14]]]),
    ("transposed_conv", geometry_pooling.BOOK["13.10"], "stride_2", [[0, 0, 0, 1], [0, 0, 2, 3], [0, 2, 0, 3], [4, 6, 6, 8]]),
])
def test_a_wrong_book_value_fails_the_check(name, book, key, wrong, tmp_path, monkeypatch):
    monkeypatch.setitem(book, key, wrong)
    cfg, summary = run(name, tmp_path)
    assert summary["max_difference"] > cfg.book.reported[1]
    assert summary[f"difference/{key}"] > cfg.book.reported[1]


def test_offsets_are_compared_at_their_printed_precision():
    assert geometry_book.difference([4.1749e-6, 1.4049], [4.17e-6, 1.40], scientific=True) < 0.005
    assert geometry_book.difference([4.18e-6, 1.40], [4.17e-6, 1.40], scientific=True) > 0.005
    assert geometry_book.difference([0.0], [-0.0], scientific=True) == 0
    assert geometry_book.difference([1, 2], [[1, 2]]) == math.inf


# ---- numpy port of torchvision.ops.roi_pool's CPU kernel (NCHW loops there; NHWC here)


def np_roi_pool(features, rois, output_size, spatial_scale):
    pooled_h, pooled_w = output_size
    _, height, width, channels = features.shape
    out = np.zeros((len(rois), pooled_h, pooled_w, channels), np.float32)
    c_round = lambda v: math.floor(abs(v) + 0.5) * (1 if v >= 0 else -1)
    for n, roi in enumerate(rois):
        batch = int(roi[0])
        start_w, start_h = c_round(float(np.float32(roi[1]) * np.float32(spatial_scale))), c_round(float(np.float32(roi[2]) * np.float32(spatial_scale)))
        end_w, end_h = c_round(float(np.float32(roi[3]) * np.float32(spatial_scale))), c_round(float(np.float32(roi[4]) * np.float32(spatial_scale)))
        roi_w, roi_h = max(end_w - start_w + 1, 1), max(end_h - start_h + 1, 1)
        bin_h, bin_w = np.float32(roi_h) / np.float32(pooled_h), np.float32(roi_w) / np.float32(pooled_w)
        for ph in range(pooled_h):
            for pw in range(pooled_w):
                hstart, wstart = int(math.floor(ph * bin_h)), int(math.floor(pw * bin_w))
                hend, wend = int(math.ceil((ph + 1) * bin_h)), int(math.ceil((pw + 1) * bin_w))
                hstart, hend = min(max(hstart + start_h, 0), height), min(max(hend + start_h, 0), height)
                wstart, wend = min(max(wstart + start_w, 0), width), min(max(wend + start_w, 0), width)
                if hend <= hstart or wend <= wstart:
                    continue  # an empty bin is 0
                out[n, ph, pw] = features[batch, hstart:hend, wstart:wend].max(axis=(0, 1))
    return out


pool = jax.jit(roi_pool, static_argnums=(2, 3))


def test_roi_pool_on_the_books_example():
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    rois = np.array([[0, 0, 0, 20, 20], [0, 0, 10, 30, 30]], np.float32)
    out = np.asarray(pool(x, rois, (2, 2), 0.1))
    np.testing.assert_array_equal(out[..., 0], [[[5, 6], [9, 10]], [[9, 11], [13, 15]]])
    np.testing.assert_array_equal(out, np_roi_pool(x, rois, (2, 2), 0.1))


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([0.1, 0.25, 0.5, 1.0]))
@example(seed=2582, scale=0.5)  # a bin ending at 3 * (7 / 3) = 7 cells: XLA's reciprocal made it 8
def test_roi_pool_matches_torchvision_on_random_regions(seed, scale):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(2, 7, 9, 3)).astype(np.float32)
    corners = rng.uniform(-8, 40, (6, 4))
    corners = np.concatenate((np.minimum(corners[:, :2], corners[:, 2:]), np.maximum(corners[:, :2], corners[:, 2:])), axis=1)
    corners[0] = [2.5 / scale, 1.5 / scale, 4.5 / scale, 6.5 / scale]  # halves: C's round goes away from zero
    rois = np.concatenate((rng.integers(0, 2, (6, 1)), corners), axis=1).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(pool(features, rois, (3, 2), scale)), np_roi_pool(features, rois, (3, 2), scale))


def test_roi_pool_matches_torch_adaptive_pooling_on_whole_maps():
    torch = pytest.importorskip("torch")
    # a region covering the whole map, scale 1: torchvision's bins are adaptive max pooling's
    features = np.random.default_rng(0).normal(size=(1, 6, 10, 2)).astype(np.float32)
    out = np.asarray(pool(features, np.array([[0, 0, 0, 9, 5]], np.float32), (4, 3), 1.0))
    want = torch.nn.functional.adaptive_max_pool2d(torch.from_numpy(features).permute(0, 3, 1, 2), (4, 3))
    np.testing.assert_array_equal(out, want.permute(0, 2, 3, 1).numpy())


def test_transposed_conv_layer_is_the_books_loop_on_random_inputs():
    rng = np.random.default_rng(0)
    for shape, kernel in (((3, 4), (2, 3)), ((5, 2), (3, 3))):
        x, k = rng.normal(size=shape).astype(np.float32), rng.normal(size=kernel).astype(np.float32)
        np.testing.assert_allclose(geometry_pooling.tconv(x, k), geometry_pooling.trans_conv(x, k), rtol=1e-5, atol=1e-5)
    w = geometry_pooling.kernel2matrix(np.array([[1, 2], [3, 4]], np.float32))
    x9 = rng.normal(size=(3, 3)).astype(np.float32)
    from dlrun.experiments.conv_kernel import corr2d

    np.testing.assert_allclose((w @ x9.reshape(-1)).reshape(2, 2), corr2d(x9, np.array([[1, 2], [3, 4]], np.float32)), rtol=1e-5)
    assert jnp.asarray(w).shape == (4, 9)
