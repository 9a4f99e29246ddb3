"""Convolution, pooling and batch norm against the book (D2L 7.2-7.5 and 8.5; 0.16 edition 6.2-6.5
and 7.5) and against plain numpy loops in float64.

Beyond tests/test_conv.py (square kernels, stride 1, both impls agreeing): the book's printed
numbers, rectangular kernels, pair padding and strides, 1x1 kernels with a stride, gradients of
both conv formulations against an independent numpy gradient, pooling with rectangular windows
and its gradients, and batch norm (scratch, concise and fused) against a numpy reference.

The code is NHWC with HWIO kernels; the book's examples are NCHW and (C_out, C_in, kh, kw), so
they are transposed here.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlrun.core.nn import conv as C
from dlrun.core.nn import layers as L
from dlrun.core.nn.batchnorm import batch_norm_train

from .conftest import numeric_grad

IMPLS = ["xla", "cpu"]


# ----------------------------------------------------------------------------- numpy references


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def conv_ref(x, w, padding=0, stride=1):
    """Cross-correlation by definition, float64 loops: x (B, H, W, Ci), w (kh, kw, Ci, Co)."""
    (ph, pw), (sh, sw) = pair(padding), pair(stride)
    x = np.pad(np.asarray(x, np.float64), ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    w = np.asarray(w, np.float64)
    kh, kw, _, co = w.shape
    oh, ow = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
    out = np.zeros((x.shape[0], oh, ow, co))
    for h in range(oh):
        for v in range(ow):
            patch = x[:, h * sh : h * sh + kh, v * sw : v * sw + kw, :]  # (B, kh, kw, Ci)
            out[:, h, v, :] = np.tensordot(patch, w, axes=([1, 2, 3], [0, 1, 2]))
    return out


def conv_ref_grads(x, w, g, padding=0, stride=1):
    """dL/dx and dL/dw of L = sum(conv_ref(x, w) * g), by scattering each window's contribution."""
    (ph, pw), (sh, sw) = pair(padding), pair(stride)
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    xp = np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    kh, kw = w.shape[:2]
    gxp, gw = np.zeros_like(xp), np.zeros_like(w)
    for h in range(g.shape[1]):
        for v in range(g.shape[2]):
            patch = xp[:, h * sh : h * sh + kh, v * sw : v * sw + kw, :]
            gw += np.einsum("bijc,bo->ijco", patch, g[:, h, v, :])
            gxp[:, h * sh : h * sh + kh, v * sw : v * sw + kw, :] += np.einsum("ijco,bo->bijc", w, g[:, h, v, :])
    return gxp[:, ph : ph + x.shape[1], pw : pw + x.shape[2], :], gw


def pool_ref(x, kind, window, stride=None, padding=0):
    """Pooling by definition; avg divides by the full window (padding counts as zeros)."""
    (kh, kw), (ph, pw) = pair(window), pair(padding)
    sh, sw = pair(stride if stride is not None else window)
    fill = 0.0 if kind == "avg" else -np.inf
    x = np.pad(np.asarray(x, np.float64), ((0, 0), (ph, ph), (pw, pw), (0, 0)), constant_values=fill)
    oh, ow = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
    out = np.empty((x.shape[0], oh, ow, x.shape[3]))
    for h in range(oh):
        for v in range(ow):
            patch = x[:, h * sh : h * sh + kh, v * sw : v * sw + kw, :]
            out[:, h, v] = patch.sum(axis=(1, 2)) / (kh * kw) if kind == "avg" else patch.max(axis=(1, 2))
    return out


def bn_ref(x, gamma, beta, mean, var, train, momentum=0.1, eps=1e-5):
    """D2L 8.5's batch norm over every axis but the last; returns (y, new_mean, new_var)."""
    x = np.asarray(x, np.float64)
    if train:
        flat = x.reshape(-1, x.shape[-1])
        m = flat.sum(axis=0) / flat.shape[0]
        v = ((flat - m) ** 2).sum(axis=0) / flat.shape[0]
        new_mean, new_var = (1 - momentum) * mean + momentum * m, (1 - momentum) * var + momentum * v
    else:
        m, v, new_mean, new_var = mean, var, mean, var
    return gamma * (x - m) / np.sqrt(v + eps) + beta, new_mean, new_var


def nhwc(chw):
    """The book's (C, H, W) image -> a batch of one NHWC image."""
    return jnp.asarray(np.asarray(chw, np.float32).transpose(1, 2, 0)[None])


