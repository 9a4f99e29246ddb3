"""Models built from a model config and the data's shapes.

A `Model` is `init(key, in_shape) -> (params, model_state)` and
`apply(params, model_state, x, *, train, key) -> (outputs, model_state)`. `model_state` holds
what the optimizer does not train: batch-norm statistics, and the MLP's dropout rates (values,
not constants of the compiled program, so that trials can be vectorised over them).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax.numpy as jnp

from . import layers as L
from .config import LeNetModel, LinearRegressionModel, MLPModel, SoftmaxRegressionModel


class Model(NamedTuple):
    init: Callable[..., tuple[Any, Any]]
    apply: Callable[..., tuple[Any, Any]]
    in_shape: tuple[int, ...]


def stateless(net: L.Layer, in_shape: tuple[int, ...]) -> Model:
    """Wrap a layer with no model state as a Model."""

    def init(key):
        _, params = net.init(key, in_shape)
        return params, {}

    def apply(params, model_state, x, *, train=False, key=None):
        return net.apply(params, x, key=key, train=train), model_state

    return Model(init, apply, in_shape)


WEIGHT_INITS: dict[str, Callable[[float], L.Initializer]] = {
    "normal": L.normal_init,
    "xavier": lambda scale: L.xavier_init(),
    "he": lambda scale: L.he_init(),
    "zeros": lambda scale: L.zeros_init(),
}


def linear_regression(cfg: LinearRegressionModel, in_shape, output_dim: int) -> Model:
    w_init = WEIGHT_INITS[cfg.init](cfg.init_scale)
    return stateless(L.serial(L.flatten(), L.dense(output_dim, w_init, use_bias=cfg.bias)), in_shape)


def softmax_regression(cfg: SoftmaxRegressionModel, in_shape, output_dim: int) -> Model:
    w_init = WEIGHT_INITS[cfg.init](cfg.init_scale)
    return stateless(L.serial(L.flatten(), L.dense(output_dim, w_init)), in_shape)


def mlp(cfg: MLPModel, in_shape, output_dim: int) -> Model:
    """The layers' dropout rates live in `model_state["drop_rate"]` (one per layer that has
    dropout), not in the compiled program, so that trials differing only in rates can be
    vectorised; a rate of 0 means no dropout layer at all, which is structure."""
    w_init = WEIGHT_INITS[cfg.init](cfg.init_scale)
    has_dropout = [rate > 0 for rate in cfg.drop_rates()]

    def net(drop_rates) -> L.Layer:
        rates = iter(drop_rates)
        hidden = []
        for width, dropped in zip(cfg.hidden, has_dropout):
            hidden += [L.dense(width, w_init), L.activation(cfg.activation)]
            if dropped:
                hidden.append(L.dropout(next(rates)))
        return L.serial(L.flatten(), *hidden, L.dense(output_dim, w_init))

    rates = [rate for rate in cfg.drop_rates() if rate > 0]

    def init(key):
        _, params = net(rates).init(key, in_shape)
        return params, ({"drop_rate": jnp.asarray(rates, jnp.float32)} if rates else {})

    def apply(params, model_state, x, *, train=False, key=None):
        drop_rates = list(model_state["drop_rate"]) if rates else []
        return net(drop_rates).apply(params, x, key=key, train=train), model_state

    return Model(init, apply, in_shape)


def lenet(cfg: LeNetModel, in_shape, output_dim: int) -> Model:
    """D2L 6.6 on 28x28 images (NHWC); with sigmoid and average pooling it is the book's."""
    if len(in_shape) != 3:
        raise ValueError(f"model.name: lenet takes images (height, width, channels); the data's examples have shape {tuple(in_shape)}")
    w_init = WEIGHT_INITS[cfg.init](cfg.init_scale)
    impl = None if cfg.conv_impl == "auto" else cfg.conv_impl
    act = lambda: L.activation(cfg.activation)  # noqa: E731
    net = L.serial(
        L.conv2d(6, 5, padding=2, w_init=w_init, impl=impl), act(), L.pool2d(cfg.pool, 2),
        L.conv2d(16, 5, w_init=w_init, impl=impl), act(), L.pool2d(cfg.pool, 2),
        L.flatten(),
        L.dense(120, w_init), act(),
        L.dense(84, w_init), act(),
        L.dense(output_dim, w_init),
    )  # fmt: skip
    return stateless(net, in_shape)


MODELS: dict[str, Callable[[Any, tuple[int, ...], int], Model]] = {
    "linear_regression": linear_regression,
    "softmax_regression": softmax_regression,
    "mlp": mlp,
    "lenet": lenet,
}


def build_model(cfg, in_shape: tuple[int, ...], output_dim: int) -> Model:
    return MODELS[cfg.name](cfg, tuple(in_shape), output_dim)
