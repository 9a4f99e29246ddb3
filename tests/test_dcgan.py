"""DCGAN (D2L 17.2): the transposed convolution against its scatter-add definition and PyTorch's;
the book's printed shapes; one training step of both parts with batch norm's statistics
threaded, deterministic; the losses at init against numpy's BCE of the discriminator's logits."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dlrun.core.config.generative import DCGANModel
from dlrun.core.data.spec import BatchSpec
from dlrun.core.nn import layers as L
from dlrun.core.nn.dcgan import d_block, dcgan, discriminator, g_block, generator
from dlrun.core.training.parts import PartsOptimizer, make_parts_step
from dlrun.core.training.state import Arrays, init_state

# XLA's convolution: on the CPU it compiles in a fraction of the time of the CPU formulation
# (`core.nn.conv`, checked against it in test_conv.py)
SMALL = DCGANModel(latent_dim=8, generator_channels=4, discriminator_channels=4, conv_impl="xla")
SPEC = BatchSpec((16, 16, 1), 1)


@pytest.fixture(scope="module")
def small():
    """The small model with its params and model state at init (drawn once: each new shape
    JAX draws for costs a compilation)."""
    gan = dcgan(SMALL, SPEC)
    return gan, *gan.init(jax.random.PRNGKey(0))


def np_conv_transpose(x, w, stride, padding):
    """Each input pixel adds its value times the kernel (kh, kw, C_in, C_out) into the output at
    `stride` offsets; then `padding` is cropped from each side."""
    b, h, wd, _ = x.shape
    kh, kw, _, c_out = w.shape
    full = np.zeros((b, (h - 1) * stride + kh, (wd - 1) * stride + kw, c_out))
    for i in range(h):
        for j in range(wd):
            full[:, i * stride : i * stride + kh, j * stride : j * stride + kw] += np.einsum("bc,hwco->bhwo", x[:, i, j], w)
    return full[:, padding : full.shape[1] - padding, padding : full.shape[2] - padding]


# kernel, stride, padding, size: the book's two, and paddings up to and past kernel - 1
CASES = [(4, 2, 1, 5), (4, 1, 0, 1), (3, 2, 0, 4), (2, 2, 0, 3), (3, 1, 1, 4), (5, 3, 2, 3), (2, 3, 2, 4)]


def _transpose(kernel, stride, padding, size, use_bias=True):
    """The layer on an input of size x (size + 1) with 2 channels, its params from numpy in the
    shapes init gives (traced, so that no draw is compiled)."""
    layer = L.conv2d_transpose(3, kernel, stride, padding, use_bias=use_bias)
    found = {}

    def init(k):
        found["shape"], params, _ = layer.init(k, (size, size + 1, 2))
        return params

    rng = np.random.default_rng(kernel * 100 + stride * 10 + padding)
    params = {k: rng.normal(size=a.shape) for k, a in jax.eval_shape(init, jax.random.PRNGKey(0)).items()}
    x = rng.normal(size=(2, size, size + 1, 2))
    y, _ = layer.apply(jax.tree_util.tree_map(jnp.float32, params), {}, jnp.asarray(x, jnp.float32))
    return layer, found["shape"], params, x, np.asarray(y)


@pytest.mark.parametrize("kernel, stride, padding, size", CASES)
def test_conv_transpose_is_the_scatter_add_and_init_predicts_its_shape(kernel, stride, padding, size):
    layer, out_shape, params, x, y = _transpose(kernel, stride, padding, size)
    h = (size - 1) * stride - 2 * padding + kernel
    assert layer.kind == "convT" and out_shape == (h, size * stride - 2 * padding + kernel, 3) == y.shape[1:]
    np.testing.assert_allclose(y, np_conv_transpose(x, params["w"], stride, padding) + params["b"], rtol=1e-5, atol=1e-5)
    _, _, params, x, y = _transpose(kernel, stride, padding, size, use_bias=False)
    assert set(params) == {"w"}
    np.testing.assert_allclose(y, np_conv_transpose(x, params["w"], stride, padding), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel, stride, padding, size", CASES)
def test_conv_transpose_is_pytorchs(kernel, stride, padding, size):
    torch = pytest.importorskip("torch")
    _, _, params, x, y = _transpose(kernel, stride, padding, size)
    w = torch.from_numpy(params["w"].transpose(2, 3, 0, 1).copy())  # (kh, kw, C_in, C_out) -> (C_in, C_out, kh, kw)
    b = torch.from_numpy(params["b"])
    want = torch.nn.functional.conv_transpose2d(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), w, b, stride, padding)
    np.testing.assert_allclose(y, want.numpy().transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-5)


def test_leaky_relu_has_the_books_slope():
    x = jnp.asarray([-2.0, -0.5, 0.0, 1.5])
    np.testing.assert_allclose(L.leaky_relu().apply({}, {}, x)[0], [-0.4, -0.1, 0.0, 1.5], rtol=1e-6)
    np.testing.assert_allclose(L.leaky_relu(0.5).apply({}, {}, x)[0], [-1.0, -0.25, 0.0, 1.5], rtol=1e-6)


def _shape(layer, in_shape, batch=2):
    """apply's output shape, traced (nothing computed), after checking init's prediction agrees."""
    found = {}

    def init(k):
        found["shape"], params, state = layer.init(k, in_shape)
        return params, state

    params, state = jax.eval_shape(init, jax.random.PRNGKey(0))
    for train in (False, True):
        y, new_state = jax.eval_shape(lambda p, s, x, t=train: layer.apply(p, s, x, train=t), params, state,
                                      jax.ShapeDtypeStruct((batch, *in_shape), jnp.float32))
        assert y.shape == (batch, *found["shape"])
        assert jax.tree_util.tree_structure(new_state) == jax.tree_util.tree_structure(state)
    return y.shape


def _block_shapes(net, in_shape):
    """The output shape (without the batch) of each child of a serial network, in order."""
    shapes = []
    for _, child in net.children:
        in_shape = _shape(child, in_shape)[1:]
        shapes.append(in_shape)
    return shapes


def test_the_books_blocks_give_its_printed_shapes():
    assert _shape(g_block(20), (16, 16, 3)) == (2, 32, 32, 20)
    assert _shape(g_block(20, stride=1, padding=0), (1, 1, 3)) == (2, 4, 4, 20)
    assert _shape(d_block(20), (16, 16, 3)) == (2, 8, 8, 20)


def test_the_books_networks_give_its_printed_shapes():
    book = DCGANModel()
    net_g, net_d = generator(book, (64, 64, 3)), discriminator(book, (64, 64, 3))
    assert _shape(net_g, (100,), batch=1) == (1, 64, 64, 3)
    assert _block_shapes(net_g, (100,)) == [
        (1, 1, 100), (4, 4, 512), (8, 8, 256), (16, 16, 128), (32, 32, 64), (64, 64, 3), (64, 64, 3)]
    assert _shape(net_d, (64, 64, 3), batch=1) == (1, 1)
    assert _block_shapes(net_d, (64, 64, 3)) == [(32, 32, 64), (16, 16, 128), (8, 8, 256), (4, 4, 512), (1, 1, 1), (1,)]


def test_smaller_images_have_fewer_blocks():
    cfg = DCGANModel(generator_channels=8, discriminator_channels=8)
    assert _block_shapes(generator(cfg, (32, 32, 1)), (100,)) == [
        (1, 1, 100), (4, 4, 32), (8, 8, 16), (16, 16, 8), (32, 32, 1), (32, 32, 1)]
    assert _block_shapes(discriminator(cfg, (32, 32, 1)), (32, 32, 1)) == [(16, 16, 8), (8, 8, 16), (4, 4, 32), (1, 1, 1), (1,)]
    assert _shape(generator(cfg, (16, 16, 1)), (100,)) == (2, 16, 16, 1)
    assert _shape(discriminator(cfg, (16, 16, 1)), (16, 16, 1)) == (2, 1)


@pytest.mark.parametrize("shape", [(28, 28, 1), (64, 32, 3), (8, 8, 1), (48, 48, 3), (64,)])
def test_other_shapes_are_refused_naming_the_model_and_the_shape(shape):
    with pytest.raises(ValueError, match=rf"model.name: dcgan takes square images .*shape {re.escape(str(shape))}"):
        dcgan(SMALL, BatchSpec(shape, 1))


def test_every_parameter_is_drawn_from_the_books_normal_batch_norms_included(small, key):
    _, params, _ = small
    leaves = np.concatenate([np.ravel(a) for a in jax.tree_util.tree_leaves(params)])
    assert leaves.size > 2000 and abs(leaves.std() - 0.02) < 0.002 and abs(leaves.mean()) < 0.002
    gammas = [p for path, p in jax.tree_util.tree_leaves_with_path(params) if path[-1].key == "gamma"]
    assert len(gammas) == 4 and all(np.std(g) > 0 for g in gammas)
    params, _ = dcgan(SMALL.model_copy(update={"batch_norm_init": "ones"}), SPEC).init(key)
    assert np.all(params["generator"]["g_block0"]["bn0"]["gamma"] == 1)
    assert np.all(params["discriminator"]["d_block1"]["bn0"]["beta"] == 0)
    assert params["generator"]["convT0"]["w"].shape == (4, 4, 4, 1) and set(params["generator"]["g_block1"]["convT0"]) == {"w"}


def _batch(n=4, shape=(16, 16, 1)):
    x = np.random.default_rng(3).uniform(-1.0, 1.0, (n, *shape))  # images normalised to [-1, 1]
    return Arrays(jnp.asarray(x, jnp.float32), jnp.zeros((n,), jnp.int32))


def _changed(before, after):
    """Whether each leaf differs anywhere."""
    return jax.tree_util.tree_leaves(jax.tree_util.tree_map(lambda a, b: bool(jnp.any(a != b)), before, after))


def test_the_losses_at_init_are_numpys_bce_of_the_discriminators_logits(small):
    gan, params, model_state = small
    net_g, net_d = generator(SMALL, SPEC.input_shape), discriminator(SMALL, SPEC.input_shape)
    batch, key = _batch(), jax.random.PRNGKey(5)

    @jax.jit
    def run(params, model_state):
        z = jax.random.normal(key, (4, SMALL.latent_dim))  # the noise both losses draw from the step's key
        fake, _ = net_g.apply(params["generator"], model_state["generator"], z, train=True)
        real_logits = net_d.apply(params["discriminator"], model_state["discriminator"], batch.x, train=True)[0]
        fake_logits = net_d.apply(params["discriminator"], model_state["discriminator"], fake, train=True)[0]
        loss_d, (state_d, metrics_d) = gan.updates[0].loss(params, model_state, batch, key)
        loss_g, (state_g, metrics_g) = gan.updates[1].loss(params, state_d, batch, key)
        images, eval_state = gan.apply(params, model_state, z)
        return real_logits, fake_logits, (loss_d, metrics_d, state_d), (loss_g, metrics_g, state_g), (images, eval_state)

    real_logits, fake_logits, (loss_d, metrics_d, state_d), (loss_g, metrics_g, state_g), (images, eval_state) = \
        jax.device_get(run(params, model_state))
    real_logits, fake_logits = np.float64(real_logits), np.float64(fake_logits)
    assert real_logits.shape == fake_logits.shape == (4, 1)
    want_d = (np.logaddexp(0, -real_logits).mean() + np.logaddexp(0, fake_logits).mean()) / 2
    np.testing.assert_allclose([loss_d, metrics_d["loss_D"]], [want_d, want_d], rtol=1e-5)
    # at init the generator's update meets the same discriminator: its logits on the same fakes
    np.testing.assert_allclose([loss_g, metrics_g["loss_G"]], [np.logaddexp(0, -fake_logits).mean()] * 2, rtol=1e-5)
    assert [u.part for u in gan.updates] == ["discriminator", "generator"]
    for state in (state_d, state_g):  # the whole model state by part, its structure kept, both parts' statistics moved
        assert jax.tree_util.tree_structure(state) == jax.tree_util.tree_structure(model_state)
        assert all(_changed(model_state, state))
    # evaluation generates with the running statistics and leaves them as they were
    assert images.shape == (4, 16, 16, 1) and np.all(np.abs(images) < 1)
    assert not any(_changed(model_state, eval_state))


def test_one_step_trains_both_parts_and_moves_both_parts_statistics_deterministically(small):
    gan = small[0]
    optimizer = PartsOptimizer({part: optax.adam(0.005, b1=0.5) for part in ("discriminator", "generator")})  # the book's
    state = init_state(gan, optimizer, jax.random.PRNGKey(0))
    step = jax.jit(make_parts_step(gan.updates, optimizer))
    batch, k = _batch(), jax.random.PRNGKey(9)
    new, metrics = step(state, batch, k)
    assert bool(metrics["finite"]) and np.isfinite(float(metrics["loss_D"])) and np.isfinite(float(metrics["loss_G"]))
    for part in ("discriminator", "generator"):
        assert all(_changed(state.params[part], new.params[part])), part  # every leaf of every part
        assert all(_changed(state.model_state[part], new.model_state[part])), part  # every running mean and variance
    assert jax.tree_util.tree_structure(new.model_state) == jax.tree_util.tree_structure(state.model_state)
    again, metrics_again = step(state, batch, k)
    assert not any(_changed((new, metrics), (again, metrics_again)))


def test_auto_trains_the_dcgan_per_step_on_a_cpu_and_the_dense_gan_in_a_scan():
    """The generator's transposed convolutions are XLA's, slow inside a scan on a CPU."""
    from dlrun.core.config import load_config
    from dlrun.core.nn.models import build_model
    from dlrun.core.training.setup import choose_loop

    from .conftest import CONFIGS

    dcgan_model = build_model(load_config(CONFIGS / "dcgan_cpu.yaml").model, BatchSpec((32, 32, 1), 1))
    gaussian = build_model(load_config(CONFIGS / "gan_gaussian.yaml").model, BatchSpec((2,), 1))
    assert choose_loop("auto", dcgan_model, "cpu") == "step" and choose_loop("auto", dcgan_model, "gpu") == "scan"
    assert choose_loop("auto", gaussian, "cpu") == "scan" and choose_loop("scan", dcgan_model, "cpu") == "scan"
