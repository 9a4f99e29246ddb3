"""Recommender models (D2L 16): embeddings of users, items and categorical features.

Inputs are named arrays of ids (`spec.id_counts` says how many of each). A rating model maps
(user, item) to a rating; a ranking model scores items for a user: in training a positive and
a sampled negative item (`with_negatives`: {"pos", "neg"} scores for a pairwise loss), in
evaluation every item at once, (batch, items), which the hit rate and AUC rank
(`core.nn.losses`). Click-through models map a row of feature ids to one logit. Embedding
tables are named `w`, so weight decay reaches them as the book's `wd` does.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ..data.spec import BatchSpec
from . import layers as L
from .combinators import serial
from .init import WEIGHT_INITS
from .model import Model, from_layer

NEGATIVE_DRAWS = 16  # candidates drawn per negative; the first the user has not seen is taken


def _ids(spec: BatchSpec, name: str, model: str) -> int:
    if not spec.id_counts or name not in spec.id_counts:
        raise ValueError(f"model.name: {model} takes ids of {name!r} (a recommender's data: movielens, movielens_ranking, ctr); "
                         f"the data's inputs are {spec.input_shape}")
    return spec.id_counts[name]


def _tables(key, init, shapes: dict[str, tuple[int, ...]]) -> dict[str, dict[str, jax.Array]]:
    keys = jax.random.split(key, len(shapes))
    return {name: {"w": init(k, shape, jnp.float32)} for k, (name, shape) in zip(keys, shapes.items())}


def mf(cfg, spec: BatchSpec) -> Model:
    """r_ui = p_u . q_i + b_u + b_i (D2L 16.3), every table from the config's init (the book's N(0, 0.01^2))."""
    users, items, k = _ids(spec, "user", cfg.name), _ids(spec, "item", cfg.name), cfg.num_factors
    w_init = WEIGHT_INITS[cfg.init](cfg.init_scale)

    def init(key):
        return _tables(key, w_init, {"P": (users, k), "Q": (items, k), "user_bias": (users, 1), "item_bias": (items, 1)}), {}

    def apply(params, model_state, x, *, train=False, key=None):  # noqa: ARG001
        u, i = x["user"], x["item"]
        out = jnp.sum(params["P"]["w"][u] * params["Q"]["w"][i], axis=-1)
        return out + params["user_bias"]["w"][u, 0] + params["item_bias"]["w"][i, 0], model_state

    return Model(init, apply, spec.input_shape)


def autorec(cfg, spec: BatchSpec) -> Model:
    """Item-based AutoRec (D2L 16.4): an item's ratings by every user, (users,) -> sigmoid
    encoder -> dropout -> linear decoder back to (users,). The loss counts the known ratings only
    (`masked_squared_error`), as the book's `pred * sign(input)`."""
    if not isinstance(spec.input_shape, tuple) or len(spec.input_shape) != 1:
        raise ValueError(f"model.name: {cfg.name} takes an item's ratings by every user (data.form: item_vectors); "
                         f"the data's examples have shape {spec.input_shape}")
    (users,) = spec.input_shape
    w_init = WEIGHT_INITS[cfg.init](cfg.init_scale)
    net = serial(L.dense(cfg.hidden, w_init), L.activation("sigmoid"), L.dropout(cfg.dropout), L.dense(users, w_init))
    return from_layer(net, (users,))


def _mlp(widths: tuple[int, ...], w_init, drop_rate: float | None = None) -> L.Layer:
    layers = []
    for width in widths:
        layers += [L.dense(width, w_init), L.activation("relu")] + ([L.dropout(drop_rate)] if drop_rate is not None else [])
    return serial(*layers)


