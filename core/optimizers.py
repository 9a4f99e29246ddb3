"""Optax optimizers and learning-rate schedules from an optimizer config."""

from __future__ import annotations

from typing import Callable

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


OPTIMIZERS: dict[str, Callable[[OptimizerConfig, optax.Schedule], optax.GradientTransformation]] = {
    "sgd": lambda cfg, lr: optax.sgd(lr, momentum=cfg.momentum or None, nesterov=cfg.nesterov),
    "adam": lambda cfg, lr: optax.adam(lr),
}


def build_optimizer(cfg: OptimizerConfig, steps_per_epoch: int, epochs: int) -> optax.GradientTransformation:
    """clip by global norm -> L2 weight decay on weights -> the optimizer, as one Optax chain.

    Weight decay is added to the gradient before the optimizer, as PyTorch's SGD(weight_decay=...)
    does; with plain SGD this equals the L2 penalty lambda/2 ||w||^2 added to the loss.
    """
    schedule = build_schedule(cfg.schedule, cfg.lr, steps_per_epoch, steps_per_epoch * epochs)
    parts = []
    if cfg.clip_norm is not None:
        parts.append(optax.clip_by_global_norm(cfg.clip_norm))
    if cfg.weight_decay > 0:
        parts.append(optax.add_decayed_weights(cfg.weight_decay, mask=weights_only))
    parts.append(OPTIMIZERS[cfg.name](cfg, schedule))
    return optax.chain(*parts)
