"""Models built from a model config and the data's shapes.

A `Model` is `init(key, in_shape) -> (params, model_state)` and
`apply(params, model_state, x, *, train, key) -> (outputs, model_state)`. `model_state` holds
what is not trained by the optimizer (batch-norm statistics); the models here have none yet and
carry an empty dict, so the trainer is ready for them.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from . import layers as L
from .config import LinearRegressionModel, MLPModel, SoftmaxRegressionModel


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
    w_init = WEIGHT_INITS[cfg.init](cfg.init_scale)
    hidden = []
    for width, drop_rate in zip(cfg.hidden, cfg.drop_rates()):
        hidden += [L.dense(width, w_init), L.activation(cfg.activation)]
        if drop_rate > 0:
            hidden.append(L.dropout(drop_rate))
    return stateless(L.serial(L.flatten(), *hidden, L.dense(output_dim, w_init)), in_shape)


MODELS: dict[str, Callable[[Any, tuple[int, ...], int], Model]] = {
    "linear_regression": linear_regression,
    "softmax_regression": softmax_regression,
    "mlp": mlp,
}


def build_model(cfg, in_shape: tuple[int, ...], output_dim: int) -> Model:
    return MODELS[cfg.name](cfg, tuple(in_shape), output_dim)