def hwio(oihw):
    """The book's (C_out, C_in, kh, kw) kernel -> HWIO."""
    return jnp.asarray(np.asarray(oihw, np.float32).transpose(2, 3, 1, 0))


def rand(rng, shape):
    return rng.standard_normal(shape).astype(np.float32)


# ----------------------------------------------------------------------------- the book's numbers

X3 = np.arange(9.0).reshape(3, 3)
K2 = np.array([[0.0, 1.0], [2.0, 3.0]])


@pytest.mark.parametrize("impl", IMPLS)
def test_corr2d_of_the_book(impl):
    """D2L 7.2.1: corr2d(X, K) = [[19, 25], [37, 43]]."""
    y = C.conv2d(nhwc(X3[None]), hwio(K2[None, None]), impl=impl)
    np.testing.assert_array_equal(np.asarray(y)[0, :, :, 0], [[19, 25], [37, 43]])


@pytest.mark.parametrize("impl", IMPLS)
def test_edge_detection_of_the_book(impl):
    """D2L 7.2.3: a 6x8 image, black (0) in columns 2-5; K = [[1, -1]] marks the edges."""
    x = np.ones((6, 8))
    x[:, 2:6] = 0
    k = hwio(np.array([[[[1.0, -1.0]]]]))
    y = np.asarray(C.conv2d(nhwc(x[None]), k, impl=impl))[0, :, :, 0]
    expected = np.zeros((6, 7))
    expected[:, 1], expected[:, 5] = 1, -1
    np.testing.assert_array_equal(y, expected)
    # the transposed image has horizontal edges only, which a horizontal kernel does not see
    yt = np.asarray(C.conv2d(nhwc(x.T[None]), k, impl=impl))[0, :, :, 0]
    np.testing.assert_array_equal(yt, np.zeros((8, 5)))


X_MULTI = np.stack([X3, X3 + 1])  # (2, 3, 3): the book's two-channel input
K_MULTI = np.stack([K2, K2 + 1])  # (2, 2, 2): one 2x2 kernel per input channel


@pytest.mark.parametrize("impl", IMPLS)
def test_multiple_input_channels_of_the_book(impl):
    """D2L 7.4.1: corr2d_multi_in = [[56, 72], [104, 120]]."""
    y = C.conv2d(nhwc(X_MULTI), hwio(K_MULTI[None]), impl=impl)
    np.testing.assert_array_equal(np.asarray(y)[0, :, :, 0], [[56, 72], [104, 120]])


@pytest.mark.parametrize("impl", IMPLS)
def test_multiple_output_channels_of_the_book(impl):
    """D2L 7.4.2: K, K + 1, K + 2 stacked into three output channels."""
    k = np.stack([K_MULTI, K_MULTI + 1, K_MULTI + 2])  # (3, 2, 2, 2)
    y = np.asarray(C.conv2d(nhwc(X_MULTI), hwio(k), impl=impl))[0].transpose(2, 0, 1)
    expected = [[[56, 72], [104, 120]], [[76, 100], [148, 172]], [[96, 128], [192, 224]]]
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("impl", IMPLS)
def test_1x1_convolution_is_a_matmul_over_channels(impl):
    """D2L 7.4.3: X (3, 3, 3), K (2, 3, 1, 1); corr2d_multi_in_out_1x1 equals the convolution."""
    rng = np.random.default_rng(0)
    x, k = rng.normal(0, 1, (3, 3, 3)), rng.normal(0, 1, (2, 3, 1, 1))
    expected = (k.reshape(2, 3) @ x.reshape(3, 9)).reshape(2, 3, 3)
    y = np.asarray(C.conv2d(nhwc(x), hwio(k), impl=impl))[0].transpose(2, 0, 1)
    assert y.shape == (2, 3, 3)
    assert np.abs(y - expected).max() < 1e-6


X16 = np.arange(16.0).reshape(4, 4)


@pytest.mark.parametrize(
    "kind, window, stride, padding, x, expected",
    [
        ("max", 2, 1, 0, X3, [[4, 5], [7, 8]]),  # D2L 7.5.1
        ("avg", 2, 1, 0, X3, [[2, 3], [5, 6]]),
        ("max", 3, None, 0, X16, [[10]]),  # D2L 7.5.2: stride defaults to the window
        ("max", 3, 2, 1, X16, [[5, 7], [13, 15]]),
        ("max", (2, 3), (2, 3), (0, 1), X16, [[5, 7], [13, 15]]),
    ],
)
def test_pooling_of_the_book(kind, window, stride, padding, x, expected):
    y = C.pool2d(nhwc(x[None]), kind, window, stride, padding)
    np.testing.assert_array_equal(np.asarray(y)[0, :, :, 0], expected)