def neumf(cfg, spec: BatchSpec) -> Model:
    """NeuMF (D2L 16.6): [p_u * q_i, MLP([u_u, v_i])] -> one sigmoid unit without bias."""
    users, items, k = _ids(spec, "user", cfg.name), _ids(spec, "item", cfg.name), cfg.num_factors
    w_init = WEIGHT_INITS[cfg.init](cfg.init_scale)
    mlp = _mlp(cfg.hidden, w_init)
    head = L.dense(1, w_init, use_bias=False)

    def init(key):
        k_tables, k_mlp, k_head = jax.random.split(key, 3)
        params = _tables(k_tables, w_init, {"P": (users, k), "Q": (items, k), "U": (users, k), "V": (items, k)})
        out, params["mlp"], _ = mlp.init(k_mlp, (2 * k,))
        _, params["head"], _ = head.init(k_head, (k + out[-1],))
        return params, {}

    def score(params, u, q, v):  # user ids (b,), the items' two embeddings (b, [n,] k)
        p, uu = params["P"]["w"][u], params["U"]["w"][u]
        if q.ndim == 3:  # every item for each user
            p, uu = p[:, None, :], jnp.broadcast_to(uu[:, None, :], v.shape)
        hidden, _ = mlp.apply(params["mlp"], {}, jnp.concatenate([uu, v], axis=-1))
        out, _ = head.apply(params["head"], {}, jnp.concatenate([p * q, hidden], axis=-1))
        return jax.nn.sigmoid(out[..., 0])

    def apply(params, model_state, x, *, train=False, key=None):  # noqa: ARG001
        u = x["user"]
        if "neg" in x:
            return {side: score(params, u, params["Q"]["w"][x[name]], params["V"]["w"][x[name]])
                    for side, name in (("pos", "item"), ("neg", "neg"))}, model_state
        b = u.shape[0]
        q = jnp.broadcast_to(params["Q"]["w"], (b, items, k))
        return score(params, u, q, jnp.broadcast_to(params["V"]["w"], (b, items, k))), model_state

    return Model(init, apply, spec.input_shape)


def caser(cfg, spec: BatchSpec) -> Model:
    """Caser (D2L 16.7): the L previous items' embeddings E (L, k) as an image; a vertical
    convolution (d' filters of L x 1) and horizontal ones (d filters of h x k for h = 1..L, ReLU,
    max over positions), concatenated, dropout, dense + ReLU to z (k); the score of item i is
    [z, p_u] . q'_i + b_i."""
    users, items, k = _ids(spec, "user", cfg.name), _ids(spec, "item", cfg.name), cfg.num_factors
    seq_len = spec.input_shape["seq"][0]
    w_init = WEIGHT_INITS[cfg.init](cfg.init_scale)
    drop = L.dropout(cfg.dropout)
    fc = L.dense(k, w_init)

    def init(key):
        keys = jax.random.split(key, 4 + seq_len)
        params = _tables(keys[0], w_init, {"P": (users, k), "Q": (items, k), "Q_prime": (items, 2 * k), "b": (items, 1)})
        params["conv_v"] = {"w": w_init(keys[1], (seq_len, cfg.d_prime), jnp.float32), "b": jnp.zeros((cfg.d_prime,))}
        params["conv_h"] = [{"w": w_init(keys[4 + h], (h + 1, k, cfg.d), jnp.float32), "b": jnp.zeros((cfg.d,))}
                            for h in range(seq_len)]
        _, drop_params, drop_state = drop.init(keys[2], (cfg.d_prime * k + cfg.d * seq_len,))
        _, params["fc"], _ = fc.init(keys[3], (cfg.d_prime * k + cfg.d * seq_len,))
        return params, {"dropout": drop_state}

    def features(params, model_state, x, train, key):  # (b, 2k): the sequence's z beside the user's embedding
        e = params["Q"]["w"][x["seq"]]  # (b, L, k)
        vertical = jnp.einsum("blj,lc->bjc", e, params["conv_v"]["w"]) + params["conv_v"]["b"]
        horizontal = []
        for h, conv in enumerate(params["conv_h"], start=1):
            windows = sum(jnp.einsum("btj,jc->btc", e[:, s:seq_len - h + 1 + s], conv["w"][s]) for s in range(h))
            horizontal.append(jnp.max(jax.nn.relu(windows + conv["b"]), axis=1))  # max over the L - h + 1 positions
        out = jnp.concatenate([vertical.reshape(e.shape[0], -1), *horizontal], axis=1)
        out, drop_state = drop.apply({}, model_state["dropout"], out, train=train, key=key)
        z, _ = fc.apply(params["fc"], {}, out)
        return jnp.concatenate([jax.nn.relu(z), params["P"]["w"][x["user"]]], axis=1), {"dropout": drop_state}

    def apply(params, model_state, x, *, train=False, key=None):
        f, model_state = features(params, model_state, x, train, key)
        if "neg" in x:
            return {side: jnp.sum(f * params["Q_prime"]["w"][x[name]], axis=1) + params["b"]["w"][x[name], 0]
                    for side, name in (("pos", "item"), ("neg", "neg"))}, model_state
        return f @ params["Q_prime"]["w"].T + params["b"]["w"][:, 0], model_state

    return Model(init, apply, spec.input_shape)


