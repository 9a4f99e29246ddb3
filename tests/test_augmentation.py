"""Image augmentation (D2L 13.1): the colour changes against a numpy port of torchvision's
definitions (hue through Python's `colorsys`), the random resized crop against a plain loop of
crop-then-bilinear-resize (and PyTorch's `interpolate` where installed), the draws' ranges, the
old configs' draws kept, and the two experiments end to end on small inputs."""

import colorsys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlrun.core.config import AugmentConfig, ConfigError, FashionMNISTData
from dlrun.core.data import colour as C
from dlrun.core.data import crops
from dlrun.core.data import pipeline as P

LUMA = np.array([0.2989, 0.587, 0.114])


def photos(n=6, h=9, w=11, c=3, seed=0):
    return np.random.default_rng(seed).uniform(0.0, 1.0, (n, h, w, c)).astype(np.float32)


# ---------------------------------------------------------------- numpy references (torchvision's F.adjust_*)


def np_grey(image):
    return image[..., 0] if image.shape[-1] == 1 else image @ LUMA


def np_adjust(name, image, f):
    """One image (h, w, c) float64, one factor: torchvision.transforms.functional's definition."""
    if name == "brightness":
        return np.clip(f * image, 0, 1)
    if name == "contrast":
        return np.clip(f * image + (1 - f) * np_grey(image).mean(), 0, 1)
    if image.shape[-1] == 1:  # saturation and hue leave a grey image alone
        return image
    if name == "saturation":
        return np.clip(f * image + (1 - f) * np_grey(image)[..., None], 0, 1)
    out = np.empty_like(image)
    for i, j in np.ndindex(image.shape[:2]):
        h, s, v = colorsys.rgb_to_hsv(*image[i, j])
        out[i, j] = colorsys.hsv_to_rgb((h + f) % 1.0, s, v)
    return out


def test_rgb_hsv_round_trip_matches_colorsys():
    x = photos(2, 5, 7)
    x[0, 0, :3] = [[0.5, 0.5, 0.5], [1, 0, 0], [0, 0, 0]]  # grey, pure red, black
    hsv = np.asarray(jax.jit(C.rgb_to_hsv)(x))
    ref = np.array([colorsys.rgb_to_hsv(*p) for p in x.reshape(-1, 3).astype(np.float64)]).reshape(hsv.shape)
    np.testing.assert_allclose(hsv, ref, atol=2e-6)
    np.testing.assert_allclose(np.asarray(jax.jit(C.hsv_to_rgb)(hsv)), x, atol=2e-6)


@pytest.mark.parametrize("name", C.JITTERS)
@pytest.mark.parametrize("channels", [3, 1])
def test_each_colour_change_matches_torchvisions_definition(name, channels):
    x = photos(4, c=channels, seed=1)
    f = np.array([0.0, 0.6, 1.0, 1.7]) if name != "hue" else np.array([-0.5, -0.2, 0.1, 0.45])
    out = np.asarray(jax.jit(C.ADJUST[name])(x, f.astype(np.float32)))
    for i in range(len(x)):
        np.testing.assert_allclose(out[i], np_adjust(name, x[i].astype(np.float64), f[i]), atol=3e-6, err_msg=f"image {i}")


def test_jitter_draws_in_torchvisions_ranges_and_orders_per_image():
    cfg = AugmentConfig(brightness=0.5, contrast=1.5, saturation=0.3, hue=0.2)
    jitter = jax.jit(C.draw_jitter, static_argnums=(2, 3))(jax.random.PRNGKey(0), jax.random.PRNGKey(1), 400, cfg)
    f, order = np.asarray(jitter.factors), np.asarray(jitter.order)
    for column, (low, high) in enumerate([(0.5, 1.5), (0.0, 2.5), (0.7, 1.3), (-0.2, 0.2)]):
        assert low <= f[:, column].min() and f[:, column].max() <= high
        assert f[:, column].min() < low + 0.1 and f[:, column].max() > high - 0.1  # the whole range is drawn
    assert all(sorted(row) == [0, 1, 2, 3] for row in order.tolist())
    assert len({tuple(row) for row in order.tolist()}) > 12  # many of the 24 orders occur
    only_two = C.draw_jitter(jax.random.PRNGKey(0), jax.random.PRNGKey(1), 50, AugmentConfig(contrast=0.2, hue=0.1))
    assert set(np.unique(only_two.order)) == {1, 3}
    np.testing.assert_array_equal(only_two.factors[:, 0], 1.0)


