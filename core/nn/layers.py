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
from .batchnorm import batch_norm_train
from .init import Initializer, normal_init, ones_init, xavier_init, zeros_init

Shape = tuple[int, ...]
Params = Any
State = Any


class Layer(NamedTuple):
    """`children` and `forward` are set by the combinators only, so that a model summary can
    walk the tree (`core.nn.summary`); a leaf layer leaves them None."""

    kind: str
    init: Callable[[jax.Array, Shape], tuple[Shape, Params, State]]
    apply: Callable[..., tuple[jax.Array, State]]
    children: tuple[tuple[str, "Layer"], ...] | None = None  # (name, layer) pairs: a Layer stays hashable
    forward: Callable[..., Any] | None = None


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
    """y = x W + b on the last axis; x: (batch, ..., n_in) -> (batch, ..., features), so a
    sequence's every step goes through the same weights. Without bias, params hold `w` only."""

    def init(key, in_shape):
        n_in = in_shape[-1]
        params = {"w": w_init(key, (n_in, features), jnp.float32)}
        if use_bias:
            params["b"] = b_init(jax.random.fold_in(key, 1), (features,), jnp.float32)  # w keeps `key`
        return (*in_shape[:-1], features), params

    def apply(params, x):
        y = x @ params["w"]
        return y + params["b"] if use_bias else y

    return stateless("dense", init, apply)


def conv2d(
    features: int,
    kernel: C.Pair,
    padding: C.Pair = 0,
    stride: C.Pair = 1,
    w_init: Initializer = xavier_init(),
    b_init: Initializer = zeros_init(),
    impl: C.ConvImpl | None = None,
    use_bias: bool = True,
) -> Layer:
    """Convolution, NHWC: (batch, H, W, C_in) -> (batch, H', W', features),
    H' = (H + 2 padding - kernel) // stride + 1 (D2L 7.3). Kernel, padding and stride are an
    int or a (height, width) pair. `impl` picks the formulation (`core.nn.conv`); None: the
    fastest measured for the default backend."""
    kh, kw = C.pair(kernel)

    def init(key, in_shape):
        h, w, c_in = in_shape
        params = {"w": w_init(key, (kh, kw, c_in, features), jnp.float32)}
        if use_bias:
            params["b"] = b_init(jax.random.fold_in(key, 1), (features,), jnp.float32)  # w keeps `key`
        return (*C.out_hw((h, w), kernel, padding, stride), features), params

    def apply(params, x):
        y = C.conv2d(x, params["w"], padding, stride, impl)
        return y + params["b"] if use_bias else y

    return stateless("conv", init, apply)


