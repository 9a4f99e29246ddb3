"""Convolutions and pooling: the fast formulations equal the straightforward ones, and both equal
a plain numpy loop (D2L 6.2's `corr2d`), in outputs and in gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlrun.core.config import load_config
from dlrun.core.data.spec import BatchSpec
from dlrun.core.nn import conv as C
from dlrun.core.nn.models import build_model

from .conftest import CONFIGS


def corr2d_numpy(x, w, padding):
    """Cross-correlation by definition, in float64: x (B, H, W, Ci), w (kh, kw, Ci, Co)."""
    x = np.pad(x.astype(np.float64), ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    kh, kw = w.shape[:2]
    h, wd = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    out = np.zeros((x.shape[0], h, wd, w.shape[3]))
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("bhwc,co->bhwo", x[:, i : i + h, j : j + wd, :], w[i, j])
    return out


# (in channels, out channels, image size, padding): LeNet's two convolutions, and odd sizes
SHAPES = [(1, 6, 28, 2), (6, 16, 14, 0), (3, 5, 9, 1), (1, 2, 7, 0), (2, 3, 16, 2)]


@pytest.mark.parametrize("c_in, c_out, size, padding", SHAPES)
def test_both_convolutions_match_the_definition(c_in, c_out, size, padding):
    rng = np.random.default_rng(c_in + c_out)
    x = rng.standard_normal((3, size, size, c_in)).astype(np.float32)
    w = rng.standard_normal((5, 5, c_in, c_out)).astype(np.float32)
    expected = corr2d_numpy(x, w, padding)
    for impl in ("xla", "cpu"):
        np.testing.assert_allclose(C.conv2d(jnp.asarray(x), jnp.asarray(w), padding, impl=impl), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("c_in, c_out, size, padding", SHAPES)
def test_cpu_convolution_gradients_equal_xla_and_finite_differences(c_in, c_out, size, padding):
    rng = np.random.default_rng(size)
    x = jnp.asarray(rng.standard_normal((4, size, size, c_in)).astype(np.float32))
    w = jnp.asarray(rng.standard_normal((5, 5, c_in, c_out)).astype(np.float32))
    probe = jnp.asarray(rng.standard_normal(C.conv2d(x, w, padding, impl="xla").shape).astype(np.float32))

    def loss(impl):
        return lambda x, w: jnp.sum(jnp.sin(C.conv2d(x, w, padding, impl=impl)) * probe)

    gx_xla, gw_xla = jax.grad(loss("xla"), (0, 1))(x, w)
    gx_cpu, gw_cpu = jax.jit(jax.grad(loss("cpu"), (0, 1)))(x, w)
    np.testing.assert_allclose(gx_cpu, gx_xla, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(gw_cpu, gw_xla, rtol=1e-4, atol=1e-3)
    # and an independent check of one filter coordinate: central difference in float64
    f = lambda w: np.sum(np.sin(corr2d_numpy(np.asarray(x), w, padding)) * np.asarray(probe))  # noqa: E731
    w64, eps = np.asarray(w, np.float64), 1e-5
    bump = np.zeros_like(w64)
    bump[2, 1, 0, c_out - 1] = eps
    numeric = (f(w64 + bump) - f(w64 - bump)) / (2 * eps)
    assert gw_cpu[2, 1, 0, c_out - 1] == pytest.approx(numeric, rel=1e-3, abs=1e-3)


def test_strided_convolution_goes_to_xla():
    x = jnp.ones((2, 9, 9, 2))
    w = jnp.ones((3, 3, 2, 4))
    y = C.conv2d(x, w, padding=1, stride=2, impl="cpu")
    assert y.shape == (2, 5, 5, 4)
    np.testing.assert_allclose(y[0, 2, 2], 18.0)  # an interior window sums 3*3*2 ones


def pool_numpy(x, kind, window, stride, padding):
    fill = 0.0 if kind == "avg" else -np.inf
    x = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)), constant_values=fill)
    h = (x.shape[1] - window) // stride + 1
    w = (x.shape[2] - window) // stride + 1
    out = np.empty((x.shape[0], h, w, x.shape[3]))
    for i in range(h):
        for j in range(w):
            patch = x[:, i * stride : i * stride + window, j * stride : j * stride + window, :]
            out[:, i, j] = patch.mean(axis=(1, 2)) if kind == "avg" else patch.max(axis=(1, 2))
    return out


@pytest.mark.parametrize("kind", ["avg", "max"])
@pytest.mark.parametrize("window, stride, padding, size", [(2, 2, 0, 28), (2, 2, 0, 10), (3, 2, 1, 7), (3, 1, 0, 6)])
def test_pooling_matches_the_definition(kind, window, stride, padding, size):
    x = np.random.default_rng(size).standard_normal((2, size, size, 3)).astype(np.float32)
    y = C.pool2d(jnp.asarray(x), kind, window, stride, padding)
    np.testing.assert_allclose(y, pool_numpy(x, kind, window, stride, padding), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["avg", "max"])
def test_reshape_pooling_gradient_equals_reduce_window(kind):
    x = jax.random.normal(jax.random.PRNGKey(1), (3, 8, 8, 4))
    op, init = (jax.lax.add, 0.0) if kind == "avg" else (jax.lax.max, -jnp.inf)
    scale = 4.0 if kind == "avg" else 1.0
    window = lambda x: jax.lax.reduce_window(x, init, op, (1, 2, 2, 1), (1, 2, 2, 1), "VALID") / scale  # noqa: E731
    g_fast = jax.grad(lambda x: jnp.sum(jnp.cos(C.pool2d(x, kind, 2))))(x)
    g_ref = jax.grad(lambda x: jnp.sum(jnp.cos(window(x))))(x)
    np.testing.assert_allclose(g_fast, g_ref, rtol=1e-6, atol=1e-6)


def test_lenet_is_the_books_and_both_formulations_agree(key):
    """D2L 6.6: 6@28x28 -> 6@14x14 -> 16@10x10 -> 16@5x5 -> 120 -> 84 -> 10; 61,706 parameters."""
    outs, grads = {}, {}
    for impl in ("xla", "cpu"):
        cfg = load_config(CONFIGS / "lenet.yaml", [f"model.conv_impl={impl}"])
        model = build_model(cfg.model, BatchSpec((28, 28, 1), 10))
        params, state = model.init(key)
        x = jax.random.uniform(key, (8, 28, 28, 1))
        outs[impl] = model.apply(params, state, x)[0]
        grads[impl] = jax.grad(lambda p: jnp.sum(jax.nn.log_softmax(model.apply(p, state, x)[0])[:, 3]))(params)
    assert outs["cpu"].shape == (8, 10)
    sizes = {k: v.shape for k, v in jax.tree_util.tree_leaves_with_path(params)}
    assert sum(np.prod(s) for s in sizes.values()) == 61706
    np.testing.assert_allclose(outs["cpu"], outs["xla"], rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(grads["cpu"]), jax.tree_util.tree_leaves(grads["xla"])):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_lenet_rejects_data_that_are_not_images():
    cfg = load_config(CONFIGS / "lenet.yaml")
    with pytest.raises(ValueError, match="lenet takes images"):
        build_model(cfg.model, BatchSpec((2,), 1))


def test_default_formulation_per_backend():
    from dlrun.core.nn.onednn import available

    assert C.default_conv_impl("cpu") == ("onednn" if available()[0] and jax.device_count() == 1 else "cpu")
    assert C.default_conv_impl("gpu") == C.default_conv_impl("tpu") == "xla"
