"""Losses and metrics by name. A loss maps (outputs, targets) to per-example values (batch,).

`LOSSES[cfg.loss.name]` is a `Loss`: its per-example function and whether its outputs are class
logits (then accuracy is reported beside it). A `Metric` is averaged over examples at
evaluation and may be finished by a function of that mean (a root, for an RMSE; exp, for a
perplexity). A loss or metric with a `count` sums over each example's tokens and is averaged
over the tokens of a batch or split rather than over its examples (the masked loss of
sequence-to-sequence models, D2L 10.7.3).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from ..config.metrics import classifies

PerExample = Callable[[jax.Array, jax.Array], jax.Array]


def squared_error(pred: jax.Array, y: jax.Array) -> jax.Array:
    """The book's 1/2 (y_hat - y)^2, summed over output dimensions (D2L 3.1.1.2)."""
    diff = pred - y.reshape(pred.shape)
    return 0.5 * jnp.sum(diff.reshape(diff.shape[0], -1) ** 2, axis=1)


def mse(pred: jax.Array, y: jax.Array) -> jax.Array:
    """(y_hat - y)^2 averaged over output dimensions, as PyTorch's nn.MSELoss (D2L 3.5)."""
    diff = pred - y.reshape(pred.shape)
    return jnp.mean(diff.reshape(diff.shape[0], -1) ** 2, axis=1)


def _per_example(values: jax.Array) -> jax.Array:
    """(batch, *steps) -> (batch,): the mean over a sequence's steps."""
    return values if values.ndim == 1 else jnp.mean(values.reshape(values.shape[0], -1), axis=1)


def token_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """-log softmax(logits)[label] per position: logits (..., classes), labels (...)."""
    log_z = jax.nn.logsumexp(logits, axis=-1)
    picked = jnp.take_along_axis(logits, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return log_z - picked


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """-log softmax(logits)[label], computed as logsumexp(logits) - logit[label], which stays
    finite for any finite logits (D2L 4.1.2: the LogSumExp trick). For sequences, logits
    (batch, steps, classes) and labels (batch, steps), the mean over the steps."""
    return _per_example(token_cross_entropy(logits, labels))


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """1.0 where the arg-max class is the label, else 0.0, per example (for sequences, the
    fraction of its steps)."""
    return _per_example((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))


def sequence_mask(valid_len: jax.Array, steps: int) -> jax.Array:
    """(batch,) lengths -> (batch, steps) float mask, 1 at the first valid_len positions (D2L 10.7.3)."""
    return (jnp.arange(steps)[None, :] < valid_len[:, None]).astype(jnp.float32)


def _labels_and_mask(target: jax.Array) -> tuple[jax.Array, jax.Array]:
    labels, valid_len = target[:, :-1], target[:, -1]
    return labels, sequence_mask(valid_len, labels.shape[1])


def masked_cross_entropy(logits: jax.Array, target: jax.Array) -> jax.Array:
    """The cross-entropy summed over each target's first `valid_len` tokens; positions beyond
    (padding) count for nothing. `target` (batch, steps + 1): the labels, then the valid length
    (`core.data.translation`'s layout)."""
    labels, mask = _labels_and_mask(target)
    return jnp.sum(token_cross_entropy(logits, labels) * mask, axis=1)


def masked_accuracy(logits: jax.Array, target: jax.Array) -> jax.Array:
    labels, mask = _labels_and_mask(target)
    return jnp.sum((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32) * mask, axis=1)


def valid_tokens(target: jax.Array) -> jax.Array:
    return target[:, -1].astype(jnp.float32)


Count = Callable[[object], jax.Array]  # targets -> (batch,) tokens per example


class Loss(NamedTuple):
    fn: PerExample
    classify: bool  # outputs are class logits, so that accuracy means something
    count: Count | None = None  # with it, the loss is averaged over tokens, not examples
    accuracy: PerExample = accuracy


# whether a loss classifies is the config's fact (`core.config.metrics`, which needs no JAX)
LOSSES: dict[str, Loss] = {
    "squared_error": Loss(squared_error, classify=classifies("squared_error")),
    "mse": Loss(mse, classify=classifies("mse")),
    "cross_entropy": Loss(cross_entropy, classify=classifies("cross_entropy")),
    "masked_cross_entropy": Loss(masked_cross_entropy, classify=classifies("masked_cross_entropy"), count=valid_tokens,
                                 accuracy=masked_accuracy),
}


class Metric(NamedTuple):
    per_example: PerExample
    finish: Callable[[jax.Array], jax.Array] | None = None  # applied to the mean over examples (or tokens)
    count: Count | None = None  # per-example totals averaged over these counts rather than examples


def default_metrics(loss: Loss, names: tuple[str, ...] = ("loss", "acc")) -> dict[str, Metric]:
    """The metrics `names` (`core.config.metrics.split_metrics`) for a loss: the loss itself,
    accuracy (for classifiers) and the perplexity, exp of the mean cross-entropy per token
    (D2L 9.3.2)."""
    made = {"loss": Metric(loss.fn, count=loss.count), "acc": Metric(loss.accuracy, count=loss.count),
            "ppl": Metric(loss.fn, jnp.exp, loss.count)}
    return {name: made[name] for name in names if name != "acc" or loss.classify}
