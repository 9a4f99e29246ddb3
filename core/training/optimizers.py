"""Optax optimizers and learning-rate schedules by name, from an optimizer config.

`OPTIMIZERS[cfg.name]` gives the optimizer's own transforms (what it does to a gradient before
the learning rate); `SCHEDULES[cfg.schedule.name]` a factor of the step count. `build_optimizer`
chains them with clipping and weight decay. Adding one is an entry here and its name in
`core.config.schema`; `tests/test_registries.py` trains a model with every one.
"""

from __future__ import annotations

from typing import Callable

import optax

from ..config import OptimizerConfig, ScheduleConfig
from ..nn.params import weight_mask

Transforms = list[optax.GradientTransformation]


def _sgd(cfg: OptimizerConfig, momentum) -> Transforms:
    """Plain SGD, or with (Nesterov) momentum when `momentum` > 0 (D2L 11.6)."""
    return [optax.trace(decay=momentum, nesterov=cfg.nesterov)] if cfg.momentum > 0 else []


def _adam(cfg: OptimizerConfig, momentum) -> Transforms:
    """Adam with b1 0.9, b2 0.999, eps 1e-8 (D2L 11.10)."""
    return [optax.scale_by_adam()]


def _adagrad(cfg: OptimizerConfig, momentum) -> Transforms:
    """AdaGrad: steps scaled by the root of the summed squared gradients (D2L 11.7)."""
    return [optax.scale_by_rss(initial_accumulator_value=0.0, eps=1e-6)]


def _rmsprop(cfg: OptimizerConfig, momentum) -> Transforms:
    """RMSProp: steps scaled by a leaky average of squared gradients, decay 0.9 (D2L 11.8)."""
    return [optax.scale_by_rms(decay=0.9, eps=1e-6)]


# name -> the optimizer's transforms, given its config and the momentum (an injected hyperparameter)
OPTIMIZERS: dict[str, Callable[[OptimizerConfig, object], Transforms]] = {
    "sgd": _sgd,
    "adam": _adam,
    "adagrad": _adagrad,
    "rmsprop": _rmsprop,
}


def _constant(cfg: ScheduleConfig, steps_per_epoch: int, total_steps: int) -> optax.Schedule:
    return optax.constant_schedule(1.0)


def _step(cfg: ScheduleConfig, steps_per_epoch: int, total_steps: int) -> optax.Schedule:
    """gamma^(epoch // step_epochs)."""
    return optax.exponential_decay(1.0, transition_steps=cfg.step_epochs * steps_per_epoch, decay_rate=cfg.gamma,
                                   staircase=True)


def _cosine(cfg: ScheduleConfig, steps_per_epoch: int, total_steps: int) -> optax.Schedule:
    """From 1 down to final_fraction over the run (D2L 11.11)."""
    return optax.cosine_decay_schedule(1.0, decay_steps=max(total_steps, 1), alpha=cfg.final_fraction)


# name -> a factor of the step count, 1 at the start (the learning rate multiplies it)
SCHEDULES: dict[str, Callable[[ScheduleConfig, int, int], optax.Schedule]] = {
    "constant": _constant,
    "step": _step,
    "cosine": _cosine,
}


def build_schedule(cfg: ScheduleConfig, lr: float, steps_per_epoch: int, total_steps: int) -> optax.Schedule:
    """The learning rate at each step: lr times the schedule's factor."""
    factor = SCHEDULES[cfg.name](cfg, steps_per_epoch, total_steps)
    return lambda count: lr * factor(count)


# Hyperparameters kept in the optimizer state (optax.inject_hyperparams): their values are
# arrays, not constants of the compiled program, so trials that differ only in them can be
# trained together under jax.vmap (core.training.vectorised). Whether each transform is
# present at all is decided by the config (momentum > 0, weight_decay > 0, clip_norm set).
HYPERPARAMS = {"lr": "learning_rate", "momentum": "momentum", "weight_decay": "weight_decay", "clip_norm": "clip_norm"}


def build_optimizer(cfg: OptimizerConfig, steps_per_epoch: int, epochs: int) -> optax.GradientTransformation:
    """clip by global norm -> L2 weight decay on weights -> the optimizer -> schedule x lr.

    Weight decay is added to the gradient before the optimizer, as PyTorch's SGD(weight_decay=...)
    does; with plain SGD this equals the L2 penalty lambda/2 ||w||^2 added to the loss. The
    schedule is a factor (1 at the start) times the learning rate, so that the learning rate
    itself can be a hyperparameter in the state.
    """
    factor = SCHEDULES[cfg.schedule.name](cfg.schedule, steps_per_epoch, steps_per_epoch * epochs)
    direction = OPTIMIZERS[cfg.name]

    def chain(learning_rate, momentum, weight_decay, clip_norm):
        parts = []
        if cfg.clip_norm is not None:
            parts.append(optax.clip_by_global_norm(clip_norm))
        if cfg.weight_decay > 0:
            parts.append(optax.add_decayed_weights(weight_decay, mask=weight_mask))
        parts += direction(cfg, momentum)
        if cfg.schedule.name != "constant":
            parts.append(optax.scale_by_schedule(factor))
        parts.append(optax.scale(-learning_rate))
        return optax.chain(*parts)

    return optax.inject_hyperparams(chain)(
        learning_rate=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, clip_norm=cfg.clip_norm or 0.0
    )
