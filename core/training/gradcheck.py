"""Gradient check (D2L 4.7): autodiff gradients of a configured model and loss against central
finite differences, in float64, on a few sampled parameters."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..config import Config
from ..data import Dataset, load_dataset
from ..nn.losses import LOSSES
from .setup import model_for


class GradCheck(NamedTuple):
    max_rel_error: float
    checked: int
    rows: list[dict[str, Any]]  # one per checked coordinate: param, index, autodiff, numeric, rel_error


def gradcheck(cfg: Config, *, per_leaf: int = 5, batch: int = 16, eps: float = 1e-5, data: Dataset | None = None) -> GradCheck:
    """Compare jax.grad with (L(p + eps e_i) - L(p - eps e_i)) / 2 eps for `per_leaf` random
    coordinates of every parameter array. Runs in float64 (the caller enables jax_enable_x64),
    with dropout switched off so that the loss is a deterministic function of the parameters.

    Relative error: |a - n| / max(|a| + |n|, 1e-8), which is ~1e-8 or less for a correct gradient.
    eps = 1e-5 balances rounding (about |L| 1e-16 / eps) against truncation (eps^2): at 1e-6 the
    rounding of the loss alone reached a relative 1e-5 on LeNet's smallest gradients; at 1e-4 the
    bumps cross ReLU kinks.
    """
    if not jax.config.jax_enable_x64:
        raise RuntimeError("gradcheck needs float64: call jax.config.update('jax_enable_x64', True) first")
    data = data if data is not None else load_dataset(cfg.data, cfg.seed)
    model = model_for(cfg, data)
    key = jax.random.PRNGKey(cfg.seed)
    params, model_state = model.init(key)
    params = jax.tree_util.tree_map(lambda p: p.astype(jnp.float64), params)
    # shake the parameters off their (zero-bias) initialisation so that no coordinate is special
    leaves, treedef = jax.tree_util.tree_flatten(params)
    leaves = [p + 0.1 * jax.random.normal(jax.random.fold_in(key, i), p.shape, jnp.float64) for i, p in enumerate(leaves)]
    params = jax.tree_util.tree_unflatten(treedef, leaves)
    x = jnp.asarray(data.x_train[:batch], jnp.float64)
    y = jnp.asarray(data.y_train[:batch])
    y = y.astype(jnp.float64) if jnp.issubdtype(y.dtype, jnp.floating) else y
    loss_fn = LOSSES[cfg.loss.name].fn

    @jax.jit
    def loss(p):
        out, _ = model.apply(p, model_state, x, train=False)
        return jnp.mean(loss_fn(out, y))

    grads = jax.grad(loss)(params)
    rng = np.random.default_rng(cfg.seed)
    rows = []
    flat_p = jax.tree_util.tree_leaves_with_path(params)
    flat_g = jax.tree_util.tree_leaves(grads)
    for (path, p), g in zip(flat_p, flat_g):
        name = jax.tree_util.keystr(path)
        for flat_index in rng.choice(p.size, size=min(per_leaf, p.size), replace=False):
            index = np.unravel_index(flat_index, p.shape)
            bump = jnp.zeros_like(p).at[index].set(eps)
            numeric = (loss(_replace(params, path, p + bump)) - loss(_replace(params, path, p - bump))) / (2 * eps)
            auto = g[index]
            rel = float(abs(auto - numeric) / max(abs(auto) + abs(numeric), 1e-8))
            rows.append({"param": name, "index": tuple(int(i) for i in index), "autodiff": float(auto), "numeric": float(numeric), "rel_error": rel})
    return GradCheck(float(np.max([r["rel_error"] for r in rows])), len(rows), rows)  # NaN anywhere: NaN (Python's max may skip it)


def _replace(params, path, value):
    return jax.tree_util.tree_map_with_path(lambda p, leaf: value if p == path else leaf, params)
