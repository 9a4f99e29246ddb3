"""Combinators and stateful layers against independent NumPy references: parameter and state
paths, state threaded through `serial`, batch normalization (values, running statistics,
evaluation, float64 gradients), `parallel`, `residual`, `recurrent`, and which leaves are
weights."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlrun.core.nn import layers as L
from dlrun.core.nn.combinators import child_names, parallel, recurrent, residual, serial
from dlrun.core.nn.init import normal_init
from dlrun.core.nn.params import is_weight, l2_of_weights, path_name, weight_mask, weight_norm, weights
from dlrun.core.nn.rnn import rnn_cell

from .conftest import numeric_grad


def paths(tree) -> dict[str, tuple[int, ...]]:
    """{`conv0/w`: shape} for every leaf of a pytree."""
    return {path_name(p): tuple(np.shape(v)) for p, v in jax.tree_util.tree_leaves_with_path(tree)}


def init_shapes(layer, in_shape, key):
    """(out_shape, params, state) with abstract params and state: traced, nothing compiled."""
    found = {}

    def init(k):
        found["out"], params, state = layer.init(k, in_shape)
        return params, state

    params, state = jax.eval_shape(init, key)
    return found["out"], params, state


def random_params(layer, in_shape, key, seed=0, scale=0.5):
    """Params in the structure and shapes `layer.init` gives, drawn by NumPy (nothing compiled)."""
    _, params, _ = init_shapes(layer, in_shape, key)
    r = rng(seed)
    return jax.tree_util.tree_map(lambda a: (scale * r.normal(size=a.shape)).astype(np.float32), params)


def f64(tree):
    return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), tree)


@pytest.fixture
def x64():
    """64-bit JAX inside the test only (the rest of the suite runs in float32)."""
    with jax.enable_x64(True):
        yield
    assert jnp.asarray(1.0).dtype == jnp.float32


def rng(seed=0):
    return np.random.default_rng(seed)


# ------------------------------------------------------------------------------ naming


def test_children_are_named_by_kind_and_position():
    layers = [L.conv2d(2, 3), L.batch_norm(), L.activation("relu"), L.conv2d(2, 3), L.batch_norm(), L.dropout(0.1),
              L.dense(2), L.pool2d("max"), L.flatten()]
    assert child_names(layers) == ["conv0", "bn0", "relu0", "conv1", "bn1", "dropout0", "dense0", "max_pool0", "flatten0"]
    assert [layer.kind for layer in (serial(), parallel(), residual(L.dense(1)), recurrent(rnn_cell(2)))] == [
        "serial", "parallel", "residual", "rnn"]


def test_parameter_and_state_paths(key):
    net = serial(
        L.conv2d(4, 3, padding=1, impl="xla"), L.batch_norm(), L.activation("relu"),
        residual(serial(L.conv2d(4, 3, padding=1, impl="xla"), L.batch_norm())),
        residual(L.conv2d(6, 3, padding=1, impl="xla"), projection=L.conv2d(6, 1, impl="xla")),
        parallel(L.conv2d(2, 1, impl="xla"), L.pool2d("max", 3, stride=1, padding=1)),
        L.pool2d("avg", 2), L.flatten(), L.dense(5), L.dropout(0.5), L.dense(2),
    )  # fmt: skip
    out_shape, params, state = init_shapes(net, (4, 4, 2), key)
    assert out_shape == (2,)
    assert paths(params) == {
        "conv0/w": (3, 3, 2, 4), "conv0/b": (4,),
        "bn0/gamma": (4,), "bn0/beta": (4,),
        "residual0/body/conv0/w": (3, 3, 4, 4), "residual0/body/conv0/b": (4,),
        "residual0/body/bn0/gamma": (4,), "residual0/body/bn0/beta": (4,),
        "residual1/body/w": (3, 3, 4, 6), "residual1/body/b": (6,),
        "residual1/proj/w": (1, 1, 4, 6), "residual1/proj/b": (6,),
        "parallel0/branch0/w": (1, 1, 6, 2), "parallel0/branch0/b": (2,),
        "dense0/w": (2 * 2 * 8, 5), "dense0/b": (5,),
        "dense1/w": (5, 2), "dense1/b": (2,),
    }  # fmt: skip
    assert paths(state) == {
        "bn0/mean": (4,), "bn0/var": (4,),
        "residual0/body/bn0/mean": (4,), "residual0/body/bn0/var": (4,),
        "dropout0/rate": (),
    }  # fmt: skip


def test_recurrent_parameter_paths(key):
    net = serial(recurrent(rnn_cell(3)), recurrent(rnn_cell(2), reverse=True), L.flatten(), L.dense(1))
    out_shape, params, state = init_shapes(net, (7, 4), key)
    assert out_shape == (1,) and state == {}
    assert paths(params) == {
        "rnn0/w_xh": (4, 3), "rnn0/w_hh": (3, 3), "rnn0/b_h": (3,),
        "rnn1/w_xh": (3, 2), "rnn1/w_hh": (2, 2), "rnn1/b_h": (2,),
        "dense0/w": (14, 1), "dense0/b": (1,),
    }  # fmt: skip


# ------------------------------------------------------------------ batch normalization


def np_batch_norm(x, gamma, beta, mean, var, train, momentum=0.1, eps=1e-5):
    """D2L 7.5's batch norm in float64 over the flattened non-channel axes; returns
    (y, new running mean, new running var)."""
    x = np.asarray(x, np.float64)
    flat = x.reshape(-1, x.shape[-1])
    if train:
        mu = flat.sum(0) / len(flat)
        sigma2 = ((flat - mu) ** 2).sum(0) / len(flat)  # biased
        new_mean, new_var = (1 - momentum) * mean + momentum * mu, (1 - momentum) * var + momentum * sigma2
    else:
        mu, sigma2 = mean, var
        new_mean, new_var = mean, var
    y = gamma * (flat - mu) / np.sqrt(sigma2 + eps) + beta
    return y.reshape(x.shape), new_mean, new_var


@pytest.mark.parametrize("shape", [(16, 5), (4, 3, 3, 5)], ids=["dense", "nhwc"])
@pytest.mark.parametrize("momentum, eps", [(0.1, 1e-5), (0.3, 1e-2)])
def test_batch_norm_matches_numpy(shape, momentum, eps, key):
    r = rng(1)
    layer = L.batch_norm(momentum=momentum, eps=eps)
    out_shape, params, state = layer.init(key, shape[1:])
    assert out_shape == shape[1:]
    assert set(params) == {"gamma", "beta"} and set(state) == {"mean", "var"}
    np.testing.assert_array_equal(params["gamma"], np.ones(5))
    np.testing.assert_array_equal(params["beta"], np.zeros(5))
    np.testing.assert_array_equal(state["mean"], np.zeros(5))
    np.testing.assert_array_equal(state["var"], np.ones(5))

    # away from the initial values, so that a swapped or ignored term shows
    x = (r.normal(size=shape) * r.uniform(0.5, 3, 5) + r.normal(size=5) * 2).astype(np.float32)
    params = {"gamma": r.uniform(0.5, 2, 5).astype(np.float32), "beta": r.normal(size=5).astype(np.float32)}
    state = {"mean": r.normal(size=5).astype(np.float32), "var": r.uniform(0.5, 2, 5).astype(np.float32)}
    p64, s64 = f64(params), f64(state)

    y, new = layer.apply(params, state, jnp.asarray(x), train=True)
    y_ref, mean_ref, var_ref = np_batch_norm(x, p64["gamma"], p64["beta"], s64["mean"], s64["var"], True, momentum, eps)
    np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(new["mean"], mean_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new["var"], var_ref, rtol=1e-5, atol=1e-6)
    # in training each channel comes out with mean beta and standard deviation ~gamma
    flat = np.asarray(y, np.float64).reshape(-1, 5)
    np.testing.assert_allclose(flat.mean(0), p64["beta"], atol=1e-4)
    np.testing.assert_allclose(flat.std(0), p64["gamma"] * np.sqrt(x.reshape(-1, 5).var(0) / (x.reshape(-1, 5).var(0) + eps)),
                               rtol=1e-3)

    y_eval, same = layer.apply(params, state, jnp.asarray(x), train=False)
    y_ref, _, _ = np_batch_norm(x, p64["gamma"], p64["beta"], s64["mean"], s64["var"], False, momentum, eps)
    np.testing.assert_allclose(y_eval, y_ref, rtol=1e-4, atol=1e-4)
    for k in ("mean", "var"):
        np.testing.assert_array_equal(same[k], state[k])  # evaluation leaves the statistics alone


def test_batch_norm_running_statistics_converge_to_the_data(key):
    """Repeated training steps on the same batch move the running statistics geometrically
    toward the batch's: running_n = batch + (1 - momentum)^n (running_0 - batch)."""
    layer = L.batch_norm(momentum=0.2)
    _, params, state = layer.init(key, (3,))
    x = rng(2).normal(3.0, 2.0, size=(50, 3)).astype(np.float32)
    step = jax.jit(lambda s: layer.apply(params, s, x, train=True)[1])
    for _ in range(10):
        state = step(state)
    mu, var = x.astype(np.float64).mean(0), x.astype(np.float64).var(0)
    np.testing.assert_allclose(state["mean"], mu + 0.8**10 * (0 - mu), rtol=1e-4)
    np.testing.assert_allclose(state["var"], var + 0.8**10 * (1 - var), rtol=1e-4)


