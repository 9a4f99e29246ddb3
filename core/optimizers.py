"""Optax optimizers and learning-rate schedules from an optimizer config."""

from __future__ import annotations

import jax
import optax

from .config import OptimizerConfig, ScheduleConfig


def build_schedule(cfg: ScheduleConfig, lr: float, steps_per_epoch: int, total_steps: int) -> optax.Schedule:
    """constant; step: lr * gamma^(epoch // step_epochs); cosine: from lr down to lr * final_fraction."""
    if cfg.name == "constant":
        return optax.constant_schedule(lr)
    if cfg.name == "step":
        return optax.exponential_decay(
            lr, transition_steps=cfg.step_epochs * steps_per_epoch, decay_rate=cfg.gamma, staircase=True
        )
    if cfg.name == "cosine":
        return optax.cosine_decay_schedule(lr, decay_steps=max(total_steps, 1), alpha=cfg.final_fraction)
    raise ValueError(f"unknown schedule {cfg.name!r}; expected one of {sorted(SCHEDULES)}")


SCHEDULES = ("constant", "step", "cosine")


def weights_only(params) -> object:
    """Mask for weight decay: True for weight matrices (`w`), False for biases (D2L 4.5)."""
    return jax.tree_util.tree_map_with_path(lambda path, _: _leaf_name(path) == "w", params)


def _leaf_name(path) -> str:
    last = path[-1]
    return str(getattr(last, "key", getattr(last, "name", last)))


def _direction(cfg: OptimizerConfig, momentum) -> list[optax.GradientTransformation]:
    """The optimizer's own transform, before the learning rate is applied."""
    if cfg.name == "adam":
        return [optax.scale_by_adam()]
    return [optax.trace(decay=momentum, nesterov=cfg.nesterov)] if cfg.momentum > 0 else []


OPTIMIZERS = ("sgd", "adam")

# Hyperparameters kept in the optimizer state (optax.inject_hyperparams): their values are
# arrays, not constants of the compiled program, so trials that differ only in them can be
# trained together under jax.vmap (core.vtrain). Whether each transform is present at all is
# decided by the config (momentum > 0, weight_decay > 0, clip_norm set) and is structure.
HYPERPARAMS = {"lr": "learning_rate", "momentum": "momentum", "weight_decay": "weight_decay", "clip_norm": "clip_norm"}


def build_optimizer(cfg: OptimizerConfig, steps_per_epoch: int, epochs: int) -> optax.GradientTransformation:
    """clip by global norm -> L2 weight decay on weights -> SGD (momentum) or Adam -> schedule x lr.

    Weight decay is added to the gradient before the optimizer, as PyTorch's SGD(weight_decay=...)
    does; with plain SGD this equals the L2 penalty lambda/2 ||w||^2 added to the loss. The
    schedule is a factor (1 at the start) times the learning rate, so that the learning rate
    itself can be a hyperparameter in the state.
    """
    factor = build_schedule(cfg.schedule, 1.0, steps_per_epoch, steps_per_epoch * epochs)

    def chain(learning_rate, momentum, weight_decay, clip_norm):
        parts = []
        if cfg.clip_norm is not None:
            parts.append(optax.clip_by_global_norm(clip_norm))
        if cfg.weight_decay > 0:
            parts.append(optax.add_decayed_weights(weight_decay, mask=weights_only))
        parts += _direction(cfg, momentum)
        if cfg.schedule.name != "constant":
            parts.append(optax.scale_by_schedule(factor))
        parts.append(optax.scale(-learning_rate))
        return optax.chain(*parts)

    return optax.inject_hyperparams(chain)(
        learning_rate=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, clip_norm=cfg.clip_norm or 0.0
    )
