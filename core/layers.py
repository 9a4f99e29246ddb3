"""Functional layers: each is a pair of pure functions, in the manner of `jax.example_libraries.stax`.

`init(key, in_shape) -> (out_shape, params)`, shapes without the batch axis;
`apply(params, x, *, key, train) -> y`, x of shape (batch, *in_shape).
`serial` composes layers; its params are a dict keyed by layer (`dense0`, `dense1`, ...), so a
parameter's path says what it is (`dense0/w`).
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from . import conv as C

Shape = tuple[int, ...]
Params = Any
Initializer = Callable[[jax.Array, Shape, Any], jax.Array]


class Layer(NamedTuple):
    name: str
    init: Callable[[jax.Array, Shape], tuple[Shape, Params]]
    apply: Callable[..., jax.Array]


def normal_init(stddev: float = 0.01) -> Initializer:
    """N(0, stddev^2), the book's default for weights (D2L 3.2, 4.2)."""
    return jax.nn.initializers.normal(stddev)


def xavier_init() -> Initializer:
    """Uniform Xavier/Glorot: Var = 2 / (n_in + n_out) (D2L 4.8.2.2)."""
    return jax.nn.initializers.glorot_uniform()


def he_init() -> Initializer:
    """Normal He/Kaiming: Var = 2 / n_in, suited to ReLU."""
    return jax.nn.initializers.he_normal()


def zeros_init() -> Initializer:
    return jax.nn.initializers.zeros


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

    def apply(params, x, *, key=None, train=False):
        y = x @ params["w"]
        return y + params["b"] if use_bias else y

    return Layer("dense", init, apply)


def _out_size(size: int, window: int, padding: int, stride: int) -> int:
    return (size + 2 * padding - window) // stride + 1


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
    (`core.conv`); None: the fastest measured for the default backend."""

    def init(key, in_shape):
        h, w, c_in = in_shape
        out_h, out_w = (_out_size(d, kernel, padding, stride) for d in (h, w))
        params = {"w": w_init(key, (kernel, kernel, c_in, features), jnp.float32), "b": b_init(key, (features,), jnp.float32)}
        return (out_h, out_w, features), params

    def apply(params, x, *, key=None, train=False):
        return C.conv2d(x, params["w"], padding, stride, impl) + params["b"]

    return Layer("conv", init, apply)


def pool2d(kind: C.PoolKind, window: int = 2, stride: int | None = None, padding: int = 0) -> Layer:
    """Average or max pooling, NHWC (D2L 6.5); stride defaults to the window."""
    step = stride or window

    def init(key, in_shape):
        h, w, c = in_shape
        return (_out_size(h, window, padding, step), _out_size(w, window, padding, step), c), {}

    def apply(params, x, *, key=None, train=False):
        return C.pool2d(x, kind, window, stride, padding)

    return Layer(f"{kind}_pool", init, apply)


def flatten() -> Layer:
    """(batch, *shape) -> (batch, prod(shape))."""

    def init(key, in_shape):
        return (math.prod(in_shape),), {}

    def apply(params, x, *, key=None, train=False):
        return x.reshape(x.shape[0], -1)

    return Layer("flatten", init, apply)


def elementwise(name: str, fn: Callable[[jax.Array], jax.Array]) -> Layer:
    def init(key, in_shape):
        return in_shape, {}

    def apply(params, x, *, key=None, train=False):
        return fn(x)

    return Layer(name, init, apply)


ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
}


def activation(name: str) -> Layer:
    return elementwise(name, ACTIVATIONS[name])


def dropout(drop_rate: float | jax.Array) -> Layer:
    """Zero each unit with probability `drop_rate` in training and scale the rest by 1/(1-p),
    so that the expected value is unchanged; the identity at evaluation (D2L 4.6.4).

    `drop_rate` may be an array (a traced value), so that models differing only in it share one
    compiled program; then the rate must lie in [0, 1) and is not checked.
    """
    static = isinstance(drop_rate, (int, float))
    if static and not 0.0 <= drop_rate <= 1.0:
        raise ValueError(f"drop_rate must lie in [0, 1], got {drop_rate}")

    def init(key, in_shape):
        return in_shape, {}

    def apply(params, x, *, key=None, train=False):
        if not train or (static and drop_rate == 0.0):
            return x
        if static and drop_rate == 1.0:
            return jnp.zeros_like(x)
        if key is None:
            raise ValueError("dropout in training needs a PRNG key")
        keep = jax.random.bernoulli(key, 1.0 - drop_rate, x.shape)
        return jnp.where(keep, x / (1.0 - drop_rate), 0.0)

    return Layer("dropout", init, apply)


def serial(*layers: Layer) -> Layer:
    """Compose layers left to right; each layer with parameters gets a named entry."""
    names = _param_names(layers)

    def init(key, in_shape):
        params = {}
        shape = in_shape
        for layer, name, k in zip(layers, names, jax.random.split(key, len(layers))):
            shape, p = layer.init(k, shape)
            if name is not None:
                params[name] = p
        return shape, params

    def apply(params, x, *, key=None, train=False):
        keys = jax.random.split(key, len(layers)) if key is not None else [None] * len(layers)
        for layer, name, k in zip(layers, names, keys):
            x = layer.apply(params.get(name, {}), x, key=k, train=train)
        return x

    return Layer("serial", init, apply)


_PARAMETRIC = ("dense", "conv")


def _param_names(layers) -> list[str | None]:
    counts: dict[str, int] = {}
    names = []
    for layer in layers:
        if layer.name in _PARAMETRIC:
            names.append(f"{layer.name}{counts.get(layer.name, 0)}")
            counts[layer.name] = counts.get(layer.name, 0) + 1
        else:
            names.append(None)
    return names