@pytest.mark.parametrize("shape", [(6, 3), (2, 2, 3, 3)], ids=["dense", "nhwc"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_batch_norm_gradients_match_finite_differences(shape, train, x64, key):
    r = rng(3)
    layer = L.batch_norm(momentum=0.1, eps=1e-3)
    x = r.normal(size=shape) * 2 + 1
    cot = r.normal(size=shape)  # a random projection: sum(y) alone has zero gradient in x
    gamma, beta = r.uniform(0.5, 2, 3), r.normal(size=3)
    state = {"mean": r.normal(size=3), "var": r.uniform(0.5, 2, 3)}

    def jax_loss(x, gamma, beta):
        y, _ = layer.apply({"gamma": gamma, "beta": beta}, jax.tree_util.tree_map(jnp.asarray, state), x, train=train)
        return jnp.sum(y * cot)

    def np_loss(x, gamma, beta):
        return np.sum(np_batch_norm(x, gamma, beta, state["mean"], state["var"], train, 0.1, 1e-3)[0] * cot)

    args = (jnp.asarray(x), jnp.asarray(gamma), jnp.asarray(beta))
    assert args[0].dtype == jnp.float64
    assert float(jax.jit(jax_loss)(*args)) == pytest.approx(np_loss(x, gamma, beta), rel=1e-10)
    gx, gg, gb = jax.jit(jax.grad(jax_loss, argnums=(0, 1, 2)))(*args)
    np.testing.assert_allclose(gx, numeric_grad(lambda v: np_loss(v, gamma, beta), x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(gg, numeric_grad(lambda v: np_loss(x, v, beta), gamma), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(gb, numeric_grad(lambda v: np_loss(x, gamma, v), beta), rtol=1e-6, atol=1e-8)


# ------------------------------------------------------------------------------ serial


def test_state_threads_through_serial(key):
    net = serial(L.dense(3, normal_init(1.0), normal_init(1.0)), L.batch_norm(), L.activation("relu"),
                 L.batch_norm(momentum=0.5), L.dropout(0.25))
    _, params, state = net.init(key, (4,))
    assert set(state) == {"bn0", "bn1", "dropout0"}
    x = rng(4).normal(size=(10, 4)).astype(np.float32)
    p = f64(params)

    def np_forward(state, train):
        h = x @ p["dense0"]["w"] + p["dense0"]["b"]
        h, m0, v0 = np_batch_norm(h, 1.0, 0.0, state["bn0"]["mean"], state["bn0"]["var"], train, 0.1)
        h = np.maximum(h, 0)
        h, m1, v1 = np_batch_norm(h, 1.0, 0.0, state["bn1"]["mean"], state["bn1"]["var"], train, 0.5)
        return h, {"bn0": (m0, v0), "bn1": (m1, v1)}

    # evaluation: running statistics used and returned unchanged; dropout is the identity
    y, new = net.apply(params, state, jnp.asarray(x), train=False)
    np.testing.assert_allclose(y, np_forward(f64(state), False)[0], rtol=1e-4, atol=1e-5)
    jax.tree_util.tree_map(np.testing.assert_array_equal, new, state)

    # training: each batch norm moves its own statistics, from what the layer before it gave
    s = state
    for _ in range(2):  # the second step starts from the first step's statistics
        _, expected = np_forward(f64(s), True)
        y, s_next = net.apply(params, s, jnp.asarray(x), train=True, key=key)
        for name, (m, v) in expected.items():
            np.testing.assert_allclose(s_next[name]["mean"], m, rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(s_next[name]["var"], v, rtol=1e-4, atol=1e-6)
        assert float(s_next["dropout0"]["rate"]) == pytest.approx(0.25)
        assert not np.allclose(s_next["bn0"]["mean"], s["bn0"]["mean"])
        s = s_next
    # the output in training used batch statistics and dropout
    h, _ = np_forward(f64(state), True)
    y = np.asarray(y)
    kept = y != 0
    np.testing.assert_allclose(y[kept], (h / 0.75)[kept], rtol=1e-3, atol=1e-4)


def test_serial_passes_distinct_keys_and_is_deterministic(key):
    net = serial(L.dropout(0.5), L.dropout(0.5))
    _, params, state = net.init(key, (2000,))
    x = jnp.ones((1, 2000))
    y1, _ = net.apply(params, state, x, train=True, key=key)
    y2, _ = net.apply(params, state, x, train=True, key=key)
    np.testing.assert_array_equal(y1, y2)
    # two independent masks keep a quarter, each kept unit scaled by 4; one mask reused twice would keep half
    assert abs(float((np.asarray(y1) != 0).mean()) - 0.25) < 0.03
    np.testing.assert_allclose(np.asarray(y1)[np.asarray(y1) != 0], 4.0, rtol=1e-6)


# ---------------------------------------------------------------------------- parallel


def test_parallel_concatenates_dense_branches(key):
    net = parallel(L.dense(2, normal_init(1.0), normal_init(1.0)),
                   serial(L.dense(3, normal_init(1.0), normal_init(1.0)), L.activation("tanh")),
                   L.activation("relu"))
    out_shape, params, state = net.init(key, (4,))
    assert out_shape == (2 + 3 + 4,) and state == {}
    assert set(params) == {"branch0", "branch1"}  # the activation has none
    x = rng(5).normal(size=(6, 4)).astype(np.float32)
    p = f64(params)
    expected = np.concatenate([
        x @ p["branch0"]["w"] + p["branch0"]["b"],
        np.tanh(x @ p["branch1"]["dense0"]["w"] + p["branch1"]["dense0"]["b"]),
        np.maximum(x, 0),
    ], axis=1)  # fmt: skip
    y, _ = net.apply(params, state, jnp.asarray(x))
    assert y.shape == (6, *out_shape)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_parallel_concatenates_on_the_channel_axis(key):
    net = parallel(L.conv2d(2, 1, w_init=normal_init(1.0), b_init=normal_init(1.0), impl="xla"),
                   L.activation("relu"),
                   L.conv2d(3, 3, padding=1, impl="xla"))
    out_shape, _, state = init_shapes(net, (3, 4, 2), key)
    assert out_shape == (3, 4, 2 + 2 + 3) and state == {}
    params = random_params(net, (3, 4, 2), key, seed=6)
    x = rng(6).normal(size=(5, 3, 4, 2)).astype(np.float32)
    y, _ = jax.jit(net.apply)(params, state, jnp.asarray(x))
    assert y.shape == (5, *out_shape)
    p = f64(params)
    one_by_one = np.einsum("nhwc,cf->nhwf", x, p["branch0"]["w"][0, 0]) + p["branch0"]["b"]
    np.testing.assert_allclose(y[..., :2], one_by_one, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y[..., 2:4], np.maximum(x, 0), rtol=0, atol=0)
    # the 3x3 branch (padding 1) at the centre pixel (1, 1): the full window, no padding
    window = x[:, 0:3, 0:3, :]
    centre = np.einsum("nijc,ijcf->nf", window, p["branch2"]["w"]) + p["branch2"]["b"]
    np.testing.assert_allclose(y[:, 1, 1, 4:], centre, rtol=1e-4, atol=1e-5)


def test_parallel_threads_state_of_each_branch(key):
    net = parallel(L.batch_norm(), L.batch_norm(momentum=0.5))
    _, params, state = net.init(key, (2,))
    x = rng(7).normal(2.0, 1.0, size=(8, 2)).astype(np.float32)
    y, new = net.apply(params, state, jnp.asarray(x), train=True)
    mu = x.astype(np.float64).mean(0)
    np.testing.assert_allclose(new["branch0"]["mean"], 0.1 * mu, rtol=1e-5)
    np.testing.assert_allclose(new["branch1"]["mean"], 0.5 * mu, rtol=1e-5)
    np.testing.assert_allclose(y[:, :2], y[:, 2:], rtol=1e-6)  # same batch statistics, same output


def test_parallel_branches_must_agree_but_for_channels(key):
    with pytest.raises(ValueError, match="channel"):
        init_shapes(parallel(L.conv2d(2, 3, impl="xla"), L.conv2d(2, 1, impl="xla")), (5, 5, 1), key)


# ---------------------------------------------------------------------------- residual


def test_residual_adds_the_identity(key):
    net = residual(L.dense(4, normal_init(1.0), normal_init(1.0)))
    out_shape, params, state = net.init(key, (4,))
    assert out_shape == (4,) and set(params) == {"body"} and state == {}
    x = rng(8).normal(size=(3, 4)).astype(np.float32)
    p = f64(params)
    y, _ = net.apply(params, state, jnp.asarray(x))
    np.testing.assert_allclose(y, x @ p["body"]["w"] + p["body"]["b"] + x, rtol=1e-5, atol=1e-5)


def test_residual_with_a_projection(key):
    net = residual(serial(L.dense(3, normal_init(1.0), normal_init(1.0)), L.activation("relu")),
                   projection=L.dense(3, normal_init(1.0), normal_init(1.0)))
    out_shape, params, state = net.init(key, (5,))
    assert out_shape == (3,) and set(params) == {"body", "proj"}
    x = rng(9).normal(size=(4, 5)).astype(np.float32)
    p = f64(params)
    expected = np.maximum(x @ p["body"]["dense0"]["w"] + p["body"]["dense0"]["b"], 0) + x @ p["proj"]["w"] + p["proj"]["b"]
    y, _ = net.apply(params, state, jnp.asarray(x))
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_residual_threads_state_of_its_body(key):
    net = residual(serial(L.dense(2, normal_init(1.0)), L.batch_norm()))
    _, params, state = net.init(key, (2,))
    x = rng(10).normal(size=(6, 2)).astype(np.float32)
    y, new = net.apply(params, state, jnp.asarray(x), train=True)
    h = x @ np.asarray(params["body"]["dense0"]["w"], np.float64)
    ref, mean, var = np_batch_norm(h, 1.0, 0.0, np.zeros(2), np.ones(2), True)
    np.testing.assert_allclose(y, ref + x, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(new["body"]["bn0"]["mean"], mean, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(new["body"]["bn0"]["var"], var, rtol=1e-5, atol=1e-7)


def test_residual_shape_mismatch_needs_a_projection(key):
    with pytest.raises(ValueError, match="projection"):
        residual(L.dense(3)).init(key, (5,))
    with pytest.raises(ValueError, match="projection"):
        init_shapes(residual(L.conv2d(4, 3, padding=1, impl="xla")), (6, 6, 2), key)  # channels differ
    with pytest.raises(ValueError):
        init_shapes(residual(L.dense(3), projection=L.dense(2)), (5,), key)  # a projection of the wrong size
    # the same shapes with a projection that fits are fine
    assert init_shapes(residual(L.conv2d(4, 3, padding=1, impl="xla"), L.conv2d(4, 1, impl="xla")), (6, 6, 2), key)[0] == (6, 6, 4)


# --------------------------------------------------------------------------- recurrent


def np_rnn(x, p, reverse=False):
    """H_t = tanh(X_t W_xh + H_{t-1} W_hh + b_h) from H = 0, step by step."""
    batch, steps, _ = x.shape
    h = np.zeros((batch, p["w_hh"].shape[0]))
    out = np.zeros((batch, steps, p["w_hh"].shape[0]))
    for t in (reversed(range(steps)) if reverse else range(steps)):
        h = np.tanh(x[:, t] @ p["w_xh"] + h @ p["w_hh"] + p["b_h"])
        out[:, t] = h
    return out


@pytest.mark.parametrize("reverse", [False, True])
def test_recurrent_matches_a_numpy_loop(reverse, key):
    net = recurrent(rnn_cell(4, normal_init(0.6), normal_init(0.5)), reverse=reverse)
    out_shape, params, state = net.init(key, (6, 3))
    assert out_shape == (6, 4) and state == {}
    assert set(params) == {"w_xh", "w_hh", "b_h"}
    x = rng(11).normal(size=(2, 6, 3)).astype(np.float32)
    y, _ = net.apply(params, state, jnp.asarray(x))
    assert y.shape == (2, *out_shape)
    np.testing.assert_allclose(y, np_rnn(x.astype(np.float64), f64(params), reverse), rtol=1e-5, atol=1e-5)
    # the direction matters: the other order gives other outputs
    assert not np.allclose(y, np_rnn(x.astype(np.float64), f64(params), not reverse), atol=1e-3)


def test_recurrent_gradients_match_finite_differences(key):
    """float32 JAX against float64 NumPy differences (see the float64 test below)."""
    net = recurrent(rnn_cell(3, normal_init(0.6), normal_init(0.5)))
    _, params, _ = net.init(key, (4, 2))
    p = f64(params)
    r = rng(12)
    x, cot = r.normal(size=(2, 4, 2)), r.normal(size=(2, 4, 3))

    def jax_loss(params):
        return jnp.sum(net.apply(params, {}, jnp.asarray(x, jnp.float32))[0] * cot.astype(np.float32))

    grads = jax.jit(jax.grad(jax_loss))(params)
    for name in ("w_hh", "w_xh", "b_h"):
        def np_loss(v, name=name):
            return np.sum(np_rnn(x, p | {name: v}) * cot)

        np.testing.assert_allclose(grads[name], numeric_grad(np_loss, p[name]), rtol=1e-4, atol=1e-5)


def test_recurrent_runs_in_float64(x64, key):
    net = recurrent(rnn_cell(3))
    params = random_params(net, (4, 2), key)
    x = rng(12).normal(size=(2, 4, 2))
    y, _ = net.apply(f64(params), {}, jnp.asarray(x))
    assert y.dtype == jnp.float64
    np.testing.assert_allclose(y, np_rnn(x, f64(params)), rtol=1e-12)


# ------------------------------------------------------------------------------ weights


def test_weight_helpers_pick_exactly_w_and_w_leaves(key):
    net = serial(L.conv2d(2, 3, impl="xla"), L.batch_norm(), L.flatten(), L.dense(3), L.dense(2, use_bias=False))
    params = random_params(net, (4, 4, 1), key, seed=13, scale=1.0)
    r = rng(13)
    params = dict(params) | {
        "rnn0": {"w_xh": r.normal(size=(2, 3)), "w_hh": r.normal(size=(3, 3)), "b_h": r.normal(size=3)},
        "odd": {"wx": r.normal(size=2), "bw": r.normal(size=2), "weight": r.normal(size=2), "w": r.normal(size=(2, 2))},
    }
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), params)
    expected = {"conv0/w", "dense0/w", "dense1/w", "rnn0/w_xh", "rnn0/w_hh", "odd/w"}
    assert set(paths(params)) >= expected | {"conv0/b", "bn0/gamma", "bn0/beta", "dense0/b", "rnn0/b_h", "odd/wx", "odd/bw"}

    picked = {path_name(p) for p, _ in jax.tree_util.tree_leaves_with_path(params) if is_weight(p)}
    assert picked == expected
    mask = weight_mask(params)
    assert jax.tree_util.tree_structure(mask) == jax.tree_util.tree_structure(params)
    assert {path_name(p) for p, m in jax.tree_util.tree_leaves_with_path(mask) if m} == expected
    assert all(isinstance(m, bool) for m in jax.tree_util.tree_leaves(mask))
    assert {name for name, _ in weights(params)} == expected

    flat = {path_name(p): np.asarray(v, np.float64) for p, v in jax.tree_util.tree_leaves_with_path(params)}
    l2 = sum(np.sum(flat[name] ** 2) for name in expected)
    assert float(l2_of_weights(params)) == pytest.approx(l2, rel=1e-5)
    assert weight_norm(params) == pytest.approx(np.sqrt(l2), rel=1e-6)
    everything = sum(np.sum(v**2) for v in flat.values())
    assert everything > l2 * 1.01  # the leaves left out (biases, gamma, odd names) do weigh something

    # and the gradient of the L2 term is 2 w on weights, 0 elsewhere
    grads = jax.jit(jax.grad(l2_of_weights))(params)
    for p, g in jax.tree_util.tree_leaves_with_path(grads):
        name = path_name(p)
        np.testing.assert_allclose(g, 2 * flat[name] if name in expected else 0 * flat[name], rtol=1e-6)