def test_colour_jitter_applies_each_images_changes_in_its_order():
    x = photos(8, seed=2)
    cfg = AugmentConfig(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.3)
    k, kb = jax.random.PRNGKey(3), jax.random.PRNGKey(4)
    out = np.asarray(jax.jit(C.colour_jitter, static_argnums=3)(k, kb, x, cfg))
    jitter = C.draw_jitter(k, kb, len(x), cfg)
    for i in range(len(x)):
        ref = x[i].astype(np.float64)
        for j in np.asarray(jitter.order[i]):
            ref = np_adjust(C.JITTERS[j], ref, float(jitter.factors[i, j]))
        np.testing.assert_allclose(out[i], ref, atol=1e-5, err_msg=f"image {i}, order {jitter.order[i]}")


def test_old_augment_configs_draw_exactly_as_before():
    """flip, crop_padding and brightness keep their keys: crop, flip, brightness from
    split(key, 3), in that order, as before the other changes existed."""
    x = jnp.asarray(photos(6, 8, 8, 1, seed=3))
    key = jax.random.PRNGKey(7)
    k_crop, k_flip, k_bright = jax.random.split(key, 3)
    cfg = AugmentConfig(flip=True, crop_padding=2, brightness=0.3)
    expected = P.random_brightness(k_bright, P.random_flip(k_flip, P.random_crop(k_crop, x, 2)), 0.3)
    np.testing.assert_array_equal(P.augment(x, key, cfg), expected)
    factor = jax.random.uniform(k_bright, (6, 1, 1, 1), x.dtype, 0.7, 1.3)  # the factor as it was always drawn
    np.testing.assert_array_equal(P.random_brightness(k_bright, x, 0.3), jnp.clip(x * factor, 0, 1))
    # another colour change on: each image keeps its brightness factor
    jitter = C.draw_jitter(jax.random.fold_in(key, 5), k_bright, 6, AugmentConfig(brightness=0.3, hue=0.1))
    np.testing.assert_array_equal(jitter.factors[:, 0], factor[:, 0, 0, 0])


def test_vertical_flip_gives_each_image_or_its_mirror():
    x = photos(64, seed=4)
    y = np.asarray(P.random_vertical_flip(jax.random.PRNGKey(0), jnp.asarray(x)))
    same = np.all(y == x, axis=(1, 2, 3))
    mirrored = np.all(y == x[:, ::-1], axis=(1, 2, 3))
    assert np.all(same | mirrored) and same.any() and mirrored.any()


# ---------------------------------------------------------------- random resized crop


def np_bilinear(image, out_h, out_w):
    """A plain loop port of PyTorch's bilinear resize, align_corners=False, no antialiasing."""
    h, w = image.shape[:2]
    out = np.zeros((out_h, out_w, image.shape[2]))
    for i in range(out_h):
        y = max((i + 0.5) * h / out_h - 0.5, 0.0)
        y0 = int(y)
        y1, wy = min(y0 + 1, h - 1), y - y0
        for j in range(out_w):
            x = max((j + 0.5) * w / out_w - 0.5, 0.0)
            x0 = int(x)
            x1, wx = min(x0 + 1, w - 1), x - x0
            top = (1 - wx) * image[y0, x0] + wx * image[y0, x1]
            bottom = (1 - wx) * image[y1, x0] + wx * image[y1, x1]
            out[i, j] = (1 - wy) * top + wy * bottom
    return out


def test_resized_crop_is_the_window_resized_bilinearly():
    x = photos(5, 17, 23, seed=5)
    key, size = jax.random.PRNGKey(1), (12, 10)
    out = np.asarray(jax.jit(crops.random_resized_crop, static_argnums=(2, 3, 4))(key, x, size, (0.1, 1.0), (0.5, 2.0)))
    window = crops.draw_window(key, 5, 17, 23, (0.1, 1.0), (0.5, 2.0))
    torch = None
    try:
        import torch
    except ImportError:
        pass
    for i in range(len(x)):
        t, l, h, w = (int(v[i]) for v in window)
        patch = x[i, t : t + h, l : l + w].astype(np.float64)
        np.testing.assert_allclose(out[i], np_bilinear(patch, *size), atol=1e-5)
        if torch is not None:
            ref = torch.nn.functional.interpolate(torch.from_numpy(patch).permute(2, 0, 1)[None], size, mode="bilinear",
                                                  align_corners=False, antialias=False)[0].permute(1, 2, 0).numpy()
            np.testing.assert_allclose(out[i], ref, atol=1e-5)


