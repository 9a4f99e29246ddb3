"""Functional layers: each is a pair of pure functions, in the manner of `jax.example_libraries.stax`,
extended with state that is not trained (as Haiku's `transform_with_state` does).

    init(key, in_shape) -> (out_shape, params, state)      shapes without the batch axis
    apply(params, state, x, *, train, key) -> (y, state)   x of shape (batch, *in_shape)

`state` holds what the optimizer must not touch: batch-norm running statistics, and dropout
rates (values rather than constants of the compiled program, so that sweeps can vectorise over
them). Training and evaluation differ by `train`. A layer without params or state returns `{}`
for them. `kind` names the layer in parameter paths: the combinators (`core.nn.combinators`)
number layers per kind, so paths read `conv0/w`, `bn1/mean`.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from . import conv as C
from .init import Initializer, normal_init, ones_init, xavier_init, zeros_init

Shape = tuple[int, ...]
Params = Any
State = Any


class Layer(NamedTuple):
    kind: str
    init: Callable[[jax.Array, Shape], tuple[Shape, Params, State]]
    apply: Callable[..., tuple[jax.Array, State]]


def stateless(kind: str, init: Callable[[jax.Array, Shape], tuple[Shape, Params]], fn: Callable[..., jax.Array]) -> Layer:
    """A layer from `init(key, in_shape) -> (out_shape, params)` and `fn(params, x) -> y`."""

    def init_(key, in_shape):
        out_shape, params = init(key, in_shape)
        return out_shape, params, {}

    def apply(params, state, x, *, train=False, key=None):
        return fn(params, x), state

    return Layer(kind, init_, apply)


def dense(
    features: int, w_init: Initializer = normal_init(), b_init: Initializer = zeros_init(), use_bias: bool = True
) -> Layer:
    """y = x W + b; x: (batch, n_in) -> (batch, features). Without bias, params hold `w` only."""

    def init(key, in_shape):
        (n_in,) = in_shape
        params = {"w": w_init(key, (n_in, features), jnp.float32)}
        if use_bias:
            params["b"] = b_init(key, (features,), jnp.float32)
        return (features,), params

    def apply(params, x):
        y = x @ params["w"]
        return y + params["b"] if use_bias else y

    return stateless("dense", init, apply)


def conv2d(
    features: int,
    kernel: int,
    padding: int = 0,
    stride: int = 1,
    w_init: Initializer = xavier_init(),
    b_init: Initializer = zeros_init(),
    impl: C.ConvImpl | None = None,
) -> Layer:
    """Square-kernel convolution, NHWC: (batch, H, W, C_in) -> (batch, H', W', features),
    H' = (H + 2 padding - kernel) // stride + 1 (D2L 6.3). `impl` picks the formulation
    (`core.nn.conv`); None: the fastest measured for the default backend."""

    def init(key, in_shape):
        h, w, c_in = in_shape
        out_h, out_w = (C.out_size(d, kernel, padding, stride) for d in (h, w))
        params = {"w": w_init(key, (kernel, kernel, c_in, features), jnp.float32), "b": b_init(key, (features,), jnp.float32)}
        return (out_h, out_w, features), params

    def apply(params, x):
        return C.conv2d(x, params["w"], padding, stride, impl) + params["b"]

    return stateless("conv", init, apply)


def pool2d(kind: C.PoolKind, window: int = 2, stride: int | None = None, padding: int = 0) -> Layer:
    """Average or max pooling, NHWC (D2L 6.5); stride defaults to the window."""
    step = stride or window

    def init(key, in_shape):
        h, w, c = in_shape
        return (C.out_size(h, window, padding, step), C.out_size(w, window, padding, step), c), {}

    return stateless(f"{kind}_pool", init, lambda params, x: C.pool2d(x, kind, window, stride, padding))


def flatten() -> Layer:
    """(batch, *shape) -> (batch, prod(shape))."""
    return stateless("flatten", lambda key, s: ((math.prod(s),), {}), lambda params, x: x.reshape(x.shape[0], -1))


def elementwise(kind: str, fn: Callable[[jax.Array], jax.Array]) -> Layer:
    return stateless(kind, lambda key, s: (s, {}), lambda params, x: fn(x))


ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
}


def activation(name: str) -> Layer:
    return elementwise(name, ACTIVATIONS[name])


def dropout(drop_rate: float) -> Layer:
    """Zero each unit with probability `drop_rate` in training and scale the rest by 1/(1-p),
    so that the expected value is unchanged; the identity at evaluation (D2L 4.6.4).

    The rate lives in the layer's state (`dropoutN/rate`), so that models differing only in it
    share one compiled program and a sweep can vectorise over it.
    """
    if not 0.0 <= drop_rate <= 1.0:
        raise ValueError(f"drop_rate must lie in [0, 1], got {drop_rate}")

    def init(key, in_shape):
        return in_shape, {}, {"rate": jnp.asarray(drop_rate, jnp.float32)}

    def apply(params, state, x, *, train=False, key=None):
        if not train:
            return x, state
        if key is None:
            raise ValueError("dropout in training needs a PRNG key")
        rate = state["rate"]
        keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
        # at rate 1 nothing is kept; a safe divisor keeps x / (1 - p) and its gradient finite
        return jnp.where(keep, x / jnp.where(rate < 1.0, 1.0 - rate, 1.0), 0.0), state

    return Layer("dropout", init, apply)


def batch_norm(momentum: float = 0.1, eps: float = 1e-5) -> Layer:
    """Batch normalization over every axis but the last (features of a dense layer, channels of
    NHWC images), as D2L 7.5 writes it from scratch.

    Training normalises with the batch's mean and (biased) variance and moves the running
    statistics toward them: running = (1 - momentum) * running + momentum * batch. Evaluation
    normalises with the running statistics. params: `gamma` (scale, 1), `beta` (shift, 0);
    state: `mean` (0), `var` (1).
    """

    def init(key, in_shape):
        c = in_shape[-1]
        params = {"gamma": ones_init()(key, (c,), jnp.float32), "beta": zeros_init()(key, (c,), jnp.float32)}
        return in_shape, params, {"mean": jnp.zeros((c,), jnp.float32), "var": jnp.ones((c,), jnp.float32)}

    def apply(params, state, x, *, train=False, key=None):
        if train:
            axes = tuple(range(x.ndim - 1))
            mean = jnp.mean(x, axis=axes)
            var = jnp.mean((x - mean) ** 2, axis=axes)
            state = {
                "mean": (1.0 - momentum) * state["mean"] + momentum * mean,
                "var": (1.0 - momentum) * state["var"] + momentum * var,
            }
        else:
            mean, var = state["mean"], state["var"]
        return params["gamma"] * (x - mean) / jnp.sqrt(var + eps) + params["beta"], state

    return Layer("bn", init, apply)