def test_pooling_keeps_channels_apart_as_in_the_book():
    """D2L 7.5.3: channels [X, X + 1]; max 3 padding 1 stride 2 pools each channel alone."""
    y = np.asarray(C.pool2d(nhwc(np.stack([X16, X16 + 1])), "max", 3, 2, 1))[0].transpose(2, 0, 1)
    np.testing.assert_array_equal(y, [[[5, 7], [13, 15]], [[6, 8], [14, 16]]])


# ----------------------------------------------------------------------------- output shapes


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    "kernel, padding, stride, expected",
    [
        (3, 1, 1, (8, 8)),  # D2L 7.3.1
        ((5, 3), (2, 1), 1, (8, 8)),
        (3, 1, 2, (4, 4)),  # D2L 7.3.2
        ((3, 5), (0, 1), (3, 4), (2, 2)),
    ],
)
def test_conv_layer_shapes_of_the_book(kernel, padding, stride, expected, impl, key):
    layer = L.conv2d(1, kernel, padding=padding, stride=stride, impl=impl)
    out_shape, params, state = layer.init(key, (8, 8, 1))
    y, _ = jax.jit(partial(layer.apply, train=False))(params, state, jnp.ones((2, 8, 8, 1)))
    assert out_shape == (*expected, 1)
    assert y.shape == (2, *expected, 1)
    assert C.out_hw((8, 8), kernel, padding, stride) == expected


# ----------------------------------------------------------------------------- conv values and gradients

# (batch, H, W, C_in, C_out, kernel, padding, stride)
CONV_CASES = [
    pytest.param(2, 8, 8, 1, 3, (3, 5), (0, 1), (3, 4), id="3x5-stride3x4-cin1"),
    pytest.param(2, 9, 11, 2, 3, (3, 5), (1, 2), (3, 4), id="3x5-stride3x4"),
    pytest.param(2, 12, 10, 3, 4, 7, 3, 2, id="7x7-stride2-pad3"),
    pytest.param(2, 7, 6, 3, 5, 1, 0, 2, id="1x1-stride2"),
    pytest.param(2, 7, 6, 3, 5, 1, 1, 2, id="1x1-stride2-pad1"),
    pytest.param(2, 5, 7, 4, 2, 1, (1, 0), (1, 3), id="1x1-pairs"),
    pytest.param(3, 9, 9, 1, 2, 3, 1, 2, id="3x3-stride2-pad1-odd-cin1"),
    pytest.param(3, 9, 9, 2, 3, 3, 1, 2, id="3x3-stride2-pad1-odd"),
    pytest.param(2, 6, 9, 2, 2, (2, 4), (2, 0), (1, 2), id="2x4-pad-pairs"),
    pytest.param(1, 10, 7, 1, 1, (5, 3), (2, 1), 1, id="5x3-same"),
    pytest.param(2, 2, 2, 3, 4, 3, 1, 1, id="3x3-on-2x2"),  # mostly padding
    pytest.param(2, 5, 4, 2, 3, 2, 2, 1, id="2x2-pad2"),  # padding > kernel - 1, stride 1
    pytest.param(2, 6, 5, 9, 2, 3, 1, 1, id="3x3-9-channels"),  # more channels than the other cases
    pytest.param(2, 6, 5, 9, 2, 3, 3, 1, id="3x3-pad3-9-channels"),
    pytest.param(2, 15, 14, 2, 3, (3, 5), (1, 2), 1, id="3x5-15x14-outputs"),
]


def _conv_inputs(seed, b, h, w, ci, co, kernel):
    rng = np.random.default_rng(seed)
    kh, kw = pair(kernel)
    return rng, rand(rng, (b, h, w, ci)), rand(rng, (kh, kw, ci, co))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("b, h, w, ci, co, kernel, padding, stride", CONV_CASES)
def test_conv_values_match_numpy(b, h, w, ci, co, kernel, padding, stride, impl):
    _, x, k = _conv_inputs(1, b, h, w, ci, co, kernel)
    expected = conv_ref(x, k, padding, stride)
    assert expected.shape[1:3] == C.out_hw((h, w), kernel, padding, stride)
    y = jax.jit(lambda x, k: C.conv2d(x, k, padding, stride, impl))(x, k)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("b, h, w, ci, co, kernel, padding, stride", CONV_CASES)
