"""Optax optimizers and learning-rate schedules by name, from an optimizer config.

`OPTIMIZERS[cfg.name]` gives the optimizer's own transforms (what it does to a gradient before
the learning rate); `SCHEDULES[cfg.schedule.name]` a factor of the step count. `build_optimizer`
chains them with clipping and weight decay. Adding one is an entry here and its name in
`core.config.schema`; `tests/test_registries.py` trains a model with every one.
"""

from __future__ import annotations

import fnmatch
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from ..config import OptimizerConfig, ScheduleConfig
from ..nn.params import path_name, weight_mask
from . import from_scratch

Transforms = list[optax.GradientTransformation]


# epsilon when the config gives none: the book's (D2L 11.7-11.10), and Optax's Adam default
EPS = {"adagrad": 1e-6, "rmsprop": 1e-6, "adadelta": 1e-5, "adam": 1e-8, "yogi": 1e-3}


def _eps(cfg: OptimizerConfig) -> float:
    return cfg.eps if cfg.eps is not None else EPS[cfg.name]


def _sgd(cfg: OptimizerConfig, momentum) -> Transforms:
    """Plain SGD, or with (Nesterov) momentum when `momentum` > 0 (D2L 11.6)."""
    if cfg.momentum == 0:
        return []
    if cfg.impl == "scratch":
        return [from_scratch.momentum(momentum)]
    return [optax.trace(decay=momentum, nesterov=cfg.nesterov)]


def _adam(cfg: OptimizerConfig, momentum) -> Transforms:
    """Adam, bias-corrected moments with decays b1, b2 (D2L 11.10)."""
    if cfg.impl == "scratch":
        return [from_scratch.adam(cfg.b1, cfg.b2, _eps(cfg))]
    return [optax.scale_by_adam(cfg.b1, cfg.b2, _eps(cfg))]


def _yogi(cfg: OptimizerConfig, momentum) -> Transforms:
    """Yogi: Adam with an additive second-moment update (D2L 11.10); the moments start at zero,
    as in the book (Optax's own default starts them at 1e-6)."""
    if cfg.impl == "scratch":
        return [from_scratch.yogi(cfg.b1, cfg.b2, _eps(cfg))]
    return [optax.scale_by_yogi(cfg.b1, cfg.b2, _eps(cfg), initial_accumulator_value=0.0)]


def _adagrad(cfg: OptimizerConfig, momentum) -> Transforms:
    """AdaGrad: steps scaled by the root of the summed squared gradients (D2L 11.7)."""
    if cfg.impl == "scratch":
        return [from_scratch.adagrad(_eps(cfg))]
    return [optax.scale_by_rss(initial_accumulator_value=0.0, eps=_eps(cfg))]


def _rmsprop(cfg: OptimizerConfig, momentum) -> Transforms:
    """RMSProp: steps scaled by a leaky average (decay gamma) of squared gradients (D2L 11.8)."""
    if cfg.impl == "scratch":
        return [from_scratch.rmsprop(cfg.decay, _eps(cfg))]
    return [optax.scale_by_rms(decay=cfg.decay, eps=_eps(cfg))]


def _adadelta(cfg: OptimizerConfig, momentum) -> Transforms:
    """Adadelta: no learning rate of its own (D2L 11.9); leave `lr` at 1 for the book's."""
    if cfg.impl == "scratch":
        return [from_scratch.adadelta(cfg.decay, _eps(cfg))]
    return [optax.scale_by_adadelta(rho=cfg.decay, eps=_eps(cfg))]


# name -> the optimizer's transforms, given its config and the momentum (an injected hyperparameter)
OPTIMIZERS: dict[str, Callable[[OptimizerConfig, object], Transforms]] = {
    "sgd": _sgd,
    "adam": _adam,
    "adagrad": _adagrad,
    "rmsprop": _rmsprop,
    "adadelta": _adadelta,
    "yogi": _yogi,
}


def _constant(cfg: ScheduleConfig, unit: int, epochs: int) -> optax.Schedule:
    return optax.constant_schedule(1.0)


def _step(cfg: ScheduleConfig, unit: int, epochs: int) -> optax.Schedule:
    return optax.exponential_decay(1.0, transition_steps=cfg.step_epochs * unit, decay_rate=cfg.gamma, staircase=True)


def _factor(cfg: ScheduleConfig, unit: int, epochs: int) -> optax.Schedule:
    return optax.exponential_decay(1.0, transition_steps=unit, decay_rate=cfg.gamma, end_value=cfg.min_fraction)


def _multi_factor(cfg: ScheduleConfig, unit: int, epochs: int) -> optax.Schedule:
    boundaries = jnp.asarray([round(m * unit) for m in cfg.milestones], jnp.int32)
    return lambda t: cfg.gamma ** jnp.sum(t >= boundaries)


def _sqrt(cfg: ScheduleConfig, unit: int, epochs: int) -> optax.Schedule:
    return lambda t: (t / unit + 1.0) ** -0.5


