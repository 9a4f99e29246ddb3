"""oneDNN's convolution (`conv_impl: onednn`): equal to the definition and to XLA's convolution in
outputs and both gradients, inside a scan too, and a clear message where it cannot be built.

Skipped where oneDNN is not installed (`pip install 'dlrun[onednn]'`), except with
DLRUN_REQUIRE_ONEDNN=1 (CI installs it and sets that), where its absence fails."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlrun.core.config import load_config
from dlrun.core.data.spec import BatchSpec
from dlrun.core.errors import ConfigError
from dlrun.core.nn import conv as C
from dlrun.core.nn import onednn
from dlrun.core.nn.models import build_model

from .conftest import CONFIGS
from .test_conv import corr2d_numpy

OK, WHY = onednn.available()
if os.environ.get("DLRUN_REQUIRE_ONEDNN") == "1":
    assert OK, f"DLRUN_REQUIRE_ONEDNN=1 but oneDNN's convolution is unavailable: {WHY}"
needs_onednn = pytest.mark.skipif(not OK, reason=f"oneDNN unavailable: {WHY}")

# (batch, height, width, in, out, kernel (h, w), padding (h, w), stride (h, w)): LeNet's two,
# ResNet's strided and 1x1 ones, a rectangle, and strides that leave rows no window reaches
GEOMETRIES = [
    (3, 28, 28, 1, 6, (5, 5), (2, 2), (1, 1)),
    (3, 14, 14, 6, 16, (5, 5), (0, 0), (1, 1)),
    (2, 9, 9, 16, 32, (3, 3), (1, 1), (2, 2)),
    (2, 8, 8, 8, 4, (1, 1), (0, 0), (2, 2)),
    (2, 7, 11, 3, 5, (3, 2), (1, 0), (1, 2)),
    (2, 10, 10, 4, 4, (3, 3), (0, 0), (3, 3)),
]


def _strided_reference(x, w, padding, stride):
    """The definition (float64) at stride 1, subsampled: a strided correlation's outputs."""
    (ph, pw), (sh, sw) = padding, stride
    xp = np.pad(np.asarray(x, np.float64), ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    kh, kw = w.shape[:2]
    h, wd = xp.shape[1] - kh + 1, xp.shape[2] - kw + 1
    out = sum(np.einsum("bhwc,co->bhwo", xp[:, i : i + h, j : j + wd, :], np.asarray(w, np.float64)[i, j])
              for i in range(kh) for j in range(kw))
    return out[:, ::sh, ::sw, :]


@needs_onednn
@pytest.mark.parametrize("b, h, wd, c_in, c_out, kernel, padding, stride", GEOMETRIES)
def test_onednn_convolution_equals_the_definition_and_xlas_gradients(b, h, wd, c_in, c_out, kernel, padding, stride):
    rng = np.random.default_rng(h * wd + c_in)
    x = jnp.asarray(rng.standard_normal((b, h, wd, c_in)).astype(np.float32))
    w = jnp.asarray(rng.standard_normal((*kernel, c_in, c_out)).astype(np.float32))
    y = jax.jit(lambda x, w: onednn.conv2d_f32(x, w, padding, stride))(x, w)
    np.testing.assert_allclose(y, _strided_reference(x, w, padding, stride), rtol=1e-4, atol=1e-4)
    probe = jnp.asarray(rng.standard_normal(y.shape).astype(np.float32))
    gx, gw = jax.jit(jax.grad(lambda x, w: jnp.sum(jnp.sin(onednn.conv2d_f32(x, w, padding, stride)) * probe), (0, 1)))(x, w)
    gx_xla, gw_xla = jax.grad(lambda x, w: jnp.sum(jnp.sin(C.conv2d_xla(x, w, padding, stride)) * probe), (0, 1))(x, w)
    np.testing.assert_allclose(gx, gx_xla, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gw, gw_xla, rtol=1e-4, atol=1e-3)


@needs_onednn
def test_filter_gradient_equals_finite_differences():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 9, 9, 2)).astype(np.float32)
    w = rng.standard_normal((3, 3, 2, 3)).astype(np.float32)
    probe = rng.standard_normal((2, 9, 9, 3))
    gw = jax.grad(lambda w: jnp.sum(jnp.sin(C.conv2d(jnp.asarray(x), w, 1, impl="onednn")) * probe))(jnp.asarray(w))
    f = lambda w: np.sum(np.sin(corr2d_numpy(x, w, 1)) * probe)  # noqa: E731
    w64, eps = w.astype(np.float64), 1e-5
    for idx in [(0, 0, 0, 0), (1, 2, 1, 2), (2, 1, 0, 1)]:
        bump = np.zeros_like(w64)
        bump[idx] = eps
        assert gw[idx] == pytest.approx((f(w64 + bump) - f(w64 - bump)) / (2 * eps), rel=1e-3, abs=1e-3)