def test_windows_follow_torchvisions_rules():
    h, w = 40, 60
    draw = jax.jit(crops.draw_window, static_argnums=(1, 2, 3, 4, 5))
    win = draw(jax.random.PRNGKey(2), 2000, h, w, (0.1, 1.0), (0.5, 2.0))
    top, left, ch, cw = (np.asarray(v) for v in win)
    assert np.all((ch >= 1) & (cw >= 1) & (top >= 0) & (left >= 0) & (top + ch <= h) & (left + cw <= w))
    area, ratio = ch * cw / (h * w), cw / ch
    fitted = ~((top == 0) & (left == 0) & (ch == h) & (cw == w))  # the fall-back here is the whole image
    assert np.all(area[fitted] >= 0.1 - 0.02) and np.all((ratio[fitted] > 0.45) & (ratio[fitted] < 2.2))  # up to rounding
    assert np.ptp(top) > h // 2 and np.ptp(left) > w // 2 and area.max() > 0.8 and area.min() < 0.15
    # no try can fit (every window twice as wide as the image allows): the centred fall-back
    assert crops.fallback_window(40, 40, (2.0, 2.0)) == (10, 0, 20, 40)
    win = draw(jax.random.PRNGKey(3), 4, 40, 40, (1.0, 1.0), (2.0, 2.0))
    assert [tuple(int(v[i]) for v in win) for i in range(4)] == [(10, 0, 20, 40)] * 4
    assert crops.fallback_window(30, 90, (0.5, 2.0)) == (0, 15, 30, 60)


def test_pipeline_resized_crop_keeps_the_configured_size_and_evaluation_plain():
    data = FashionMNISTData(resize=16, augment=AugmentConfig(resized_crop=True, vertical_flip=True, contrast=0.3))
    pipe = P.build_pipeline(data, (8, 8, 1))
    x = jnp.asarray(photos(4, 8, 8, 1))
    assert pipe.out_shape == (16, 16, 1) and pipe.apply(x, jax.random.PRNGKey(0), True).shape == (4, 16, 16, 1)
    np.testing.assert_array_equal(pipe.apply(x, None, False), P.resize(x, 16))


def test_augment_config_rejects_bad_ranges():
    for bad in ({"crop_scale": (0.5, 0.2)}, {"crop_scale": (0.1, 1.5)}, {"crop_ratio": (0.0, 2.0)}, {"hue": 0.6}):
        with pytest.raises(ValueError):
            AugmentConfig(**bad)


# ---------------------------------------------------------------- the experiments


def test_demo_writes_the_books_grids(tmp_path):
    from PIL import Image

    from dlrun.core.config import validate
    from experiments import augmentation

    photo = tmp_path / "photo.png"
    Image.fromarray((photos(1, 30, 26, seed=6)[0] * 255).astype(np.uint8)).save(photo)
    cfg = validate({"name": "demo", "experiment": {"name": "augmentation_demo", "image": str(photo), "rows": 1, "cols": 2},
                    "trainer": {"progress": "none"}}, "test")
    summary = augmentation.run_demo(cfg, tmp_path)
    assert set(summary["grids"]) == set(augmentation.TITLES) and summary["photo_shape"] == [30, 26, 3]
    for name in summary["grids"].values():
        assert (tmp_path / name).stat().st_size > 1000
    assert summary["grid_shapes"]["resized_crop"] == [2, 200, 200, 3] and summary["grid_shapes"]["hue"] == [2, 30, 26, 3]
    bad = validate({"name": "demo", "experiment": {"name": "augmentation_demo", "image": str(tmp_path / "summary.json")}}, "test")
    with pytest.raises(ConfigError, match="summary.json"):
        augmentation.run_demo(bad, tmp_path / "bad")


@pytest.mark.slow
def test_training_with_and_without_augmentation(tmp_path, fake_fmnist_dir):
    from dlrun.core.config import validate
    from experiments import augmentation

    raw = {"name": "aug", "experiment": {"name": "augmentation_train"},
           "data": {"name": "fashion_mnist", "dir": str(fake_fmnist_dir), "num_train": 256, "num_val": 128, "batch_size": 64,
                    "augment": {"flip": True, "crop_padding": 1}},
           "model": {"name": "mlp", "hidden": [32]}, "optimizer": {"name": "adam", "lr": 0.01},
           "trainer": {"epochs": 2, "progress": "none", "checkpoint_every": 0}}
    summary = augmentation.run_train(validate(raw, "test"), tmp_path)
    for name in ("augmented", "plain"):
        assert (tmp_path / name / "metrics.csv").is_file() and 0 <= summary[f"{name}/val/acc"] <= 1
    assert summary["val/acc_gain"] == pytest.approx(summary["augmented/val/acc"] - summary["plain/val/acc"])
    assert summary["augmented/train/loss"] != summary["plain/train/loss"]  # the augmentation changed what was trained on
    raw["data"]["augment"] = {}
    with pytest.raises(ConfigError, match="data.augment"):
        augmentation.run_train(validate(raw, "test"), tmp_path / "none")
