"""The Vision Transformer (D2L 11.8): the book's parameter count, patches against a loop, and
the patch embedding against the book's convolution with kernel = stride = patch size."""

import jax
import jax.numpy as jnp
import numpy as np

from dlrun.core.config import load_config
from dlrun.core.data.spec import BatchSpec
from dlrun.core.nn.models import build_model
from dlrun.core.nn.params import count
from dlrun.core.nn.vit import patches

from .conftest import CONFIGS


def test_the_books_vit_has_its_parameter_count():
    cfg = load_config(CONFIGS / "vit.yaml")
    params, _ = jax.eval_shape(build_model(cfg.model, BatchSpec((96, 96, 1), 10)).init, jax.random.PRNGKey(0))
    assert count(params) == 6_457_866


def test_patches_are_the_images_tiles_in_row_major_order():
    x = np.random.default_rng(0).normal(size=(2, 8, 12, 3)).astype(np.float32)
    got = np.asarray(patches(jnp.asarray(x), 4))
    assert got.shape == (2, 6, 48)
    for b in range(2):
        for i in range(2):
            for j in range(3):
                np.testing.assert_array_equal(got[b, i * 3 + j], x[b, 4 * i : 4 * i + 4, 4 * j : 4 * j + 4].reshape(-1))


def test_the_patch_embedding_is_the_books_strided_convolution():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 8, 8, 2)).astype(np.float32)
    w = rng.normal(size=(4, 4, 2, 5)).astype(np.float32)  # HWIO
    conv = jax.lax.conv_general_dilated(jnp.asarray(x), jnp.asarray(w), (4, 4), "VALID",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    dense = patches(jnp.asarray(x), 4) @ jnp.asarray(w.reshape(-1, 5))
    np.testing.assert_allclose(np.asarray(dense), np.asarray(conv).reshape(2, 4, 5), rtol=1e-5, atol=1e-5)
