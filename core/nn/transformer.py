"""The Transformer encoder-decoder (D2L 11.7) as an `EncoderDecoder` (`core.nn.seq2seq`).

Encoder: embedding x sqrt(d) plus sinusoidal positions, dropout, then `blocks` blocks of
multi-head self-attention (masked beyond the source's valid length) and a position-wise FFN,
each followed by add & norm (post-norm: LayerNorm(x + dropout(f(x)))). Decoder blocks add masked
self-attention and encoder-decoder attention; a dense layer gives the logits.

Decoding keeps each block's projected keys and values of the positions so far in the decoder
state (a cache of `steps` positions), so a new token costs one position's work, not a rerun of
the prefix. Training feeds the whole target at position 0 through the same code: its causal
mask lets position i see positions 0..i only. The state also keeps the last position's
encoder-decoder attention weights for the heatmaps; the memory keeps the encoder's.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp

from .attention import (
    dropout,
    length_mask,
    multi_head_attention,
    multi_head_init,
    positional_encoding,
    project,
    projected_attention,
)
from .init import Initializer, fan_in_uniform_init, xavier_init
from .seq2seq import EncoderDecoder

MAX_LEN = 1000  # rows of the positional encoding, as the book's


def layer_norm(params, x, eps: float = 1e-5):
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean((x - mean) ** 2, axis=-1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + eps) * params["gamma"] + params["beta"]


def norm_init(d: int):
    return {"gamma": jnp.ones((d,), jnp.float32), "beta": jnp.zeros((d,), jnp.float32)}


# `model.init` of the Transformer -> (weight initialiser, whether biases are drawn as PyTorch
# draws them, U(+-1/sqrt(fan_in)), rather than zero)
TRANSFORMER_INITS: dict[str, tuple[Callable[[], Initializer], bool]] = {
    "uniform": (fan_in_uniform_init, True),  # PyTorch's nn.Linear default, kept by the book's layers
    "xavier": (xavier_init, False),
}


def dense_init(key, d_in: int, d_out: int, init: str = "xavier"):
    """`TRANSFORMER_INITS[init]`: xavier: Xavier-uniform weights, zero bias; uniform: weights and
    bias U(+-1/sqrt(d_in))."""
    weights, drawn_bias = TRANSFORMER_INITS[init]
    k_w, k_b = jax.random.split(key)
    bound = 1 / math.sqrt(d_in)
    bias = jax.random.uniform(k_b, (d_out,), jnp.float32, -bound, bound) if drawn_bias else jnp.zeros((d_out,), jnp.float32)
    # xavier draws from `key` itself, as it always has: the ViT's initial weights stay the same
    return {"w": weights()(k_w if drawn_bias else key, (d_in, d_out), jnp.float32), "b": bias}


def _ffn(params, x):
    return jax.nn.relu(x @ params["dense0"]["w"] + params["dense0"]["b"]) @ params["dense1"]["w"] + params["dense1"]["b"]


def _ffn_init(key, d: int, hidden: int, init: str = "xavier"):
    k0, k1 = jax.random.split(key)
    return {"dense0": dense_init(k0, d, hidden, init), "dense1": dense_init(k1, hidden, d, init)}


def _keys(key, n: int):
    return list(jax.random.split(key, n)) if key is not None else [None] * n


def transformer(cfg, src_vocab: int, tgt_vocab: int, steps: int) -> EncoderDecoder:
    """The book's Transformer with `cfg.hidden` dimensions, `cfg.heads` heads, an FFN of
    `cfg.ffn_hidden`, `cfg.blocks` blocks each side and `cfg.dropout`; `steps`: the longest
    target it decodes (the cache's length)."""
    d, heads, blocks = cfg.hidden, cfg.heads, cfg.blocks
    if d % heads:
        raise ValueError(f"model.hidden ({d}) must be a multiple of model.heads ({heads})")
    pe = jnp.asarray(positional_encoding(max(MAX_LEN, steps), d))
    scale = math.sqrt(d)

    weight_init = TRANSFORMER_INITS[cfg.init][0]()

    def attention_init(key):
        return multi_head_init(key, d, d, d, d, init=weight_init)

    def init(key):
        k_enc, k_dec, k_src, k_tgt, k_out = jax.random.split(key, 5)
        encoder = {"embed": jax.random.normal(k_src, (src_vocab, d), jnp.float32)}
        for i, k in enumerate(jax.random.split(k_enc, blocks)):
            ka, kf = jax.random.split(k)
            encoder[f"block{i}"] = {"attention": attention_init(ka), "norm0": norm_init(d),
                                    "ffn": _ffn_init(kf, d, cfg.ffn_hidden, cfg.init), "norm1": norm_init(d)}
        decoder = {"embed": jax.random.normal(k_tgt, (tgt_vocab, d), jnp.float32),
                   "dense": dense_init(k_out, d, tgt_vocab, cfg.init)}
        for i, k in enumerate(jax.random.split(k_dec, blocks)):
            ks, kc, kf = jax.random.split(k, 3)
            decoder[f"block{i}"] = {"self_attention": attention_init(ks), "norm0": norm_init(d),
                                    "cross_attention": attention_init(kc), "norm1": norm_init(d),
                                    "ffn": _ffn_init(kf, d, cfg.ffn_hidden, cfg.init), "norm2": norm_init(d)}
        return {"encoder": encoder, "decoder": decoder}

    def add_norm(params, x, y, rate, train, key):
        return layer_norm(params, x + dropout(y, rate, train, key))

    def encode(params, src, src_len, *, train=False, key=None, rate=None):
        rate = cfg.dropout if rate is None else rate
        p = params["encoder"]
        t = src.shape[1]
        keys = _keys(key, 1 + 3 * blocks)
        x = dropout(jnp.take(p["embed"], src, axis=0) * scale + pe[:t], rate, train, keys[0])
        mask = length_mask(src_len, t, t)
        weights = []
        for i in range(blocks):
            b, (k_att, k_n0, k_n1) = p[f"block{i}"], keys[1 + 3 * i : 4 + 3 * i]
            y, w = multi_head_attention(b["attention"], x, x, x, heads, mask, rate, train, k_att)
            x = add_norm(b["norm0"], x, y, rate, train, k_n0)
            x = add_norm(b["norm1"], x, _ffn(b["ffn"], x), rate, train, k_n1)
            weights.append(w)
        return {"outputs": x, "src_len": src_len, "attention": jnp.stack(weights, axis=1)}  # (batch, blocks, heads, T, T)

    def start(params, memory):
        batch, t_src = memory["outputs"].shape[:2]
        zeros = jnp.zeros((batch, steps, d), memory["outputs"].dtype)
        state = {"pos": jnp.zeros((batch,), jnp.int32),
                 "attention": jnp.zeros((batch, blocks, heads, t_src), memory["outputs"].dtype)}
        return state | {f"{kv}{i}": zeros for i in range(blocks) for kv in "kv"}

    def decode(params, memory, state, tokens, *, train=False, key=None, rate=None):
        rate = cfg.dropout if rate is None else rate
        p = params["decoder"]
        t = tokens.shape[1]
        pos = state["pos"][0]  # every row of a batch is at the same position
        keys = _keys(key, 1 + 6 * blocks)
        positions = jax.lax.dynamic_slice_in_dim(pe, pos, t)
        x = dropout(jnp.take(p["embed"], tokens, axis=0) * scale + positions, rate, train, keys[0])
        # query pos + i sees the cached positions 0 .. pos + i
        causal = (jnp.arange(steps)[None, :] <= pos + jnp.arange(t)[:, None])[None]
        cross_mask = length_mask(memory["src_len"], t, memory["outputs"].shape[1])
        new_state, cross = {"pos": state["pos"] + t}, []
        for i in range(blocks):
            b, ks = p[f"block{i}"], keys[1 + 6 * i : 7 + 6 * i]
            att = b["self_attention"]
            cache = {kv: jax.lax.dynamic_update_slice_in_dim(state[f"{kv}{i}"], project(att, x, kv), pos, axis=1) for kv in "kv"}
            new_state |= {f"{kv}{i}": cache[kv] for kv in "kv"}
            y, _ = projected_attention(att, project(att, x, "q"), cache["k"], cache["v"], heads, causal, rate, train, ks[0])
            x = add_norm(b["norm0"], x, y, rate, train, ks[1])
            y, w = multi_head_attention(b["cross_attention"], x, memory["outputs"], memory["outputs"], heads, cross_mask,
                                        rate, train, ks[2])
            x = add_norm(b["norm1"], x, y, rate, train, ks[3])
            x = add_norm(b["norm2"], x, _ffn(b["ffn"], x), rate, train, ks[4])
            cross.append(w[:, :, -1])  # the last position's weights: (batch, heads, source steps)
        new_state["attention"] = jnp.stack(cross, axis=1)
        return x @ p["dense"]["w"] + p["dense"]["b"], new_state

    return EncoderDecoder("transformer", init, encode, start, decode, tgt_vocab, cfg.dropout)
