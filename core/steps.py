"""The pure, jit-able pieces of training: one step, one epoch, evaluation.

State is explicit: `TrainState` holds params, optimizer state, model state (batch-norm statistics,
kept out of the optimizer's reach) and the step count. The data set lives on the device; an
epoch is a (num_batches, batch_size) array of example indices, and each step gathers its batch
from the device-resident arrays, so no batch crosses the host boundary.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from .losses import accuracy
from .models import Model


class TrainState(NamedTuple):
    params: Any
    opt_state: Any
    model_state: Any
    step: jax.Array  # int32 scalar: optimizer updates taken so far


class Arrays(NamedTuple):
    """One split of a data set, on the device. `y` may be a pytree (e.g. labels and per-example
    weights for weighted risk minimisation), as long as the loss takes it."""

    x: jax.Array
    y: Any


def take(data: Arrays, idx: jax.Array) -> Arrays:
    """The examples at `idx`, gathered on the device."""
    return jax.tree_util.tree_map(lambda a: a[idx], data)


def l2_of_weights(params) -> jax.Array:
    """sum of w^2 over the weight matrices (leaves named `w`), biases excluded (D2L 4.5.2)."""
    leaves = jax.tree_util.tree_leaves_with_path(params)
    return sum((jnp.sum(v**2) for path, v in leaves if getattr(path[-1], "key", None) == "w"), jnp.zeros(()))


Metrics = dict[str, jax.Array]


def init_state(model: Model, optimizer: optax.GradientTransformation, key: jax.Array) -> TrainState:
    params, model_state = model.init(key)
    return TrainState(params, optimizer.init(params), model_state, jnp.zeros((), jnp.int32))


def make_train_step(
    model: Model, loss_fn: Callable, optimizer: optax.GradientTransformation, classify: bool, l2_penalty: float = 0.0
) -> Callable[[TrainState, jax.Array, jax.Array, jax.Array], tuple[TrainState, Metrics]]:
    """`train_step(state, x, y, key) -> (state, {"loss", ["acc"]})` on one batch.

    The reported loss is the data loss; an `l2_penalty` lambda adds lambda/2 ||w||^2 to the
    objective only (D2L 4.5.2: `loss + lambd * l2_penalty(w)`).
    """

    def objective(params, model_state, x, y, key):
        out, model_state = model.apply(params, model_state, x, train=True, key=key)
        penalty = 0.5 * l2_penalty * l2_of_weights(params) if l2_penalty else 0.0
        return jnp.mean(loss_fn(out, y)) + penalty, (out, model_state)

    def train_step(state: TrainState, x, y, key):
        grads, (out, model_state) = jax.grad(objective, has_aux=True)(
            state.params, state.model_state, x, y, key
        )
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": jnp.mean(loss_fn(out, y))}
        metrics["finite"] = jnp.isfinite(metrics["loss"]) & jnp.isfinite(optax.tree.norm(grads))
        if classify:
            metrics["acc"] = jnp.mean(accuracy(out, y))
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
        batch = take(data, order[i])
        return train_step(state, batch.x, batch.y, jax.random.fold_in(key, state.step))

    return batch_fn


def make_epoch_fn(train_step):
    """Whole-epoch path: one `lax.scan` over the epoch's batches; per-batch metrics stacked."""

    def epoch_fn(state: TrainState, data: Arrays, order: jax.Array, key: jax.Array):
        def body(state, idx):
            batch = take(data, idx)
            return train_step(state, batch.x, batch.y, jax.random.fold_in(key, state.step))

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


def make_eval_fn(model: Model, loss_fn: Callable, classify: bool):
    """`eval_fn(params, model_state, batches, mask) -> {"loss", ["acc"]}`, means over real examples."""

    def eval_fn(params, model_state, batches: Arrays, mask: jax.Array) -> Metrics:
        def body(totals, batch):
            x, y, m = batch
            out, _ = model.apply(params, model_state, x, train=False)
            sums = {"loss": jnp.sum(loss_fn(out, y) * m)}
            if classify:
                sums["acc"] = jnp.sum(accuracy(out, y) * m)
            return jax.tree_util.tree_map(jnp.add, totals, sums), None

        zeros = {"loss": jnp.zeros(())} | ({"acc": jnp.zeros(())} if classify else {})
        totals, _ = jax.lax.scan(body, zeros, (batches.x, batches.y, mask))
        return {k: v / jnp.sum(mask) for k, v in totals.items()}

    return eval_fn
