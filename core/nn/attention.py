"""Attention (D2L 11.1-11.6): masked softmax, additive and scaled dot-product scoring,
multi-head attention and sinusoidal positional encoding, as pure functions over params dicts.

Shapes: queries (batch, Q, d_q), keys (batch, K, d_k), values (batch, K, d_v). A `mask` is
boolean and broadcasts against the scores (batch, [heads,] Q, K): True where a query may attend
to a key. `length_mask` builds one from valid lengths, (batch,) or (batch, Q), as the book
passes them; `causal_mask` keeps position i from seeing positions after it.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from .init import Initializer, xavier_init


def length_mask(valid_len: jax.Array | None, num_queries: int, num_keys: int) -> jax.Array | None:
    """(batch,) or (batch, Q) valid lengths -> (batch, Q, K) mask: key k is visible to query q
    when k < valid_len (of the batch row, or of that query)."""
    if valid_len is None:
        return None
    lens = valid_len[:, None] if valid_len.ndim == 1 else valid_len  # (batch, 1 or Q)
    lens = jnp.broadcast_to(lens[:, :, None], (lens.shape[0], num_queries, 1))
    return jnp.arange(num_keys)[None, None, :] < lens


def causal_mask(steps: int) -> jax.Array:
    """(1, T, T): query i sees keys 0..i (the decoder's self-attention in training, D2L 11.7.4)."""
    return jnp.tril(jnp.ones((steps, steps), bool))[None]


def masked_softmax(scores: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Softmax over the last axis where `mask` is True; masked positions get exactly zero
    weight, and a row with no visible key gets zeros everywhere (not NaN, not uniform)."""
    if mask is None:
        return jax.nn.softmax(scores, axis=-1)
    mask = jnp.broadcast_to(mask, scores.shape)
    shifted = jnp.where(mask, scores, -jnp.inf)
    peak = jnp.max(shifted, axis=-1, keepdims=True)
    e = jnp.where(mask, jnp.exp(shifted - jnp.where(jnp.isfinite(peak), peak, 0.0)), 0.0)
    total = jnp.sum(e, axis=-1, keepdims=True)
    return e / jnp.where(total > 0, total, 1.0)


def dropout(x: jax.Array, rate, train: bool, key: jax.Array | None) -> jax.Array:
    """Inverted dropout in training; `rate` a number, or an array (a rate kept in the model
    state, so that trials differing only in it share one program)."""
    if not train or (isinstance(rate, (int, float)) and rate == 0.0):
        return x
    if key is None:
        raise ValueError("dropout in training needs a PRNG key")
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / jnp.where(rate < 1.0, 1.0 - rate, 1.0), 0.0)


def attend(weights: jax.Array, values: jax.Array, rate: float = 0.0, train: bool = False, key=None) -> jax.Array:
    """The weighted sum of the values, with dropout on the weights (the book's attention dropout)."""
    return dropout(weights, rate, train, key) @ values


def dot_product_scores(queries: jax.Array, keys: jax.Array) -> jax.Array:
    """Q K^T / sqrt(d) (D2L 11.3.2.2)."""
    return queries @ jnp.swapaxes(keys, -1, -2) / math.sqrt(queries.shape[-1])


def dot_product_attention(queries, keys, values, mask=None, rate: float = 0.0, train: bool = False, key=None):
    """Scaled dot-product attention: (output (..., Q, d_v), weights (..., Q, K))."""
    weights = masked_softmax(dot_product_scores(queries, keys), mask)
    return attend(weights, values, rate, train, key), weights


def additive_init(key, query_dim: int, key_dim: int, hidden: int) -> dict[str, jax.Array]:
    """W_q (d_q, h), W_k (d_k, h) without bias, w_v (h,): 2 h^2 + h weights for d_q = d_k = h."""
    kq, kk, kv = jax.random.split(key, 3)
    init = xavier_init()
    return {"w_q": init(kq, (query_dim, hidden), jnp.float32), "w_k": init(kk, (key_dim, hidden), jnp.float32),
            "w_v": init(kv, (hidden, 1), jnp.float32)[:, 0]}


def additive_attention(params, queries, keys, values, mask=None, rate: float = 0.0, train: bool = False, key=None):
    """Additive attention (D2L 11.3.2.1): scores w_v^T tanh(W_q q + W_k k): (output, weights)."""
    features = jnp.tanh((queries @ params["w_q"])[..., :, None, :] + (keys @ params["w_k"])[..., None, :, :])
    weights = masked_softmax(features @ params["w_v"], mask)
    return attend(weights, values, rate, train, key), weights


def multi_head_init(key, query_dim: int, key_dim: int, value_dim: int, hidden: int, bias: bool = False,
                    init: Initializer | None = None) -> dict:
    """W_q, W_k, W_v: d -> hidden and W_o: hidden -> hidden (D2L 11.5), without biases by default;
    weights Xavier-uniform unless `init` is given."""
    ks = jax.random.split(key, 4)
    init = init or xavier_init()
    params = {f"w_{n}": init(k, (d, hidden), jnp.float32)
              for n, k, d in zip("qkvo", ks, (query_dim, key_dim, value_dim, hidden))}
    if bias:
        params |= {f"b_{n}": jnp.zeros((hidden,), jnp.float32) for n in "qkvo"}
    return params


def _project(params, x, name):
    y = x @ params[f"w_{name}"]
    return y + params[f"b_{name}"] if f"b_{name}" in params else y


def split_heads(x: jax.Array, heads: int) -> jax.Array:
    """(batch, T, heads * d) -> (batch, heads, T, d)."""
    b, t, hd = x.shape
    return x.reshape(b, t, heads, hd // heads).transpose(0, 2, 1, 3)


def merge_heads(x: jax.Array) -> jax.Array:
    b, h, t, d = x.shape
    return x.transpose(0, 2, 1, 3).reshape(b, t, h * d)


def multi_head_attention(params, queries, keys, values, heads: int, mask=None, rate: float = 0.0, train: bool = False,
                         key=None):
    """Multi-head scaled dot-product attention: every head in one batched matmul over a heads
    axis; the mask (batch, Q, K) is shared by the heads. Returns (output (batch, Q, hidden),
    weights (batch, heads, Q, K))."""
    return projected_attention(params, _project(params, queries, "q"), _project(params, keys, "k"),
                               _project(params, values, "v"), heads, mask, rate, train, key)


def project(params, x, name: str) -> jax.Array:
    """x's projection by W_name (q, k, v or o): a decoder caches its projected keys and values."""
    return _project(params, x, name)


def projected_attention(params, q, k, v, heads: int, mask=None, rate: float = 0.0, train: bool = False, key=None):
    """`multi_head_attention` from queries, keys and values already projected (batch, T, hidden)."""
    q, k, v = (split_heads(x, heads) for x in (q, k, v))
    out, weights = dot_product_attention(q, k, v, None if mask is None else mask[:, None], rate, train, key)
    return _project(params, merge_heads(out), "o"), weights


def positional_encoding(max_len: int, dim: int) -> np.ndarray:
    """P[i, 2j] = sin(i / 10000^(2j/d)), P[i, 2j+1] = cos(i / 10000^(2j/d)) (D2L 11.6.3): (max_len, dim)."""
    angles = np.arange(max_len, dtype=np.float64)[:, None] / np.power(10000.0, np.arange(0, dim, 2) / dim)[None, :]
    p = np.zeros((max_len, dim))
    p[:, 0::2] = np.sin(angles)
    p[:, 1::2] = np.cos(angles[:, : dim // 2])
    return p.astype(np.float32)
