"""The training state and the data it trains on, as pytrees.

`TrainState` holds params, optimizer state, model state (batch-norm statistics, dropout rates:
kept out of the optimizer's reach) and the step count. `Arrays` is one split of a data set on
the device: inputs, targets (any pytree the loss takes) and optional per-example weights of
the training loss (weighted risk minimisation, D2L 4.9.5).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class TrainState(NamedTuple):
    params: Any
    opt_state: Any
    model_state: Any
    step: jax.Array  # int32 scalar: optimizer updates taken so far


class Arrays(NamedTuple):
    x: jax.Array
    y: Any
    w: jax.Array | None = None  # per-example loss weights; None: all 1
    m: jax.Array | None = None  # in a gathered batch: False at the padding of a partial batch


def take(data: Arrays, idx: jax.Array) -> Arrays:
    """The examples at `idx`, gathered on the device. A negative index pads a partial batch
    (`core.data.sampling`): it gathers some example, and `m` marks it False."""
    return jax.tree_util.tree_map(lambda a: a[idx], data._replace(m=None))._replace(m=idx >= 0)


def init_state(model, optimizer: optax.GradientTransformation, key: jax.Array) -> TrainState:
    params, model_state = model.init(key)
    return TrainState(params, optimizer.init(params), model_state, jnp.zeros((), jnp.int32))