def test_conv_gradients_match_numpy(b, h, w, ci, co, kernel, padding, stride, impl):
    """L = sum(sin(conv(x, w)) * probe): jax.grad against the numpy chain rule in float64, whose
    scatter is in turn checked by central differences at a few coordinates."""
    rng, x, k = _conv_inputs(2, b, h, w, ci, co, kernel)
    y = conv_ref(x, k, padding, stride)
    probe = rand(rng, y.shape)
    loss = lambda x, k: jnp.sum(jnp.sin(C.conv2d(x, k, padding, stride, impl)) * probe)  # noqa: E731
    gx, gk = jax.jit(jax.grad(loss, (0, 1)))(jnp.asarray(x), jnp.asarray(k))
    ex, ek = conv_ref_grads(x, k, np.cos(y) * probe, padding, stride)
    np.testing.assert_allclose(gx, ex, rtol=1e-3, atol=1e-3 * (1 + np.abs(ex).max()))
    np.testing.assert_allclose(gk, ek, rtol=1e-3, atol=1e-3 * (1 + np.abs(ek).max()))

    f = lambda x, k: np.sum(np.sin(conv_ref(x, k, padding, stride)) * probe)  # noqa: E731
    x64, k64, eps = x.astype(np.float64), k.astype(np.float64), 1e-6
    for idx in [(0, 0, 0, 0), (b - 1, h - 1, w - 1, ci - 1), (0, h // 2, w // 3, ci // 2)]:
        d = np.zeros_like(x64)
        d[idx] = eps
        assert ex[idx] == pytest.approx((f(x64 + d, k64) - f(x64 - d, k64)) / (2 * eps), rel=1e-5, abs=1e-6)
    for idx in [(0, 0, 0, 0), tuple(s - 1 for s in k.shape)]:
        d = np.zeros_like(k64)
        d[idx] = eps
        assert ek[idx] == pytest.approx((f(x64, k64 + d) - f(x64, k64 - d)) / (2 * eps), rel=1e-5, abs=1e-6)


def test_rows_a_stride_skips_get_zero_gradient():
    """With stride 3 and kernel 1 only rows/columns 0, 3, 6 are read; the rest get zero gradient."""
    x = jnp.ones((1, 8, 8, 2))
    k = jnp.ones((1, 1, 2, 1))
    for impl in IMPLS:
        g = np.asarray(jax.jit(jax.grad(lambda x: jnp.sum(C.conv2d(x, k, 0, 3, impl))))(x))
        read = np.zeros((8, 8))
        read[::3, ::3] = 1
        np.testing.assert_array_equal(g[0, :, :, 0], read)
        np.testing.assert_array_equal(g[0, :, :, 1], read)


# ----------------------------------------------------------------------------- pooling

# (H, W, window, stride, padding)
POOL_CASES = [
    pytest.param(6, 9, (2, 3), None, 0, id="2x3-tiles"),
    pytest.param(7, 9, (2, 3), None, 0, id="2x3-default-stride-ragged"),
    pytest.param(7, 8, (3, 2), (2, 1), (1, 0), id="3x2-stride2x1-pad1x0"),
    pytest.param(5, 7, (2, 3), (2, 3), (0, 1), id="2x3-stride2x3-pad0x1"),
    pytest.param(6, 6, 3, 2, 1, id="3-stride2-pad1"),
    pytest.param(5, 6, (1, 4), (1, 2), (0, 2), id="1x4-pad0x2"),
]


@pytest.mark.parametrize("kind", ["avg", "max"])
@pytest.mark.parametrize("h, w, window, stride, padding", POOL_CASES)
def test_pooling_values_match_numpy(kind, h, w, window, stride, padding):
    x = rand(np.random.default_rng(h * w), (2, h, w, 3))
    expected = pool_ref(x, kind, window, stride, padding)
    y = C.pool2d(jnp.asarray(x), kind, window, stride, padding)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    layer = L.pool2d(kind, window, stride, padding)
    out_shape, params, state = layer.init(None, (h, w, 3))
    assert out_shape == expected.shape[1:]
    np.testing.assert_allclose(layer.apply(params, state, jnp.asarray(x), train=True)[0], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["avg", "max"])
@pytest.mark.parametrize("h, w, window, stride, padding", POOL_CASES)
def test_pooling_gradients_match_finite_differences(kind, h, w, window, stride, padding):
    """All coordinates of a small input; random normals have no ties for max."""
    rng = np.random.default_rng(h + w)
    x = rand(rng, (1, h, w, 2))
    probe = rand(rng, pool_ref(x, kind, window, stride, padding).shape)
    g = jax.jit(jax.grad(lambda x: jnp.sum(jnp.sin(C.pool2d(x, kind, window, stride, padding)) * probe)))(jnp.asarray(x))
    # central differences of every coordinate at once: the perturbed copies of x form one batch
    eps, n = 1e-6, x.size
    bumps = (eps * np.eye(n)).reshape(n, *x.shape[1:])
    losses = np.sum(np.sin(pool_ref(np.concatenate([x + bumps, x - bumps]), kind, window, stride, padding)) * probe, axis=(1, 2, 3))
    expected = ((losses[:n] - losses[n:]) / (2 * eps)).reshape(x.shape)
    np.testing.assert_allclose(g, expected, rtol=1e-4, atol=1e-5)


def test_global_avg_pool_is_the_mean_over_positions():
    x = rand(np.random.default_rng(3), (3, 5, 7, 4))
    expected = np.array([[x[b, :, :, c].astype(np.float64).sum() / 35 for c in range(4)] for b in range(3)])
    np.testing.assert_allclose(C.global_avg_pool(jnp.asarray(x)), expected, rtol=1e-5, atol=1e-6)
    layer = L.global_avg_pool()
    out_shape, params, state = layer.init(None, (5, 7, 4))
    assert out_shape == (4,)
    np.testing.assert_allclose(layer.apply(params, state, jnp.asarray(x), train=False)[0], expected, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- batch norm

BN_SHAPES = [pytest.param((8, 5), id="dense"), pytest.param((4, 3, 5, 3), id="nhwc")]


def _bn_params(rng, c):
    """gamma, beta and running stats away from their initial values, so that all of them matter."""
    return (
        {"gamma": jnp.asarray(1 + 0.5 * rand(rng, (c,))), "beta": jnp.asarray(rand(rng, (c,)))},
        {"mean": jnp.asarray(rand(rng, (c,))), "var": jnp.asarray(0.5 + rng.random(c).astype(np.float32))},
    )


def _batch(rng, shape):
    """Per-feature offsets and scales, so that normalisation changes something."""
    c = shape[-1]
    return (rand(rng, shape) * (1 + np.arange(c)) + 3 * np.arange(c) - 2).astype(np.float32)


@pytest.mark.parametrize("shape", BN_SHAPES)
@pytest.mark.parametrize("train", [True, False])
def test_batch_norms_match_numpy_and_each_other(shape, train, key):
    rng = np.random.default_rng(len(shape))
    params, state = _bn_params(rng, shape[-1])
    x = _batch(rng, shape)
    y_ref, mean_ref, var_ref = bn_ref(x, *(np.asarray(v, np.float64) for v in (*params.values(), *state.values())), train)
    outs = {}
    for name, make in L.BATCH_NORMS.items():
        layer = make()
        out_shape, p0, s0 = layer.init(key, shape[1:])
        assert out_shape == shape[1:]
        for tree, name_, value in ((p0, "gamma", 1), (p0, "beta", 0), (s0, "mean", 0), (s0, "var", 1)):
            np.testing.assert_array_equal(tree[name_], np.full(shape[-1], value))
        y, new = jax.jit(partial(layer.apply, train=train))(params, state, jnp.asarray(x))
        np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-4, err_msg=name)
        np.testing.assert_allclose(new["mean"], mean_ref, rtol=1e-5, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(new["var"], var_ref, rtol=1e-5, atol=1e-5, err_msg=name)
        outs[name] = (y, new)
    np.testing.assert_allclose(outs["scratch"][0], outs["concise"][0], rtol=1e-5, atol=1e-5)
    for s in ("mean", "var"):
        np.testing.assert_allclose(outs["scratch"][1][s], outs["concise"][1][s], rtol=1e-5, atol=1e-6)
    if train:  # the output is standardised per feature, then scaled and shifted
        flat = np.asarray(outs["scratch"][0]).reshape(-1, shape[-1])
        np.testing.assert_allclose(flat.mean(0), params["beta"], atol=1e-4)
        np.testing.assert_allclose(flat.std(0), np.abs(params["gamma"]), rtol=1e-3)
    else:  # evaluation reads the running statistics and leaves them as they were
        for _, new in outs.values():
            np.testing.assert_array_equal(new["mean"], state["mean"])
            np.testing.assert_array_equal(new["var"], state["var"])


@pytest.mark.parametrize("shape", BN_SHAPES)
@pytest.mark.parametrize("name", list(L.BATCH_NORMS))
def test_running_statistics_follow_the_momentum_recursion(shape, name, key):
    """Three training calls from (mean 0, var 1), then evaluation with what they accumulated."""
    rng = np.random.default_rng(7)
    layer = L.BATCH_NORMS[name](momentum=0.1)
    _, params, state = layer.init(key, shape[1:])
    mean, var = np.zeros(shape[-1]), np.ones(shape[-1])
    train_step = jax.jit(partial(layer.apply, train=True))
    for step in range(3):
        x = _batch(rng, shape) + step
        _, state = train_step(params, state, jnp.asarray(x))
        flat = x.astype(np.float64).reshape(-1, shape[-1])
        mean = 0.9 * mean + 0.1 * flat.mean(0)
        var = 0.9 * var + 0.1 * ((flat - flat.mean(0)) ** 2).mean(0)
        np.testing.assert_allclose(state["mean"], mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(state["var"], var, rtol=1e-5, atol=1e-6)
    x = _batch(rng, shape)
    y, after = layer.apply(params, state, jnp.asarray(x), train=False)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(after["mean"], state["mean"])
    np.testing.assert_array_equal(after["var"], state["var"])


@pytest.mark.parametrize("shape", BN_SHAPES)
@pytest.mark.parametrize("train", [True, False])
def test_batch_norm_gradients_match_finite_differences(shape, train):
    """L = sum(sin(bn(x)) * probe) w.r.t. gamma, beta and x: scratch == concise == numpy."""
    rng = np.random.default_rng(11 + len(shape))
    params, state = _bn_params(rng, shape[-1])
    x = _batch(rng, shape)
    probe = rand(rng, shape)
    run = [np.asarray(state[s], np.float64) for s in ("mean", "var")]

    def f(x, gamma, beta):
        return np.sum(np.sin(bn_ref(x, gamma, beta, *run, train)[0]) * probe)

    g64, b64 = (np.asarray(params[p], np.float64) for p in ("gamma", "beta"))
    expected = {
        "x": numeric_grad(lambda v: f(v, g64, b64), x),
        "gamma": numeric_grad(lambda v: f(x, v, b64), g64),
        "beta": numeric_grad(lambda v: f(x, g64, v), b64),
    }
    grads = {}
    for name, make in L.BATCH_NORMS.items():
        layer = make()

        def loss(p, x):
            return jnp.sum(jnp.sin(layer.apply(p, state, x, train=train)[0]) * probe)

        gp, gx = jax.jit(jax.grad(loss, (0, 1)))(params, jnp.asarray(x))
        grads[name] = {"x": gx, **gp}
        for k, e in expected.items():
            np.testing.assert_allclose(grads[name][k], e, rtol=1e-3, atol=1e-3 * np.abs(e).max(), err_msg=f"{name} d/d{k}")
    for k in expected:
        for other in ("concise", "fused"):
            np.testing.assert_allclose(grads["scratch"][k], grads[other][k], rtol=1e-4, atol=1e-5, err_msg=f"{other} d/d{k}")


@pytest.mark.parametrize("shape", BN_SHAPES)
def test_written_out_batch_norm_gradient_equals_autodiff_for_all_three_outputs(shape):
    """`batch_norm_train`'s backward pass against autodiff of the plain formula, with cotangents
    on the batch mean and variance too (zero in training, but the VJP must not assume it)."""
    rng = np.random.default_rng(5)
    x, gamma, beta = jnp.asarray(_batch(rng, shape)), jnp.asarray(1 + rand(rng, shape[-1:])), jnp.asarray(rand(rng, shape[-1:]))

    def plain(x, gamma, beta):
        axes = tuple(range(x.ndim - 1))
        mean, var = jnp.mean(x, axes), jnp.mean((x - jnp.mean(x, axes)) ** 2, axes)
        return gamma * (x - mean) / jnp.sqrt(var + 1e-5) + beta, mean, var

    cotangents = (jnp.asarray(rand(rng, shape)), jnp.asarray(rand(rng, shape[-1:])), jnp.asarray(rand(rng, shape[-1:])))
    outs, vjp = jax.vjp(lambda *a: batch_norm_train(*a, 1e-5), x, gamma, beta)
    outs_ref, vjp_ref = jax.vjp(plain, x, gamma, beta)
    for got, want in zip(outs, outs_ref):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    for got, want, name in zip(vjp(cotangents), vjp_ref(cotangents), ("x", "gamma", "beta")):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=f"d/d{name}")
