"""Weight initialisers, and the names a config gives them (`model.init`)."""

from __future__ import annotations

from typing import Any, Callable

import jax

Initializer = Callable[[jax.Array, tuple[int, ...], Any], jax.Array]


def normal_init(stddev: float = 0.01) -> Initializer:
    """N(0, stddev^2), the book's default for weights (D2L 3.2, 4.2)."""
    return jax.nn.initializers.normal(stddev)


def xavier_init() -> Initializer:
    """Uniform Xavier/Glorot: Var = 2 / (n_in + n_out) (D2L 4.8.2.2)."""
    return jax.nn.initializers.glorot_uniform()


def fan_in_uniform_init() -> Initializer:
    """U(-1/sqrt(n_in), 1/sqrt(n_in)): PyTorch's `nn.Linear` default, which the book's PyTorch
    attention layers keep (they are `nn.LazyLinear`, still lazy when its Xavier init runs)."""
    return jax.nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")


def he_init() -> Initializer:
    """Normal He/Kaiming: Var = 2 / n_in, suited to ReLU."""
    return jax.nn.initializers.he_normal()


def zeros_init() -> Initializer:
    return jax.nn.initializers.zeros


def ones_init() -> Initializer:
    return jax.nn.initializers.ones


# `model.init` -> a weight initialiser, given `model.init_scale` (used by `normal` only)
WEIGHT_INITS: dict[str, Callable[[float], Initializer]] = {
    "normal": normal_init,
    "xavier": lambda scale: xavier_init(),
    "he": lambda scale: he_init(),
    "zeros": lambda scale: zeros_init(),
}
