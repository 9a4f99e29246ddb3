"""Questions about parameter pytrees, answered in one place: which leaves are weights, their
norms and paths.

A weight is a leaf named `w` or `w_<something>` (`dense0/w`, `conv1/w`, `rnn0/w_hh`): the
matrices and kernels that weight decay, the L2 penalty (D2L 4.5) and the norm report act on.
Biases, batch-norm scales and shifts are not weights.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def leaf_name(path) -> str:
    """The last key of a pytree path: `dense0/w` -> `w`."""
    last = path[-1]
    return str(getattr(last, "key", getattr(last, "name", last)))


def path_name(path) -> str:
    """A pytree path as `dense0/w`."""
    return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def is_weight(path) -> bool:
    name = leaf_name(path)
    return name == "w" or name.startswith("w_")


def weight_mask(params: Any) -> Any:
    """True at the weights, False elsewhere (Optax's mask for weight decay)."""
    return jax.tree_util.tree_map_with_path(lambda path, _: is_weight(path), params)


def weights(params: Any) -> list[tuple[str, Any]]:
    """(path, array) of every weight, in pytree order."""
    return [(path_name(p), v) for p, v in jax.tree_util.tree_leaves_with_path(params) if is_weight(p)]


def l2_of_weights(params: Any) -> jax.Array:
    """sum of w^2 over the weights, biases excluded (D2L 4.5.2)."""
    return sum((jnp.sum(v**2) for _, v in weights(params)), jnp.zeros(()))


def weight_norm(params: Any) -> float:
    """||w|| over all weights together, in float64 on the host (D2L 4.5)."""
    return float(np.sqrt(sum(np.sum(np.asarray(w, np.float64) ** 2) for _, w in weights(params))))


def count(params: Any) -> int:
    return sum(int(np.size(p)) for p in jax.tree_util.tree_leaves(params))
