"""Training several models against each other in one step, each with its own optimizer (D2L 17.1:
the discriminator's update, then the generator's against the updated discriminator).

A model with parts (`core.nn.models.Model.updates`, `core.nn.objective`) says, in order, which subtree of its params
each update trains and with which loss; the one training loop runs the step this module makes
exactly as it runs a supervised one: `train_step(state, batch, key) -> (state, metrics)`, the
state a `TrainState` whose params, optimizer state and model state are dicts by part, so
checkpoints, resume after SIGKILL, sweeps and tracking need nothing new.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from ..nn.objective import Update
from .state import TrainState


class PartsOptimizer(NamedTuple):
    """One Optax optimizer per part; its `init` gives the state the step expects: a dict by part."""

    optimizers: dict[str, optax.GradientTransformation]

    def init(self, params: dict[str, Any]) -> dict[str, Any]:
        return {part: opt.init(params[part]) for part, opt in self.optimizers.items()}


def make_parts_step(updates: Sequence[Update], optimizer: PartsOptimizer) -> Callable:
    """`train_step(state, batch, key) -> (state, metrics)`: each update in turn takes the
    gradient of its loss with respect to its part alone, at the params as the updates before it
    left them, and applies its part's optimizer. Every update gets the step's key, so that what
    they draw (a GAN's noise) is the same draw. `finite` is False when any loss or gradient is
    not finite (the loop's divergence check)."""

    def train_step(state: TrainState, batch, key: jax.Array):
        params, opt_state, model_state = dict(state.params), dict(state.opt_state), state.model_state
        metrics: dict[str, jax.Array] = {}
        finite = jnp.bool_(True)
        for update in updates:
            def loss_of(part_params, update=update, params=params, model_state=model_state):
                return update.loss({**params, update.part: part_params}, model_state, batch, key)

            (value, (model_state, reported)), grads = jax.value_and_grad(loss_of, has_aux=True)(params[update.part])
            step, opt_state[update.part] = optimizer.optimizers[update.part].update(
                grads, opt_state[update.part], params[update.part])
            params[update.part] = optax.apply_updates(params[update.part], step)
            metrics |= reported
            finite &= jnp.isfinite(value) & jnp.isfinite(optax.tree.norm(grads))
        metrics["finite"] = finite
        return TrainState(params, opt_state, model_state, state.step + 1), metrics

    return train_step
