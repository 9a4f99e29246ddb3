"""The pure, jit-able pieces of training: one step, one epoch, evaluation.

The data set lives on the device; an epoch is a (num_batches, batch_size) array of example
indices, and each step gathers its batch from the device-resident arrays, so no batch crosses
the host boundary.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from ..nn.losses import Metric, PerExample, accuracy
from ..nn.params import l2_of_weights
from .state import Arrays, TrainState, take

Metrics = dict[str, jax.Array]


def make_train_step(
    model, loss_fn: PerExample, optimizer: optax.GradientTransformation, classify: bool, l2_penalty: float = 0.0
) -> Callable[[TrainState, Arrays, jax.Array], tuple[TrainState, Metrics]]:
    """`train_step(state, batch, key) -> (state, {"loss", "finite", ["acc"]})` on one batch.

    The loss is the mean over the batch, weighted by `batch.w` when the data carry weights.
    The reported loss is the data loss; an `l2_penalty` lambda adds lambda/2 ||w||^2 to the
    objective only (D2L 4.5.2: `loss + lambd * l2_penalty(w)`).
    """

    def data_loss(out, batch: Arrays):
        per_example = loss_fn(out, batch.y)
        return jnp.mean(per_example if batch.w is None else per_example * batch.w)

    def objective(params, model_state, batch: Arrays, key):
        out, model_state = model.apply(params, model_state, batch.x, train=True, key=key)
        penalty = 0.5 * l2_penalty * l2_of_weights(params) if l2_penalty else 0.0
        return data_loss(out, batch) + penalty, (out, model_state)

    def train_step(state: TrainState, batch: Arrays, key: jax.Array):
        grads, (out, model_state) = jax.grad(objective, has_aux=True)(state.params, state.model_state, batch, key)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": data_loss(out, batch)}
        metrics["finite"] = jnp.isfinite(metrics["loss"]) & jnp.isfinite(optax.tree.norm(grads))
        if classify:
            metrics["acc"] = jnp.mean(accuracy(out, batch.y))
        return TrainState(params, opt_state, model_state, state.step + 1), metrics

    return train_step


def epoch_order(key: jax.Array, epoch: int | jax.Array, num_examples: int, batch_size: int) -> jax.Array:
    """A fresh shuffle per epoch, derived from the run's key and the epoch number.

    Returns (num_batches, batch_size) indices; the last partial batch is dropped so every step
    has the same shape (a different remainder is left out each epoch).
    """
    num_batches = num_examples // batch_size
    perm = jax.random.permutation(jax.random.fold_in(key, epoch), num_examples)
    return perm[: num_batches * batch_size].reshape(num_batches, batch_size)


def make_batch_fn(train_step):
    """Per-step path: `batch_fn(state, data, order, i, key)` trains on batch i of the epoch."""

    def batch_fn(state: TrainState, data: Arrays, order: jax.Array, i: jax.Array, key: jax.Array):
        return train_step(state, take(data, order[i]), jax.random.fold_in(key, state.step))

    return batch_fn


def make_epoch_fn(train_step):
    """Whole-epoch path: one `lax.scan` over the epoch's batches; per-batch metrics stacked."""

    def epoch_fn(state: TrainState, data: Arrays, order: jax.Array, key: jax.Array):
        def body(state, idx):
            return train_step(state, take(data, idx), jax.random.fold_in(key, state.step))

        return jax.lax.scan(body, state, order)

    return epoch_fn


def pad_for_eval(data: Arrays, batch_size: int) -> tuple[Arrays, jax.Array]:
    """Pad a split to whole batches; the mask marks real examples so every one counts once."""
    n = data.x.shape[0]
    padded = -(-n // batch_size) * batch_size

    def pad_and_batch(a):
        a = jnp.pad(a, [(0, padded - n)] + [(0, 0)] * (a.ndim - 1))
        return a.reshape(padded // batch_size, batch_size, *a.shape[1:])

    return jax.tree_util.tree_map(pad_and_batch, data), pad_and_batch(jnp.ones(n, jnp.float32))


def make_eval_fn(model, metrics: dict[str, Metric]):
    """`eval_fn(params, model_state, batches, mask) -> {name: value}`: each metric's mean over
    the real examples of a padded split (`pad_for_eval`), then its `finish`."""

    def eval_fn(params, model_state, batches: Arrays, mask: jax.Array) -> Metrics:
        def body(totals, batch):
            x, y, m = batch
            out, _ = model.apply(params, model_state, x, train=False)
            sums = {name: jnp.sum(metric.per_example(out, y) * m) for name, metric in metrics.items()}
            return jax.tree_util.tree_map(jnp.add, totals, sums), None

        zeros = {name: jnp.zeros(()) for name in metrics}
        totals, _ = jax.lax.scan(body, zeros, (batches.x, batches.y, mask))
        means = {k: v / jnp.sum(mask) for k, v in totals.items()}
        return {k: metrics[k].finish(v) if metrics[k].finish else v for k, v in means.items()}

    return eval_fn
