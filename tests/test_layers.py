"""Layers: shapes agree between init and apply; gradients match finite differences of an
independent float64 NumPy forward pass; dropout statistics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from dlrun.core.nn import layers as L
from dlrun.core.nn.combinators import serial
from dlrun.core.nn.init import he_init, normal_init, xavier_init


def numeric_grad(f, x, eps=1e-6):
    """Central finite differences of a scalar NumPy function, in float64."""
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        d = np.zeros_like(x)
        d[i] = eps
        g[i] = (f(x + d) - f(x - d)) / (2 * eps)
    return g


@pytest.mark.parametrize(
    "layer, in_shape",
    [
        (L.dense(7), (5,)),
        (L.flatten(), (4, 3, 2)),
        (L.activation("relu"), (6,)),
        (L.activation("sigmoid"), (2, 3)),
        (L.activation("tanh"), (3,)),
        (L.dropout(0.3), (8,)),
        (serial(L.flatten(), L.dense(16), L.activation("relu"), L.dropout(0.5), L.dense(3)), (4, 4, 1)),
        (L.conv2d(6, 5, padding=2), (28, 28, 1)),
        (L.conv2d(4, 3, stride=2, impl="xla"), (9, 9, 2)),
        (L.pool2d("avg", 2), (14, 14, 6)),
        (L.pool2d("max", 3, stride=2, padding=1), (7, 7, 3)),
    ],
)
def test_init_shape_matches_apply(layer, in_shape, key):
    out_shape, params, state = layer.init(key, in_shape)
    x = jax.random.normal(key, (9, *in_shape))
    for train in (False, True):
        y, _ = layer.apply(params, state, x, key=key, train=train)
        assert y.shape == (9, *out_shape)


def test_serial_names_parameters_by_layer(key):
    net = serial(L.flatten(), L.dense(4), L.activation("relu"), L.dense(2))
    _, params, state = net.init(key, (3, 2))
    assert set(params) == {"dense0", "dense1"} and state == {}
    assert params["dense0"]["w"].shape == (6, 4) and params["dense1"]["b"].shape == (2,)


NP_ACTIVATIONS = {
    "relu": lambda z: np.maximum(z, 0),
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "tanh": np.tanh,
}


@pytest.mark.parametrize("act", sorted(L.ACTIVATIONS))
def test_dense_activation_gradients_match_finite_differences(act, key):
    k1, k2, k3 = jax.random.split(key, 3)
    net = serial(L.dense(4, normal_init(0.5)), L.activation(act), L.dense(1, normal_init(0.5)))
    _, params, _ = net.init(k1, (3,))
    params = jax.tree_util.tree_map(lambda p: p + 0.1 * jax.random.normal(k3, p.shape), params)
    x = np.asarray(jax.random.normal(k2, (5, 3)), np.float64)
    w0, b0 = (np.asarray(params["dense0"][k], np.float64) for k in "wb")
    w1, b1 = (np.asarray(params["dense1"][k], np.float64) for k in "wb")

    def np_loss(w0_):
        return np.sum((NP_ACTIVATIONS[act](x @ w0_ + b0) @ w1 + b1) ** 2)

    def jax_loss(p):
        return jnp.sum(net.apply(p, {}, jnp.asarray(x, jnp.float32))[0] ** 2)

    grads = jax.grad(jax_loss)(params)
    np.testing.assert_allclose(grads["dense0"]["w"], numeric_grad(np_loss, w0), rtol=2e-3, atol=2e-4)
    assert np.isclose(float(jax_loss(params)), np_loss(w0), rtol=1e-5)


def dropout_apply(rate, x, key, train):
    layer = L.dropout(rate)
    _, params, state = layer.init(key, x.shape[1:])
    assert float(state["rate"]) == pytest.approx(rate)  # the rate lives in the state
    return layer.apply(params, state, x, key=key, train=train)[0]


def test_dropout_preserves_expected_value(key):
    x = jnp.ones((200, 500))
    y = dropout_apply(0.3, x, key, True)
    kept = np.asarray(y) != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(np.asarray(y)[kept], 1 / 0.7, rtol=1e-6)
    assert abs(float(y.mean()) - 1.0) < 0.01


def test_dropout_edge_cases_and_eval(key):
    x = jax.random.normal(key, (4, 10))
    np.testing.assert_array_equal(dropout_apply(0.0, x, key, True), x)
    np.testing.assert_array_equal(dropout_apply(1.0, x, key, True), np.zeros((4, 10)))
    np.testing.assert_array_equal(dropout_apply(0.5, x, key, False), x)
    with pytest.raises(ValueError, match="drop_rate"):
        L.dropout(1.5)


def test_initialisers_have_the_book_statistics(key):
    w = normal_init(0.01)(key, (400, 300), jnp.float32)
    assert abs(float(w.std()) - 0.01) < 5e-4
    x = xavier_init()(key, (400, 300), jnp.float32)
    assert abs(float(x.var()) - 2 / 700) < 2e-4  # Var = 2 / (n_in + n_out)
    h = he_init()(key, (400, 300), jnp.float32)
    assert abs(float(h.var()) - 2 / 400) < 5e-4  # Var = 2 / n_in
