"""The pure, jit-able pieces of training: one step, one epoch, evaluation.

The data set lives on the device; an epoch is a (num_batches, batch_size) array of example
indices, and each step gathers its batch from the device-resident arrays, so no batch crosses
the host boundary.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..nn.combinators import reset_carries
from ..nn.losses import Loss, Metric
from ..nn.models import pipeline_key
from ..nn.params import l2_of_weights
from .devices import Devices, shard_batch
from .state import Arrays, TrainState, take

Metrics = dict[str, jax.Array]


def make_train_step(
    model, loss: Loss, optimizer: optax.GradientTransformation, l2_penalty: float = 0.0, reset_every: int | None = None,
    partial_batches: bool = False, devices: Devices | None = None,
) -> Callable[[TrainState, Arrays, jax.Array], tuple[TrainState, Metrics]]:
    """`train_step(state, batch, key) -> (state, {"loss", "finite", ["acc"]})` on one batch.

    The loss is the mean over the batch (over its tokens, for a loss with a `count`), weighted
    by `batch.w` when the data carry weights. The reported loss is the data loss; an
    `l2_penalty` lambda adds lambda/2 ||w||^2 to the objective only (D2L 4.5.2:
    `loss + lambd * l2_penalty(w)`). With `reset_every` (the steps of an epoch), hidden states
    carried from batch to batch (`core.nn.combinators.recurrent`) start from zero at every
    epoch's first step. With `partial_batches`, the padding of an epoch's last, partial batch
    (`batch.m` False) counts for nothing: the mean is over its real examples. With `devices`,
    the batch is split over the devices of a mesh (`core.training.devices`).
    """

    def mean(per_example, batch: Arrays):
        weighted = per_example if batch.w is None else per_example * batch.w
        counts = loss.count(batch.y) if loss.count else jnp.ones_like(per_example)
        if partial_batches:
            weighted, counts = weighted * batch.m, counts * batch.m
            return jnp.sum(weighted) / jnp.sum(counts)
        return jnp.sum(weighted) / jnp.sum(counts) if loss.count else jnp.mean(weighted)

    def data_loss(out, batch: Arrays):
        return mean(loss.fn(out, batch.y), batch)

    def objective(params, model_state, batch: Arrays, key):
        out, model_state = model.apply(params, model_state, batch.x, train=True, key=key)
        penalty = 0.5 * l2_penalty * l2_of_weights(params) if l2_penalty else 0.0
        return data_loss(out, batch) + penalty, (out, model_state)

    def train_step(state: TrainState, batch: Arrays, key: jax.Array):
        batch = shard_batch(batch, devices)
        if getattr(model, "prepare", None) is not None:  # targets that move with their images, drawn as `with_input` draws
            x, y = model.prepare(batch.x, batch.y, pipeline_key(key), True)
            batch = batch._replace(x=x, y=y)
        model_state = state.model_state
        if reset_every:
            model_state = reset_carries(model_state, state.step % reset_every == 0)
        grads, (out, model_state) = jax.grad(objective, has_aux=True)(state.params, model_state, batch, key)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": data_loss(out, batch)}
        metrics["finite"] = jnp.isfinite(metrics["loss"]) & jnp.isfinite(optax.tree.norm(grads))
        if loss.classify:
            metrics["acc"] = mean(loss.accuracy(out, batch.y), batch)
        metrics |= {name: mean(fn(out, batch.y), batch) for name, fn in loss.parts}
        return TrainState(params, opt_state, model_state, state.step + 1), metrics

    return train_step


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
    """Pad a split to whole batches; the mask marks real examples so every one counts once.
    Host (NumPy) arrays are padded on the host and put on the device once, which is faster at
    start-up than a device operation per array."""
    n = jax.tree_util.tree_leaves(data.x)[0].shape[0]
    padded = -(-n // batch_size) * batch_size
    host = all(isinstance(a, np.ndarray) for a in jax.tree_util.tree_leaves(data))
    xp = np if host else jnp

    def pad_and_batch(a):
        a = xp.pad(a, [(0, padded - n)] + [(0, 0)] * (a.ndim - 1))
        return a.reshape(padded // batch_size, batch_size, *a.shape[1:])

    out = jax.tree_util.tree_map(pad_and_batch, data), pad_and_batch(xp.ones(n, xp.float32))
    return jax.device_put(out) if host else out


def make_eval_fn(model, metrics: dict[str, Metric]):
    """`eval_fn(params, model_state, batches, mask) -> {name: value}`: each metric's mean over
    the real examples (or tokens) of a padded split (`pad_for_eval`), then its `finish`."""

    def eval_fn(params, model_state, batches: Arrays, mask: jax.Array) -> Metrics:
        def body(totals, batch):
            x, y, m = batch
            if getattr(model, "prepare", None) is not None:
                x, y = model.prepare(x, y, None, False)
            out, _ = model.apply(params, model_state, x, train=False)
            sums = {name: (jnp.sum(metric.per_example(out, y) * m), jnp.sum(metric.count(y) * m if metric.count else m))
                    for name, metric in metrics.items()}
            return jax.tree_util.tree_map(jnp.add, totals, sums), None

        zeros = {name: (jnp.zeros(()), jnp.zeros(())) for name in metrics}
        totals, _ = jax.lax.scan(body, zeros, (batches.x, batches.y, mask))
        means = {k: total / count for k, (total, count) in totals.items()}
        return {k: metrics[k].finish(v) if metrics[k].finish else v for k, v in means.items()}

    return eval_fn