@needs_onednn
def test_inside_a_scan_each_step_sees_its_own_weights():
    """An epoch compiles to one `lax.scan`: the handlers run as operations inside its loop."""
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 12, 12, 3))
    w0 = 0.1 * jax.random.normal(jax.random.PRNGKey(1), (3, 3, 3, 8))

    def run(conv):
        def body(w, _):
            loss, g = jax.value_and_grad(lambda w: jnp.mean(conv(x, w, (1, 1), (1, 1)) ** 2))(w)
            return w - 0.1 * g, loss

        return jax.jit(lambda w: jax.lax.scan(body, w, None, length=5))(w0)

    (w_d, losses_d), (w_x, losses_x) = run(onednn.conv2d_f32), run(C.conv2d_xla)
    assert losses_d[-1] < losses_d[0]
    np.testing.assert_allclose(losses_d, losses_x, rtol=1e-5)
    np.testing.assert_allclose(w_d, w_x, rtol=1e-4, atol=1e-6)


@needs_onednn
def test_vectorised_trials_each_get_their_own_kernel():
    """A sweep's trials under `jax.vmap`: each trial's weights, one call each."""
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 9, 9, 3))
    ws = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 3, 3, 5))

    def loss(conv):
        return lambda w: jnp.sum(jnp.tanh(conv(x, w, (1, 1), (1, 1))))

    got = jax.jit(jax.vmap(jax.value_and_grad(loss(onednn.conv2d_f32))))(ws)
    for i in range(len(ws)):
        value, grad = jax.value_and_grad(loss(C.conv2d_xla))(ws[i])
        np.testing.assert_allclose(got[0][i], value, rtol=1e-5)
        np.testing.assert_allclose(got[1][i], grad, rtol=1e-4, atol=1e-5)


@needs_onednn
def test_onednn_picks_its_jit_kernels_not_the_gemm_fallback():
    """With the kernel in the layout oneDNN asks for; plain HWIO would fall back to im2col + GEMM."""
    kernels = onednn.chosen_kernels((256, 28, 28, 1), (5, 5, 1, 6), padding=(2, 2))
    assert set(kernels) == {"forward", "input_grad", "filter_grad"}
    for name in kernels.values():
        assert "gemm" not in name and "ref" not in name, kernels


@needs_onednn
def test_lenet_on_onednn_equals_lenet_on_xla(key):
    cfg = {impl: load_config(CONFIGS / "lenet.yaml", [f"model.conv_impl={impl}"]) for impl in ("xla", "onednn")}
    models = {impl: build_model(c.model, BatchSpec((28, 28, 1), 10)) for impl, c in cfg.items()}
    params, state = models["xla"].init(key)
    x = jax.random.uniform(key, (8, 28, 28, 1))
    out = {impl: jax.jit(lambda p: m.apply(p, state, x)[0])(params) for impl, m in models.items()}
    np.testing.assert_allclose(out["onednn"], out["xla"], rtol=1e-5, atol=1e-5)


@needs_onednn
@pytest.mark.parametrize("shape, kernel, dtype", [((2, 8, 8, 3), (3, 3, 3, 4), jnp.bfloat16),  # another dtype
                                                  ((2, 8, 8, 3), (1, 1, 3, 4), jnp.float32),  # a matmul
                                                  ((2, 4, 4, 3), (3, 3, 3, 4), jnp.float32)])  # 16 outputs: im2col
def test_where_the_cpu_formulation_measured_faster_it_is_taken(shape, kernel, dtype):
    x = jax.random.normal(jax.random.PRNGKey(0), shape, dtype)
    w = jax.random.normal(jax.random.PRNGKey(1), kernel, dtype)
    text = jax.jit(lambda x, w: C.conv2d(x, w, 1, impl="onednn")).lower(x, w).as_text()
    assert "dlrun_DlrunConv" not in text
    np.testing.assert_array_equal(C.conv2d(x, w, 1, impl="onednn"), C.conv2d(x, w, 1, impl="cpu"))


@needs_onednn
def test_elsewhere_the_program_calls_onednn():
    x, w = jnp.ones((2, 8, 8, 3)), jnp.ones((3, 3, 3, 4))
    grad = jax.jit(jax.value_and_grad(lambda x, w: jnp.sum(C.conv2d(x, w, 1, impl="onednn") ** 2), (0, 1)))
    text = grad.lower(x, w).as_text()
    for handler in onednn.HANDLERS.values():
        assert f"dlrun_{handler}" in text


def test_without_onednn_the_error_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setattr(onednn, "onednn_root", lambda: None)
    with pytest.raises(onednn.OneDNNUnavailable, match=r"pip install 'dlrun\[onednn\]'"):
        onednn.build()


@needs_onednn
def test_a_failing_compiler_is_reported_and_leaves_no_library(monkeypatch, tmp_path):
    monkeypatch.setenv("DLRUN_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "false")
    with pytest.raises(onednn.OneDNNUnavailable, match="compiling onednn_conv.cc failed"):
        onednn.build()
    assert not list(tmp_path.glob("*.so")) and not list(tmp_path.glob(".*.so"))


@needs_onednn
def test_the_library_is_compiled_once_and_kept():
    first = onednn.build()
    stamp = first.stat().st_mtime_ns
    assert onednn.build() == first and first.stat().st_mtime_ns == stamp


def test_conv_impl_onednn_where_it_cannot_run_is_a_config_error(monkeypatch):
    monkeypatch.setattr(onednn, "available", lambda: (False, "oneDNN is not installed: pip install 'dlrun[onednn]'"))
    cfg = load_config(CONFIGS / "lenet.yaml", ["model.conv_impl=onednn"])
    with pytest.raises(ConfigError, match=r"model.conv_impl.*onednn.*not installed"):
        build_model(cfg.model, BatchSpec((28, 28, 1), 10))
