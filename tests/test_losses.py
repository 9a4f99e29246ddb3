"""Losses and metrics against NumPy references."""

import jax
import jax.numpy as jnp
import numpy as np

from dlrun.core.nn import losses


def np_cross_entropy(logits, labels):
    logits = np.asarray(logits, np.float64)
    m = logits.max(axis=1, keepdims=True)
    log_z = m[:, 0] + np.log(np.exp(logits - m).sum(axis=1))
    return log_z - logits[np.arange(len(labels)), labels]


def test_cross_entropy_matches_numpy(key):
    logits = jax.random.normal(key, (32, 10)) * 3
    labels = jax.random.randint(key, (32,), 0, 10)
    np.testing.assert_allclose(
        losses.cross_entropy(logits, labels), np_cross_entropy(logits, np.asarray(labels)), rtol=1e-5, atol=1e-6
    )


def test_cross_entropy_is_finite_for_huge_logits():
    logits = jnp.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0]])
    labels = jnp.array([1, 1])
    out = losses.cross_entropy(logits, labels)
    np.testing.assert_allclose(out, [2e4, 0.0])
    grads = jax.grad(lambda z: losses.cross_entropy(z, labels).sum())(logits)
    assert np.all(np.isfinite(grads))


def test_cross_entropy_gradient_is_softmax_minus_onehot(key):
    logits = jax.random.normal(key, (4, 5))
    labels = jnp.array([0, 3, 4, 1])
    grads = jax.grad(lambda z: losses.cross_entropy(z, labels).sum())(logits)
    z = np.asarray(logits, np.float64)
    softmax = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    np.testing.assert_allclose(grads, softmax - np.eye(5)[np.asarray(labels)], atol=1e-6)


def test_squared_error_has_the_books_half():
    pred = jnp.array([[1.0], [3.0]])
    y = jnp.array([0.0, 1.0])  # reshaped like pred, as the book does
    np.testing.assert_allclose(losses.squared_error(pred, y), [0.5, 2.0])
    np.testing.assert_allclose(losses.mse(pred, y), [1.0, 4.0])


def test_accuracy():
    logits = jnp.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    np.testing.assert_array_equal(losses.accuracy(logits, jnp.array([1, 1, 1])), [1.0, 0.0, 1.0])
