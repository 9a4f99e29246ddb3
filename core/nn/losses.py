"""Losses and metrics by name. A loss maps (outputs, targets) to per-example values (batch,).

`LOSSES[cfg.loss.name]` is a `Loss`: its per-example function and whether its outputs are class
logits (then accuracy is reported beside it). A `Metric` is averaged over examples at
evaluation and may be finished by a function of that mean (a root, for an RMSE).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

PerExample = Callable[[jax.Array, jax.Array], jax.Array]


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


class Loss(NamedTuple):
    fn: PerExample
    classify: bool  # outputs are class logits, so that accuracy means something


LOSSES: dict[str, Loss] = {
    "squared_error": Loss(squared_error, classify=False),
    "mse": Loss(mse, classify=False),
    "cross_entropy": Loss(cross_entropy, classify=True),
}


class Metric(NamedTuple):
    per_example: PerExample
    finish: Callable[[jax.Array], jax.Array] | None = None  # applied to the mean over examples


def default_metrics(loss: Loss) -> dict[str, Metric]:
    """What training and evaluation report for a loss: the loss, and accuracy for classifiers."""
    return {"loss": Metric(loss.fn)} | ({"acc": Metric(accuracy)} if loss.classify else {})
