"""The Vision Transformer (D2L 11.8, 1.0 edition): an image cut into patches, each patch
embedded (the book's convolution with kernel = stride = patch size, computed here as a
reshape and one matmul, the same function and parameters), a learnable [cls] token prepended
(zeros at init), a learned position embedding (N(0, 0.01^2), the JAX edition's), embedding
dropout, `blocks` pre-norm blocks (X + MHA(LN(X)), X + MLP(LN(X)), MLP = dense, GELU, dropout,
dense, dropout) and a head (LayerNorm, dense) on the [cls] output. At the book's settings
(96x96x1, patch 16, 512 dimensions, MLP 2048, 8 heads, 2 blocks) it has 6,457,866 parameters.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .attention import dropout, multi_head_attention, multi_head_init
from .layers import Layer
from .transformer import dense_init, layer_norm, norm_init


def patches(x: jax.Array, size: int) -> jax.Array:
    """(batch, H, W, C) -> (batch, H/size * W/size, size * size * C), patches in row-major order."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // size, size, w // size, size, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // size) * (w // size), size * size * c)


def vit(cfg, output_dim: int) -> Layer:
    d, p = cfg.hidden, cfg.patch

    def init(key, in_shape):
        h, w, c = in_shape
        if h % p or w % p:
            raise ValueError(f"model.patch: {p} does not divide the {h}x{w} input; set data.resize to a multiple of it")
        n = (h // p) * (w // p)
        keys = jax.random.split(key, 3 + cfg.blocks)
        params = {"patch_embed": dense_init(keys[0], p * p * c, d), "cls": jnp.zeros((1, 1, d), jnp.float32),
                  "pos_embed": 0.01 * jax.random.normal(keys[1], (1, n + 1, d), jnp.float32),
                  "head": {"norm": norm_init(d), "dense": dense_init(keys[2], d, output_dim)}}
        for i, k in enumerate(keys[3:]):
            ka, k0, k1 = jax.random.split(k, 3)
            params[f"block{i}"] = {"norm0": norm_init(d), "attention": multi_head_init(ka, d, d, d, d), "norm1": norm_init(d),
                                   "mlp": {"dense0": dense_init(k0, d, cfg.mlp_hidden), "dense1": dense_init(k1, cfg.mlp_hidden, d)}}
        return (output_dim,), params, {}

    def apply(params, state, x, *, train=False, key=None):
        keys = list(jax.random.split(key, 1 + 3 * cfg.blocks)) if key is not None else [None] * (1 + 3 * cfg.blocks)
        e = patches(x, p) @ params["patch_embed"]["w"] + params["patch_embed"]["b"]
        e = jnp.concatenate([jnp.broadcast_to(params["cls"], (e.shape[0], 1, d)), e], axis=1) + params["pos_embed"]
        h = dropout(e, cfg.emb_dropout, train, keys[0])
        for i in range(cfg.blocks):
            b, (k_att, k_mlp0, k_mlp1) = params[f"block{i}"], keys[1 + 3 * i : 4 + 3 * i]
            y = layer_norm(b["norm0"], h)
            h = h + multi_head_attention(b["attention"], y, y, y, cfg.heads, None, cfg.blk_dropout, train, k_att)[0]
            y = layer_norm(b["norm1"], h)
            y = jax.nn.gelu(y @ b["mlp"]["dense0"]["w"] + b["mlp"]["dense0"]["b"], approximate=False)
            y = dropout(y, cfg.blk_dropout, train, k_mlp0)
            y = dropout(y @ b["mlp"]["dense1"]["w"] + b["mlp"]["dense1"]["b"], cfg.blk_dropout, train, k_mlp1)
            h = h + y
        cls = layer_norm(params["head"]["norm"], h[:, 0])
        return cls @ params["head"]["dense"]["w"] + params["head"]["dense"]["b"], state

    return Layer("vit", init, apply)
