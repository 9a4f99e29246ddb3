"""Layers under the `Layer(kind, init, apply)` protocol: shapes agree between init and apply;
gradients match finite differences of an independent float64 NumPy forward pass; dropout keeps
its rate in the state and has the right statistics; initialisers have the book's variances.

    init(key, in_shape) -> (out_shape, params, state)
    apply(params, state, x, *, train=False, key=None) -> (y, state)
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlrun.core.nn import layers as L
from dlrun.core.nn.combinators import parallel, recurrent, residual, serial
from dlrun.core.nn.init import WEIGHT_INITS, he_init, normal_init, ones_init, xavier_init, zeros_init
from dlrun.core.nn.rnn import rnn_cell

from .conftest import numeric_grad


@pytest.mark.parametrize(
    "layer, in_shape",
    [
        (L.dense(7), (5,)),
        (L.dense(3, use_bias=False), (4,)),
        (L.flatten(), (4, 3, 2)),
        (L.activation("relu"), (6,)),
        (L.activation("sigmoid"), (2, 3)),
        (L.activation("tanh"), (3,)),
        (L.dropout(0.3), (8,)),
        (L.dropout(0.0), (2, 3)),
        (L.batch_norm(), (6,)),
        (L.batch_norm(), (5, 5, 3)),
        (serial(L.flatten(), L.dense(16), L.activation("relu"), L.dropout(0.5), L.dense(3)), (4, 4, 1)),
        (L.conv2d(6, 5, padding=2), (28, 28, 1)),
        (L.conv2d(4, 3, stride=2, impl="xla"), (9, 9, 2)),
        (L.pool2d("avg", 2), (14, 14, 6)),
        (L.pool2d("max", 3, stride=2, padding=1), (7, 7, 3)),
        (serial(L.conv2d(4, 3, padding=1, impl="xla"), L.batch_norm(), L.activation("relu"), L.pool2d("max", 2)), (6, 6, 2)),
        (parallel(L.dense(2), L.dense(3), L.activation("tanh")), (4,)),
        (residual(serial(L.dense(5), L.batch_norm())), (5,)),
        (residual(L.dense(3), projection=L.dense(3)), (5,)),
        (recurrent(rnn_cell(4)), (6, 3)),
        (recurrent(rnn_cell(2), reverse=True), (3, 5)),
    ],
    ids=lambda v: getattr(v, "kind", None) or str(v),
)
def test_init_shape_matches_apply(layer, in_shape, key):
    """Traced with `jax.eval_shape` (nothing is compiled): the shapes init promises are the
    shapes apply gives, in training and evaluation, and the state keeps its structure."""
    found = {}

    def init(k):
        found["out_shape"], params, state = layer.init(k, in_shape)
        return params, state

    params, state = jax.eval_shape(init, key)
    out_shape = found["out_shape"]
    assert isinstance(out_shape, tuple) and all(isinstance(d, int) for d in out_shape)
    x = jax.ShapeDtypeStruct((9, *in_shape), jnp.float32)
    for train in (False, True):
        y, new_state = jax.eval_shape(lambda p, s, x, k, t=train: layer.apply(p, s, x, train=t, key=k), params, state, x, key)
        assert y.shape == (9, *out_shape) and y.dtype == jnp.float32
        # the state keeps its structure, shapes and dtypes (what lax.scan over an epoch requires)
        assert jax.tree_util.tree_structure(new_state) == jax.tree_util.tree_structure(state)
        assert jax.tree_util.tree_leaves(new_state) == jax.tree_util.tree_leaves(state)


@pytest.mark.parametrize(
    "layer, in_shape",
    [
        (L.flatten(), (3, 2)),
        (L.activation("relu"), (4,)),
        (L.pool2d("avg", 2), (4, 4, 2)),
        (L.dense(3), (4,)),
        (L.conv2d(2, 3, impl="xla"), (5, 5, 1)),
    ],
)
def test_layers_without_state_return_empty_state(layer, in_shape, key):
    _, params, state = layer.init(key, in_shape)
    assert state == {}
    for train in (False, True):
        _, new_state = jax.eval_shape(lambda x, t=train: layer.apply(params, state, x, train=t, key=key), jnp.ones((2, *in_shape)))
        assert new_state == {}


def test_parameterless_layers_have_empty_params(key):
    for layer, shape in ((L.flatten(), (3, 2)), (L.activation("tanh"), (4,)), (L.pool2d("max", 2), (4, 4, 1)), (L.dropout(0.5), (3,))):
        assert layer.init(key, shape)[1] == {}


def test_dense_computes_x_w_plus_b_and_without_bias_holds_w_only(key):
    layer = L.dense(3, normal_init(1.0), normal_init(1.0))
    _, params, _ = layer.init(key, (4,))
    assert set(params) == {"w", "b"} and params["w"].shape == (4, 3) and params["b"].shape == (3,)
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (5, 4)))
    y, _ = layer.apply(params, {}, jnp.asarray(x))
    np.testing.assert_allclose(y, x @ np.asarray(params["w"]) + np.asarray(params["b"]), rtol=1e-5, atol=1e-6)

    no_bias = L.dense(3, normal_init(1.0), use_bias=False)
    _, params, _ = no_bias.init(key, (4,))
    assert set(params) == {"w"}
    y, _ = no_bias.apply(params, {}, jnp.asarray(x))
    np.testing.assert_allclose(y, x @ np.asarray(params["w"]), rtol=1e-5, atol=1e-6)


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


def test_activation_registry_matches_numpy(key):
    assert set(L.ACTIVATIONS) == set(NP_ACTIVATIONS)
    x = np.linspace(-3, 3, 13, dtype=np.float32).reshape(1, 13)
    for name, ref in NP_ACTIVATIONS.items():
        y, _ = L.activation(name).apply({}, {}, jnp.asarray(x))
        np.testing.assert_allclose(y, ref(x.astype(np.float64)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("act", sorted(L.ACTIVATIONS))
def test_dense_activation_gradients_match_finite_differences(act, key):
    k1, k2, k3 = jax.random.split(key, 3)
    net = serial(L.dense(4, normal_init(0.5)), L.activation(act), L.dense(1, normal_init(0.5)))
    _, params, state = net.init(k1, (3,))
    assert state == {}
    params = jax.tree_util.tree_map(lambda p: p + 0.1 * jax.random.normal(k3, p.shape), params)
    x = np.asarray(jax.random.normal(k2, (5, 3)), np.float64)
    w0, b0 = (np.asarray(params["dense0"][k], np.float64) for k in "wb")
    w1, b1 = (np.asarray(params["dense1"][k], np.float64) for k in "wb")

    def np_loss(w0_):
        return np.sum((NP_ACTIVATIONS[act](x @ w0_ + b0) @ w1 + b1) ** 2)

    def jax_loss(p):
        return jnp.sum(net.apply(p, state, jnp.asarray(x, jnp.float32))[0] ** 2)

    grads = jax.jit(jax.grad(jax_loss))(params)
    np.testing.assert_allclose(grads["dense0"]["w"], numeric_grad(np_loss, w0), rtol=2e-3, atol=2e-4)
    assert np.isclose(float(jax.jit(jax_loss)(params)), np_loss(w0), rtol=1e-5)


# ----------------------------------------------------------------------------- dropout


def dropout_apply(rate, x, key, train):
    layer = L.dropout(rate)
    _, params, state = layer.init(key, x.shape[1:])
    assert params == {}
    assert set(state) == {"rate"} and float(state["rate"]) == pytest.approx(rate)  # the rate lives in the state
    y, new_state = layer.apply(params, state, x, key=key, train=train)
    assert float(new_state["rate"]) == pytest.approx(rate)  # and stays there
    return y


def test_dropout_preserves_expected_value(key):
    x = jnp.ones((200, 500))
    y = dropout_apply(0.3, x, key, True)
    kept = np.asarray(y) != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(np.asarray(y)[kept], 1 / 0.7, rtol=1e-6)
    assert abs(float(y.mean()) - 1.0) < 0.01


def test_dropout_masks_differ_by_key(key):
    x = jnp.ones((50, 50))
    a = dropout_apply(0.5, x, jax.random.PRNGKey(1), True)
    b = dropout_apply(0.5, x, jax.random.PRNGKey(2), True)
    assert not np.array_equal(np.asarray(a) != 0, np.asarray(b) != 0)
    np.testing.assert_array_equal(a, dropout_apply(0.5, x, jax.random.PRNGKey(1), True))  # same key, same mask


def test_dropout_edge_cases_and_eval(key):
    x = jax.random.normal(key, (4, 10))
    np.testing.assert_array_equal(dropout_apply(0.0, x, key, True), x)  # keep probability 1: the identity
    np.testing.assert_array_equal(dropout_apply(1.0, x, key, True), np.zeros((4, 10)))
    np.testing.assert_array_equal(dropout_apply(0.5, x, key, False), x)
    np.testing.assert_array_equal(dropout_apply(1.0, x, None, False), x)  # evaluation needs no key
    with pytest.raises(ValueError, match="drop_rate"):
        L.dropout(1.5)
    with pytest.raises(ValueError, match="drop_rate"):
        L.dropout(-0.1)
    layer = L.dropout(0.5)
    _, params, state = layer.init(key, (10,))
    with pytest.raises(ValueError, match="key"):
        layer.apply(params, state, x, train=True)


def test_dropout_rate_one_has_zero_gradient_not_nan(key):
    layer = L.dropout(1.0)
    _, params, state = layer.init(key, (10,))
    g = jax.grad(lambda x: jnp.sum(layer.apply(params, state, x, train=True, key=key)[0]))(jnp.ones((4, 10)))
    np.testing.assert_array_equal(g, np.zeros((4, 10)))


def test_dropout_reads_its_rate_from_the_state(key):
    """The rate is a value of the state, not a constant of the program: one compiled apply
    serves every rate, and a sweep can vmap over rates."""
    layer = L.dropout(0.3)
    _, params, state = layer.init(key, (400,))
    assert float(state["rate"]) == pytest.approx(0.3)
    x = jnp.ones((100, 400))
    apply = jax.jit(lambda rate: layer.apply(params, {"rate": rate}, x, train=True, key=key)[0])
    for rate in (0.1, 0.6):
        y = np.asarray(apply(jnp.float32(rate)))
        kept = y != 0
        assert abs(kept.mean() - (1 - rate)) < 0.01
        np.testing.assert_allclose(y[kept], 1 / (1 - rate), rtol=1e-6)
    ys = jax.vmap(apply)(jnp.asarray([0.2, 0.8], jnp.float32))
    np.testing.assert_allclose((np.asarray(ys) != 0).mean(axis=(1, 2)), [0.8, 0.2], atol=0.01)


# ------------------------------------------------------------------------ initialisers


def test_initialisers_have_the_book_statistics(key):
    w = normal_init(0.01)(key, (400, 300), jnp.float32)
    assert abs(float(w.mean())) < 5e-5 and abs(float(w.std()) - 0.01) < 5e-4
    x = xavier_init()(key, (400, 300), jnp.float32)
    assert abs(float(x.var()) - 2 / 700) < 2e-4  # Var = 2 / (n_in + n_out)
    assert float(jnp.abs(x).max()) <= np.sqrt(6 / 700) + 1e-6  # uniform on [-sqrt(6/(n_in+n_out)), +]
    h = he_init()(key, (400, 300), jnp.float32)
    assert abs(float(h.var()) - 2 / 400) < 5e-4  # Var = 2 / n_in
    np.testing.assert_array_equal(zeros_init()(key, (3, 2), jnp.float32), np.zeros((3, 2)))
    np.testing.assert_array_equal(ones_init()(key, (4,), jnp.float32), np.ones(4))


def test_weight_init_names_build_initialisers(key):
    assert set(WEIGHT_INITS) == {"normal", "xavier", "he", "zeros"}
    w = WEIGHT_INITS["normal"](0.2)(key, (300, 300), jnp.float32)
    assert abs(float(w.std()) - 0.2) < 0.01  # init_scale is the normal's stddev
    assert not np.any(np.asarray(WEIGHT_INITS["zeros"](0.2)(key, (3, 3), jnp.float32)))
    assert abs(float(WEIGHT_INITS["he"](0.2)(key, (400, 300), jnp.float32).var()) - 2 / 400) < 5e-4
    assert abs(float(WEIGHT_INITS["xavier"](0.2)(key, (400, 300), jnp.float32).var()) - 2 / 700) < 2e-4


def test_dropout_reads_its_rate_from_the_state_even_at_one(key):
    """A sweep may put any rate in the state: at 1.0 the output is zero and the gradient finite."""
    layer = L.dropout(0.5)
    x = jax.random.normal(key, (4, 6))
    _, params, state = layer.init(key, (6,))
    state = {"rate": jnp.float32(1.0)}
    y, _ = layer.apply(params, state, x, key=key, train=True)
    grad = jax.grad(lambda x: jnp.sum(layer.apply(params, state, x, key=key, train=True)[0]))(x)
    np.testing.assert_array_equal(y, np.zeros((4, 6)))
    assert np.isfinite(np.asarray(grad)).all() and not np.asarray(grad).any()