def _cosine(cfg: ScheduleConfig, unit: int, epochs: int) -> optax.Schedule:
    length = max(round((cfg.length or epochs) * unit), 1)
    if cfg.warmup == 0:
        return optax.cosine_decay_schedule(1.0, decay_steps=length, alpha=cfg.final_fraction)
    return optax.warmup_cosine_decay_schedule(0.0, 1.0, warmup_steps=round(cfg.warmup * unit), decay_steps=length,
                                              end_value=cfg.final_fraction)


# name -> the factor at t, given the steps t counts per epoch and the run's epochs; 1 at the start
# (but for a warm-up); the learning rate multiplies it
SCHEDULES: dict[str, Callable[[ScheduleConfig, int, int], optax.Schedule]] = {
    "constant": _constant,
    "step": _step,
    "factor": _factor,
    "multi_factor": _multi_factor,
    "sqrt": _sqrt,
    "cosine": _cosine,
}


def schedule_factor(cfg: ScheduleConfig, steps_per_epoch: int, epochs: int) -> optax.Schedule:
    """The factor at each optimizer update `count`: t is the update count (`per: step`), or the
    number of finished epochs (`per: epoch`)."""
    if cfg.per == "step":
        return SCHEDULES[cfg.name](cfg, steps_per_epoch, epochs)
    factor = SCHEDULES[cfg.name](cfg, 1, epochs)
    return lambda count: factor(count // steps_per_epoch)


def build_schedule(cfg: ScheduleConfig, lr: float, steps_per_epoch: int, epochs: int) -> optax.Schedule:
    """The learning rate at each optimizer update: lr times the schedule's factor."""
    factor = schedule_factor(cfg, steps_per_epoch, epochs)
    return lambda count: lr * factor(count)


def learning_rates(cfg, steps_per_epoch: int):
    """The learning rate of every optimizer update of the run `cfg` (a Config) describes."""
    import jax

    opt = cfg.optimizer
    schedule = build_schedule(opt.schedule, opt.lr, steps_per_epoch, cfg.trainer.epochs)
    return jax.device_get(jax.vmap(schedule)(jnp.arange(steps_per_epoch * cfg.trainer.epochs)))


# Hyperparameters (lr, momentum, weight decay, clipping norm) are kept in the optimizer state
# (optax.inject_hyperparams): their values are arrays, not constants of the compiled program, so
# trials that differ only in them can be trained together under jax.vmap
# (core.training.vectorised). Whether each transform is present at all is decided by the
# config (momentum > 0, weight_decay > 0, clip_norm set).


def build_optimizer(cfg: OptimizerConfig, steps_per_epoch: int, epochs: int) -> optax.GradientTransformation:
    """clip by global norm -> L2 weight decay on weights -> the optimizer -> schedule x lr.

    Weight decay is added to the gradient before the optimizer, as PyTorch's SGD(weight_decay=...)
    does; with plain SGD this equals the L2 penalty lambda/2 ||w||^2 added to the loss. The
    schedule is a factor (1 at the start) times the learning rate, so that the learning rate
    itself can be a hyperparameter in the state. With `groups`, the clipped gradient is split by
    parameter path (`optax.multi_transform`): each group has its own copy of the rest of the
    chain at lr x lr_scale, a frozen group none (its updates are zero, and it keeps no state).
    """
    factor = schedule_factor(cfg.schedule, steps_per_epoch, epochs)
    direction = OPTIMIZERS[cfg.name]

    def chain(lr, momentum, weight_decay, clip_norm):  # OptimizerConfig.IN_STATE, as arrays
        def rest(lr_scale: float) -> list[optax.GradientTransformation]:
            parts = []
            if cfg.weight_decay > 0:
                parts.append(optax.add_decayed_weights(weight_decay, mask=weight_mask))
            parts += direction(cfg, momentum)
            if cfg.schedule.name != "constant":
                parts.append(optax.scale_by_schedule(factor))
            parts.append(optax.scale(-lr * lr_scale if lr_scale != 1.0 else -lr))
            return parts

        parts = [optax.clip_by_global_norm(clip_norm)] if cfg.clip_norm is not None else []
        if not cfg.groups:
            return optax.chain(*parts, *rest(1.0))
        transforms = {"rest": optax.chain(*rest(1.0))}
        for i, group in enumerate(cfg.groups):
            transforms[f"group{i}"] = optax.set_to_zero() if group.freeze else optax.chain(*rest(group.lr_scale))
        return optax.chain(*parts, optax.multi_transform(transforms, lambda params: group_labels(cfg.groups, params)))

    values = {name: getattr(cfg, name) for name in OptimizerConfig.IN_STATE}
    return optax.inject_hyperparams(chain)(**{name: 0.0 if v is None else v for name, v in values.items()})


def group_labels(groups, params: Any) -> Any:
    """Each parameter's group: `group<i>` for the first group whose pattern matches its path, else `rest`."""

    def label(path, _):
        name = path_name(path)
        return next((f"group{i}" for i, g in enumerate(groups) if fnmatch.fnmatchcase(name, g.params)), "rest")

    return jax.tree_util.tree_map_with_path(label, params)


def unmatched_groups(groups, params: Any) -> list[str]:
    """The patterns of `groups` that no parameter path matches (a mistyped pattern)."""
    names = [path_name(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)]
    return [g.params for g in groups if not any(fnmatch.fnmatchcase(n, g.params) for n in names)]