def _fm_terms(params, x) -> tuple[jax.Array, jax.Array]:
    """The linear term and the pairwise term of a factorisation machine (D2L 16.9), and the
    field embeddings (b, fields, k) for DeepFM."""
    e = params["embedding"]["w"][x]
    pairwise = 0.5 * jnp.sum(jnp.sum(e, axis=1) ** 2 - jnp.sum(e**2, axis=1), axis=1)
    linear = jnp.sum(params["fc"]["w"][x][..., 0], axis=1) * params["linear"]["w"][0, 0] + params["linear"]["b"][0]
    return linear + pairwise, e


def _fm_params(key, spec: BatchSpec, cfg, w_init) -> dict[str, Any]:
    n = _ids(spec, "x", cfg.name)
    params = _tables(key, w_init, {"embedding": (n, cfg.num_factors), "fc": (n, 1)})
    params["linear"] = {"w": w_init(jax.random.fold_in(key, 1), (1, 1), jnp.float32), "b": jnp.zeros((1,))}
    return params


def fm(cfg, spec: BatchSpec) -> Model:
    """A factorisation machine's logit over a row of feature ids (D2L 16.9); the book applies a
    sigmoid here and again in its loss, we keep the logit and a loss that takes logits."""
    w_init = WEIGHT_INITS[cfg.init](cfg.init_scale)

    def apply(params, model_state, x, *, train=False, key=None):  # noqa: ARG001
        return _fm_terms(params, x)[0], model_state

    return Model(lambda key: (_fm_params(key, spec, cfg, w_init), {}), apply, spec.input_shape)


def deepfm(cfg, spec: BatchSpec) -> Model:
    """DeepFM (D2L 16.10): the FM's logit plus an MLP (ReLU, dropout) on the concatenated field
    embeddings, ending in one unit."""
    w_init = WEIGHT_INITS[cfg.init](cfg.init_scale)
    (fields,) = spec.input_shape
    mlp = serial(_mlp(cfg.hidden, w_init, cfg.dropout), L.dense(1, w_init))

    def init(key):
        params = _fm_params(key, spec, cfg, w_init)
        _, params["mlp"], mlp_state = mlp.init(jax.random.fold_in(key, 2), (fields * cfg.num_factors,))
        return params, {"mlp": mlp_state}

    def apply(params, model_state, x, *, train=False, key=None):
        logit, e = _fm_terms(params, x)
        deep, mlp_state = mlp.apply(params["mlp"], model_state["mlp"], e.reshape(e.shape[0], -1), train=train, key=key)
        return logit + deep[:, 0], {"mlp": mlp_state}

    return Model(init, apply, spec.input_shape)


def sample_negatives(seen: jax.Array, user: jax.Array, key: jax.Array) -> jax.Array:
    """One item per user that the user has no training interaction with, uniform over those
    (D2L 16.5): the first unseen one of `NEGATIVE_DRAWS` uniform draws; for the rare batch where
    some user's draws were all seen (one who saw most items), an exact draw over each row's
    unseen items instead. A user who has seen every item gets one of them (there is no negative)."""
    k_draws, k_exact = jax.random.split(key)
    draws = jax.random.randint(k_draws, (user.shape[0], NEGATIVE_DRAWS), 0, seen.shape[1])
    unseen = ~seen[user[:, None], draws]
    found = jnp.any(unseen, axis=1)
    quick = jnp.take_along_axis(draws, jnp.argmax(unseen, axis=1)[:, None], axis=1)[:, 0]

    def exact():
        noise = jax.random.uniform(k_exact, (user.shape[0], seen.shape[1]))
        return jnp.where(found, quick, jnp.argmax(jnp.where(seen[user], -1.0, noise), axis=1))

    return jax.lax.cond(jnp.all(found), lambda: quick, exact)


def with_negatives(model: Model, seen) -> Model:
    """`model` whose training batches get `x["neg"]`, a negative item per example drawn with
    the step's key (`sample_negatives`); evaluation batches pass unchanged."""
    seen = jnp.asarray(seen, bool)

    def prepare(x, y, key, train):
        if not train:
            return x, y
        return {**x, "neg": sample_negatives(seen, x["user"], key)}, y

    return model._replace(prepare=prepare)


RECOMMENDERS = {"mf": mf, "autorec": autorec, "neumf": neumf, "caser": caser, "fm": fm, "deepfm": deepfm}
