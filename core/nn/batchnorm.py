"""Batch normalization in training mode with its gradient written out (D2L 8.5.2), for speed.

Autodiff of the written-out formula (`layers.batch_norm`) gives a correct gradient that XLA
runs as about a dozen passes over the activations (means of the cotangent, of its products
with x, of x - mean, each its own reduction, plus the elementwise terms). Written out, the
backward pass is two reductions (sum of g, sum of g * (x - mean)) and one elementwise pass:

    dx = gamma / sigma * (g - mean(g) - x_hat * mean(g * x_hat))
    dgamma = sum(g * x_hat),  dbeta = sum(g)

with x_hat = (x - mean) / sigma, sigma = sqrt(var + eps) and the batch's biased variance. The
batch mean and variance are outputs too (they move the running statistics); their cotangents,
zero in training, are carried through exactly: d mean / dx = 1/n, d var / dx = 2 (x - mean) / n.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax


def _axes(x: jax.Array) -> tuple[int, ...]:
    """Every axis but the last (the channels)."""
    return tuple(range(x.ndim - 1))


def _statistics(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The batch's mean and biased variance per channel."""
    mean = jnp.mean(x, axis=_axes(x))
    return mean, jnp.mean(jnp.square(x - mean), axis=_axes(x))


@partial(jax.custom_vjp, nondiff_argnums=(3,))
def batch_norm_train(x: jax.Array, gamma: jax.Array, beta: jax.Array, eps: float) -> tuple[jax.Array, jax.Array, jax.Array]:
    """x (..., C) normalised per channel by the batch's statistics -> (y, batch mean, batch var)."""
    return _fwd(x, gamma, beta, eps)[0]


def _fwd(x, gamma, beta, eps):
    mean, var = _statistics(x)
    inv = lax.rsqrt(var + eps)
    return ((x - mean) * (gamma * inv) + beta, mean, var), (x, gamma, mean, inv)


def _bwd(eps, residuals, cotangents):
    x, gamma, mean, inv = residuals
    g, g_mean, g_var = cotangents
    axes, n = _axes(x), x.size // x.shape[-1]
    centred = x - mean
    sum_g, sum_gc = jnp.sum(g, axis=axes), jnp.sum(g * centred, axis=axes)
    dx = (gamma * inv) * (g - sum_g / n) + centred * (2.0 * g_var / n - gamma * inv**3 * sum_gc / n) + g_mean / n
    return dx, sum_gc * inv, sum_g


batch_norm_train.defvjp(_fwd, _bwd)
