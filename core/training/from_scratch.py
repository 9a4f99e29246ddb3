"""The optimizers of D2L 11.6-11.10, written from the book's equations as Optax transformations.

Each gives the direction of a step before the learning rate, as `optax.scale_by_*` does:
`optax.chain(adam(), optax.scale(-lr))` is the book's Adam. With a config's
`optimizer.impl: scratch` the trainer uses these instead of Optax's own; `tests/test_from_scratch.py`
checks them step by step against Optax's. g is the gradient, t the step (from 1):

- momentum (11.6):  v <- beta v + g;                                   step v
- AdaGrad (11.7):   s <- s + g^2;                                      step g / sqrt(s + eps)
- RMSProp (11.8):   s <- gamma s + (1 - gamma) g^2;                    step g / sqrt(s + eps)
- Adadelta (11.9):  s <- rho s + (1 - rho) g^2;  g' = sqrt(dx + eps) / sqrt(s + eps) g;
                    dx <- rho dx + (1 - rho) g'^2;                     step g' (no learning rate: 1)
- Adam (11.10):     v <- b1 v + (1 - b1) g;  s <- b2 s + (1 - b2) g^2;
                    step (v / (1 - b1^t)) / (sqrt(s / (1 - b2^t)) + eps)
- Yogi (11.10):     as Adam, with s <- s + (1 - b2) sign(g^2 - s) g^2
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

tree_map = jax.tree_util.tree_map


def _zeros(params):
    return tree_map(jnp.zeros_like, params)


class SumState(NamedTuple):
    s: Any  # one running sum (or average) per parameter


class DeltaState(NamedTuple):
    s: Any  # leaky average of squared gradients
    dx: Any  # leaky average of squared steps


class MomentState(NamedTuple):
    count: jax.Array
    v: Any  # first moment
    s: Any  # second moment


def momentum(beta) -> optax.GradientTransformation:
    """Heavy-ball momentum, the velocity starting at zero."""

    def update(g, state, params=None):
        v = tree_map(lambda v, g: beta * v + g, state.s, g)
        return v, SumState(v)

    return optax.GradientTransformation(lambda params: SumState(_zeros(params)), update)


def adagrad(eps: float = 1e-6) -> optax.GradientTransformation:
    def update(g, state, params=None):
        s = tree_map(lambda s, g: s + g * g, state.s, g)
        return tree_map(lambda g, s: g / jnp.sqrt(s + eps), g, s), SumState(s)

    return optax.GradientTransformation(lambda params: SumState(_zeros(params)), update)


def rmsprop(gamma: float = 0.9, eps: float = 1e-6) -> optax.GradientTransformation:
    def update(g, state, params=None):
        s = tree_map(lambda s, g: gamma * s + (1 - gamma) * g * g, state.s, g)
        return tree_map(lambda g, s: g / jnp.sqrt(s + eps), g, s), SumState(s)

    return optax.GradientTransformation(lambda params: SumState(_zeros(params)), update)


def adadelta(rho: float = 0.9, eps: float = 1e-5) -> optax.GradientTransformation:
    def update(g, state, params=None):
        s = tree_map(lambda s, g: rho * s + (1 - rho) * g * g, state.s, g)
        step = tree_map(lambda g, s, dx: jnp.sqrt(dx + eps) / jnp.sqrt(s + eps) * g, g, s, state.dx)
        dx = tree_map(lambda dx, d: rho * dx + (1 - rho) * d * d, state.dx, step)
        return step, DeltaState(s, dx)

    return optax.GradientTransformation(lambda params: DeltaState(_zeros(params), _zeros(params)), update)


def _moments(second_moment, b1: float, b2: float, eps: float) -> optax.GradientTransformation:
    """Adam's bias-corrected step, with `second_moment(s, g)` updating s."""

    def init(params):
        return MomentState(jnp.zeros((), jnp.int32), _zeros(params), _zeros(params))

    def update(g, state, params=None):
        t = state.count + 1
        v = tree_map(lambda v, g: b1 * v + (1 - b1) * g, state.v, g)
        s = tree_map(second_moment, state.s, g)
        c1, c2 = 1 - b1 ** t.astype(jnp.float32), 1 - b2 ** t.astype(jnp.float32)
        step = tree_map(lambda v, s: (v / c1) / (jnp.sqrt(s / c2) + eps), v, s)
        return step, MomentState(t, v, s)

    return optax.GradientTransformation(init, update)


def adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-6) -> optax.GradientTransformation:
    return _moments(lambda s, g: b2 * s + (1 - b2) * g * g, b1, b2, eps)


def yogi(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-3) -> optax.GradientTransformation:
    return _moments(lambda s, g: s + (1 - b2) * jnp.sign(g * g - s) * g * g, b1, b2, eps)
