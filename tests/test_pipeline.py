"""The device-side input pipeline: resize per batch, augmentation in training only, drawn from
the step's key."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlrun.core.config import AugmentConfig, FashionMNISTData
from dlrun.core.data import pipeline as P


def images(n=6, side=8, seed=0):
    return jnp.asarray(np.random.default_rng(seed).uniform(0.1, 0.9, (n, side, side, 1)).astype(np.float32))


def test_resize_keeps_a_constant_image_and_the_mean_of_a_smooth_one():
    x = jnp.full((2, 28, 28, 1), 0.4)
    y = P.resize(x, 96)
    assert y.shape == (2, 96, 96, 1)
    np.testing.assert_allclose(y, 0.4, atol=1e-6)
    ramp = jnp.broadcast_to(jnp.linspace(0, 1, 28)[None, None, :, None], (1, 28, 28, 1))
    up = P.resize(ramp, 56)
    assert np.all(np.diff(np.asarray(up[0, 0, :, 0])) >= -1e-6)  # bilinear keeps a ramp monotone
    assert float(up.mean()) == pytest.approx(float(ramp.mean()), abs=1e-3)


def test_flip_gives_each_image_or_its_mirror_and_both_occur():
    x = images(64)
    y = P.random_flip(jax.random.PRNGKey(0), x)
    same = np.all(np.isclose(y, x), axis=(1, 2, 3))
    mirrored = np.all(np.isclose(y, x[:, :, ::-1, :]), axis=(1, 2, 3))
    assert np.all(same | mirrored) and same.any() and mirrored.any()


def test_crop_is_a_shift_of_the_zero_padded_image():
    x, pad = images(16), 2
    y = np.asarray(P.random_crop(jax.random.PRNGKey(1), x, pad))
    padded = np.pad(np.asarray(x), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    offsets = set()
    for i in range(len(x)):
        found = [(a, b) for a in range(2 * pad + 1) for b in range(2 * pad + 1)
                 if np.array_equal(y[i], padded[i, a : a + 8, b : b + 8])]
        assert found, i
        offsets.add(found[0])
    assert len(offsets) > 1


def test_brightness_scales_each_image_by_one_factor_in_range():
    x = images(32)
    y = np.asarray(P.random_brightness(jax.random.PRNGKey(2), x, 0.1))  # 0.9 * 1.1 < 1: no clipping
    ratios = y / np.asarray(x)
    per_image = ratios.reshape(32, -1)
    np.testing.assert_allclose(per_image, np.broadcast_to(per_image[:, :1], per_image.shape), rtol=1e-5)
    assert np.all((per_image >= 0.9 - 1e-6) & (per_image <= 1.1 + 1e-6)) and np.ptp(per_image[:, 0]) > 0.01


def test_pipeline_augments_in_training_only_and_draws_from_the_key():
    cfg = FashionMNISTData(resize=12, augment=AugmentConfig(flip=True, crop_padding=2, brightness=0.2))
    pipe = P.build_pipeline(cfg, (8, 8, 1))
    assert pipe.out_shape == (12, 12, 1) and not pipe.identity
    x = images()
    evaluated = pipe.apply(x, None, False)
    np.testing.assert_array_equal(evaluated, P.resize(x, 12))
    a, b = pipe.apply(x, jax.random.PRNGKey(0), True), pipe.apply(x, jax.random.PRNGKey(0), True)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, pipe.apply(x, jax.random.PRNGKey(1), True))
    with pytest.raises(ValueError, match="needs a PRNG key"):
        pipe.apply(x, None, True)


def test_no_resize_and_no_augmentation_is_the_identity():
    assert P.build_pipeline(FashionMNISTData(), (28, 28, 1)).identity
    assert P.build_pipeline(FashionMNISTData(resize=28), (28, 28, 1)).identity
