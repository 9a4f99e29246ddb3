"""Losses and metrics by name. A loss maps (outputs, targets) to per-example values (batch,).

`LOSSES[cfg.loss.name]` is a `Loss`: its per-example function and whether its outputs are class
logits (then accuracy is reported beside it). A `Metric` is averaged over examples at
evaluation and may be finished by a function of that mean (a root, for an RMSE; exp, for a
perplexity). A loss or metric with a `count` sums over each example's tokens and is averaged
over the tokens of a batch or split rather than over its examples (the masked loss of
sequence-to-sequence models, D2L 10.7.3).
"""

from __future__ import annotations

from functools import partial
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ..config.metrics import classifies
from .bert_models import BERT_LOSS_PARTS, bert_pretraining_loss
from .ssd_loss import bbox_mae, class_error, ssd_loss, top_iou
from .word2vec import masked_sigmoid_bce

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


def pixel_cross_entropy(logits: jax.Array, target: dict[str, jax.Array]) -> jax.Array:
    """Cross-entropy per pixel, averaged over an image's pixels (D2L 13.11.4): logits
    (batch, H, W, classes), `target["mask"]` (batch, H, W) labels."""
    return _per_example(token_cross_entropy(logits, target["mask"]))


def pixel_accuracy(logits: jax.Array, target: dict[str, jax.Array]) -> jax.Array:
    """The fraction of an image's pixels whose arg-max class is their label (D2L 13.11)."""
    return accuracy(logits, target["mask"])


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


def binary_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """-log sigmoid(z) for a label 1, -log(1 - sigmoid(z)) for 0, from one logit per example
    (a click, D2L 16.9), computed stably as optax does."""
    return optax.sigmoid_binary_cross_entropy(logits.reshape(-1), labels.reshape(-1).astype(jnp.float32))


def binary_accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return ((logits.reshape(-1) > 0) == (labels.reshape(-1) > 0.5)).astype(jnp.float32)


def observed(target: jax.Array) -> jax.Array:
    """(batch, n) ratings, 0 where unknown -> (batch,) how many are known."""
    return jnp.sum(target != 0, axis=1).astype(jnp.float32)


def masked_squared_error(pred: jax.Array, target: jax.Array) -> jax.Array:
    """1/2 (y_hat - y)^2 summed over each row's known ratings (those not 0); unknown ones count
    for nothing (AutoRec's masked reconstruction, D2L 16.4)."""
    return 0.5 * jnp.sum(jnp.where(target != 0, pred - target, 0.0) ** 2, axis=1)


def bpr(scores: dict[str, jax.Array], _: jax.Array) -> jax.Array:
    """Bayesian personalised ranking, -log sigmoid(s_pos - s_neg) per (user, positive, negative)
    triple (D2L 16.5.1)."""
    return -jax.nn.log_sigmoid(scores["pos"] - scores["neg"])


def hinge(scores: dict[str, jax.Array], _: jax.Array, margin: float = 1.0) -> jax.Array:
    """max(0, margin - (s_pos - s_neg)) per triple (D2L 16.5.2)."""
    return jax.nn.relu(margin - (scores["pos"] - scores["neg"]))


Count = Callable[[object], jax.Array]  # targets -> (batch,) tokens per example


class Loss(NamedTuple):
    fn: PerExample
    classify: bool  # outputs are class logits, so that accuracy means something
    count: Count | None = None  # with it, the loss is averaged over tokens, not examples
    accuracy: PerExample = accuracy
    squares: float | None = None  # loss x squares = the squared error, for an RMSE (None: the loss is not one)
    parts: tuple[tuple[str, PerExample], ...] = ()  # a sum's terms, each reported beside it (BERT's MLM and NSP)