def conv2d_transpose(
    out_channels: int,
    kernel: C.Pair,
    stride: C.Pair = 1,
    padding: C.Pair = 0,
    w_init: Initializer = xavier_init(),
    b_init: Initializer = zeros_init(),
    use_bias: bool = True,
) -> Layer:
    """Transposed convolution, NHWC, as PyTorch's `nn.ConvTranspose2d` (D2L 14.10):
    (batch, H, W, C_in) -> (batch, H', W', out_channels), H' = (H - 1) stride - 2 padding + kernel.
    Each input pixel adds the kernel times its value into the output, the kernels placed `stride`
    apart; then `padding` rows and columns are cropped from each side.

    w: (kh, kw, C_in, out_channels), PyTorch's (C_in, C_out, kh, kw) transposed by (2, 3, 0, 1).
    Computed as one `lax.conv_general_dilated`: the input dilated by the stride (`lhs_dilation`),
    padded by kernel - 1 - padding on each side (negative: cropped), cross-correlated with the
    kernel flipped in height and width."""
    (kh, kw), (sh, sw), (ph, pw) = C.pair(kernel), C.pair(stride), C.pair(padding)

    def init(key, in_shape):
        h, w, c_in = in_shape
        params = {"w": w_init(key, (kh, kw, c_in, out_channels), jnp.float32)}
        if use_bias:
            params["b"] = b_init(jax.random.fold_in(key, 1), (out_channels,), jnp.float32)  # w keeps `key`
        return ((h - 1) * sh - 2 * ph + kh, (w - 1) * sw - 2 * pw + kw, out_channels), params

    def apply(params, x):
        y = jax.lax.conv_general_dilated(
            x, jnp.flip(params["w"], (0, 1)), (1, 1), [(kh - 1 - ph, kh - 1 - ph), (kw - 1 - pw, kw - 1 - pw)],
            lhs_dilation=(sh, sw), dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y + params["b"] if use_bias else y

    return stateless("convT", init, apply)


def pool2d(kind: C.PoolKind, window: C.Pair = 2, stride: C.Pair | None = None, padding: C.Pair = 0) -> Layer:
    """Average or max pooling, NHWC (D2L 7.5); stride defaults to the window."""

    def init(key, in_shape):
        h, w, c = in_shape
        return (*C.out_hw((h, w), window, padding, stride or window), c), {}

    return stateless(f"{kind}_pool", init, lambda params, x: C.pool2d(x, kind, window, stride, padding))


def global_avg_pool() -> Layer:
    """(batch, H, W, C) -> (batch, C), the mean over all positions (NiN, D2L 8.3)."""
    return stateless("gap", lambda key, s: ((s[-1],), {}), lambda params, x: C.global_avg_pool(x))


def one_hot(num_classes: int) -> Layer:
    """Token indices (batch, steps) -> one-hot vectors (batch, steps, num_classes), the book's
    input to a character-level RNN (D2L 9.5.1)."""
    return stateless("one_hot", lambda key, s: ((*s, num_classes), {}),
                     lambda params, x: jax.nn.one_hot(x, num_classes, dtype=jnp.float32))


def embedding(num_tokens: int, features: int, w_init: Initializer = normal_init(1.0)) -> Layer:
    """Token indices (batch, steps) -> rows of a (num_tokens, features) table (D2L 10.7.1)."""

    def init(key, in_shape):
        return (*in_shape, features), {"w": w_init(key, (num_tokens, features), jnp.float32)}

    return stateless("embed", init, lambda params, x: jnp.take(params["w"], x, axis=0))


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


def leaky_relu(negative_slope: float = 0.2) -> Layer:
    """x where x > 0, else negative_slope * x: the DCGAN discriminator's activation, at the
    book's nn.LeakyReLU(0.2) by default (D2L 17.2). Not in ACTIVATIONS, the names a config picks."""
    return elementwise("leaky_relu", lambda x: jax.nn.leaky_relu(x, negative_slope))


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


def _bn_init(key, in_shape):
    c = in_shape[-1]
    params = {"gamma": ones_init()(key, (c,), jnp.float32), "beta": zeros_init()(key, (c,), jnp.float32)}
    return in_shape, params, {"mean": jnp.zeros((c,), jnp.float32), "var": jnp.ones((c,), jnp.float32)}


def _moved(state, mean, var, momentum):
    """running = (1 - momentum) * running + momentum * batch, for mean and variance."""
    return {"mean": (1.0 - momentum) * state["mean"] + momentum * mean,
            "var": (1.0 - momentum) * state["var"] + momentum * var}


def _normalise(params, x, mean, var, eps):
    """gamma * (x - mean) / sqrt(var + eps) + beta (D2L 8.5.2)."""
    return params["gamma"] * (x - mean) / jnp.sqrt(var + eps) + params["beta"]


def batch_norm(momentum: float = 0.1, eps: float = 1e-5) -> Layer:
    """Batch normalization over every axis but the last (features of a dense layer, channels of
    NHWC images), written out as D2L 8.5 does from scratch.

    Training normalises with the batch's mean and (biased) variance and moves the running
    statistics toward them: running = (1 - momentum) * running + momentum * batch. Evaluation
    normalises with the running statistics. params: `gamma` (scale, 1), `beta` (shift, 0);
    state: `mean` (0), `var` (1).
    """

    def apply(params, state, x, *, train=False, key=None):
        if train:
            axes = tuple(range(x.ndim - 1))
            mean = jnp.mean(x, axis=axes)
            var = jnp.mean((x - mean) ** 2, axis=axes)
            state = _moved(state, mean, var, momentum)
        else:
            mean, var = state["mean"], state["var"]
        return _normalise(params, x, mean, var, eps), state

    return Layer("bn", _bn_init, apply)


def batch_norm_concise(momentum: float = 0.1, eps: float = 1e-5) -> Layer:
    """`batch_norm`'s function built on library primitives, as the book's concise version uses
    the framework's layer: `jnp.var` gives the batch variance (two passes: E[x^2] - E[x]^2
    cancels in float32 when the mean is large against the spread) and `jax.nn.standardize`
    normalises."""

    def apply(params, state, x, *, train=False, key=None):
        axes = tuple(range(x.ndim - 1))
        if train:
            mean, var = jnp.mean(x, axis=axes), jnp.var(x, axis=axes)
            state = _moved(state, mean, var, momentum)
        else:
            mean, var = state["mean"], state["var"]
        y = jax.nn.standardize(x, axes, mean=mean, variance=var, epsilon=eps)
        return y * params["gamma"] + params["beta"], state

    return Layer("bn", _bn_init, apply)


def batch_norm_fused(momentum: float = 0.1, eps: float = 1e-5) -> Layer:
    """`batch_norm`'s function, its training-mode gradient written out (`core.nn.batchnorm`):
    fewer passes over the activations than autodiff's."""

    def apply(params, state, x, *, train=False, key=None):
        if not train:
            return _normalise(params, x, state["mean"], state["var"], eps), state
        y, mean, var = batch_norm_train(x, params["gamma"], params["beta"], eps)
        return y, _moved(state, mean, var, momentum)

    return Layer("bn", _bn_init, apply)


BATCH_NORMS = {"scratch": batch_norm, "concise": batch_norm_concise, "fused": batch_norm_fused}
