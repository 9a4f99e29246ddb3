"""Per-example losses and metrics. Each loss maps (outputs, targets) -> (batch,) losses."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp


def squared_error(pred: jax.Array, y: jax.Array) -> jax.Array:
    """The book's 1/2 (y_hat - y)^2, summed over output dimensions (D2L 3.1.1.2)."""
    diff = pred - y.reshape(pred.shape)
    return 0.5 * jnp.sum(diff.reshape(diff.shape[0], -1) ** 2, axis=1)


def mse(pred: jax.Array, y: jax.Array) -> jax.Array:
    """(y_hat - y)^2 averaged over output dimensions, as PyTorch's nn.MSELoss (D2L 3.5)."""
    diff = pred - y.reshape(pred.shape)
    return jnp.mean(diff.reshape(diff.shape[0], -1) ** 2, axis=1)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """-log softmax(logits)[label], computed as logsumexp(logits) - logit[label], which stays
    finite for any finite logits (D2L 4.1.2: the LogSumExp trick)."""
    log_z = jax.nn.logsumexp(logits, axis=-1)
    picked = jnp.take_along_axis(logits, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]
    return log_z - picked


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """1.0 where the arg-max class is the label, else 0.0, per example."""
    return (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)


LOSSES: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "squared_error": squared_error,
    "mse": mse,
    "cross_entropy": cross_entropy,
}

# losses whose outputs are class logits, so that accuracy means something
CLASSIFICATION_LOSSES = frozenset({"cross_entropy"})