# whether a loss classifies is the config's fact (`core.config.metrics`, which needs no JAX)
LOSSES: dict[str, Loss] = {
    "squared_error": Loss(squared_error, classify=classifies("squared_error"), squares=2.0),
    "mse": Loss(mse, classify=classifies("mse"), squares=1.0),
    "cross_entropy": Loss(cross_entropy, classify=classifies("cross_entropy")),
    "masked_cross_entropy": Loss(masked_cross_entropy, classify=classifies("masked_cross_entropy"), count=valid_tokens,
                                 accuracy=masked_accuracy),
    "binary_cross_entropy": Loss(binary_cross_entropy, classify=classifies("binary_cross_entropy"), accuracy=binary_accuracy),
    "masked_squared_error": Loss(masked_squared_error, classify=classifies("masked_squared_error"), count=observed, squares=2.0),
    "bpr": Loss(bpr, classify=classifies("bpr")),
    "hinge": Loss(hinge, classify=classifies("hinge")),
    "pixel_cross_entropy": Loss(pixel_cross_entropy, classify=classifies("pixel_cross_entropy"), accuracy=pixel_accuracy),
    "ssd": Loss(ssd_loss, classify=classifies("ssd")),
    "masked_sigmoid_bce": Loss(masked_sigmoid_bce, classify=classifies("masked_sigmoid_bce")),
    "bert_pretraining": Loss(bert_pretraining_loss, classify=classifies("bert_pretraining"), parts=BERT_LOSS_PARTS),
}


class Metric(NamedTuple):
    per_example: PerExample
    finish: Callable[[jax.Array], jax.Array] | None = None  # applied to the mean over examples (or tokens)
    count: Count | None = None  # per-example totals averaged over these counts rather than examples


def default_metrics(loss: Loss, names: tuple[str, ...] = ("loss", "acc"), top_k: int = 10) -> dict[str, Metric]:
    """The metrics `names` (`core.config.metrics.split_metrics`) for a loss: the loss itself,
    accuracy (for classifiers), the perplexity, exp of the mean cross-entropy per token
    (D2L 9.3.2), the RMSE of a squared-error loss (D2L 16.3), and a ranking's hit rate in the
    top `top_k` and AUC (D2L 16.5), and a detector's class error and box MAE over its anchors
    (D2L 13.7)."""
    made = {"loss": Metric(loss.fn, count=loss.count), "acc": Metric(loss.accuracy, count=loss.count),
            "ppl": Metric(loss.fn, jnp.exp, loss.count), "hit_rate": Metric(partial(hit_rate, top_k=top_k)),
            "auc": Metric(ranking_auc), "class_err": Metric(class_error), "bbox_mae": Metric(bbox_mae),
            "top_iou": Metric(top_iou)}
    made |= {name: Metric(fn) for name, fn in loss.parts}
    if loss.squares is not None:
        made["rmse"] = Metric(lambda out, y: loss.squares * loss.fn(out, y), jnp.sqrt, loss.count)
    return {name: made[name] for name in names if name != "acc" or loss.classify}


def _rank_counts(scores: jax.Array, target: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array, jax.Array]:
    """For each row of `scores` (batch, items) and its held-out item `target["item"]`: how many
    candidates score above it, how many tie with it, and how many candidates there are. The
    candidates are the items other than it that the user has no training interaction with
    (`target["seen"]` False)."""
    item = target["item"].astype(jnp.int32)
    own = jnp.take_along_axis(scores, item[:, None], axis=1)
    others = ~target["seen"] & (jnp.arange(scores.shape[1])[None, :] != item[:, None])
    above = jnp.sum((scores > own) & others, axis=1)
    ties = jnp.sum((scores == own) & others, axis=1)
    return above.astype(jnp.float32), ties.astype(jnp.float32), jnp.sum(others, axis=1).astype(jnp.float32)


def hit_rate(scores: jax.Array, target: dict[str, jax.Array], top_k: int) -> jax.Array:
    """1 where the held-out item is among the `top_k` best-scored candidates, ties counted
    against it (the book's `hit_and_auc`, D2L 16.6)."""
    above, ties, _ = _rank_counts(scores, target)
    return (above + ties < top_k).astype(jnp.float32)


def ranking_auc(scores: jax.Array, target: dict[str, jax.Array]) -> jax.Array:
    """The share of the other candidates scored below the held-out item, ties counting one half
    (the book's per-user AUC, D2L 16.6)."""
    above, ties, n = _rank_counts(scores, target)
    return (n - above - 0.5 * ties) / jnp.maximum(n, 1.0)
