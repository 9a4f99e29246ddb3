"""BERT (D2L 14.8): the encoder, the masked-language-model head and the next-sentence head.

The encoder sums token, segment and learned positional embeddings (no dropout on the sum, as
the book's `BERTEncoder`) and runs `blocks` Transformer encoder blocks (D2L 11.7): multi-head
self-attention with biases (the book passes `use_bias=True`), masked beyond each sequence's
valid length, then a position-wise FFN, each followed by add & norm (post-norm). The blocks use
the Transformer's pieces (`core.nn.attention`, `core.nn.transformer`).

The heads are layers (`core.nn.layers`): MaskLM is dense(num_mlm_hiddens), ReLU, LayerNorm,
dense(vocab) on the encodings gathered at the predicted positions; NextSentencePred is dense(2)
on the `<cls>` encoding, which `bert_model` first passes through dense(num_hiddens) and tanh,
as the book's `BERTModel` does.

Initialisation follows PyTorch's defaults, which the book keeps: embeddings and positions
N(0, 1), dense weights and biases U(+-1/sqrt(fan_in)); LayerNorm gamma 1, beta 0. Attention
biases start at zero (the Transformer's `multi_head_init`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from . import combinators as K
from . import layers as L
from .attention import dropout, length_mask, multi_head_attention, multi_head_init
from .init import fan_in_uniform_init
from .transformer import dense_init, layer_norm, norm_init

CLS, SEP, PAD, MASK = "<cls>", "<sep>", "<pad>", "<mask>"
RESERVED = (PAD, MASK, CLS, SEP)  # the book's reserved tokens, in its order


class BertSizes(NamedTuple):
    """The hyperparameters of `BERTModel` (D2L 14.8.5): the book's demo is (10000, 768, 1024, 4,
    2, 0.2, 1000); its pretraining model (14.10) (len(vocab), 128, 256, 2, 2, 0.2, 1000)."""

    vocab: int
    hidden: int
    ffn_hidden: int
    heads: int
    blocks: int
    dropout: float = 0.2
    max_len: int = 1000


def get_tokens_and_segments(tokens_a: list[str], tokens_b: list[str] | None = None) -> tuple[list[str], list[int]]:
    """`<cls>` a `<sep>` [b `<sep>`] and the segment ids, 0 for `<cls>`, a and its `<sep>`, 1 for
    b and its `<sep>` (D2L 14.8.1)."""
    tokens = [CLS, *tokens_a, SEP]
    segments = [0] * (len(tokens_a) + 2)
    if tokens_b is not None:
        tokens += [*tokens_b, SEP]
        segments += [1] * (len(tokens_b) + 1)
    return tokens, segments


def torch_dense(features: int) -> L.Layer:
    """A dense layer on the last axis with nn.Linear's initialisation: weights and bias
    U(+-1/sqrt(fan_in)) (`transformer.dense_init`); params `w` (n_in, features), `b`."""

    def init(key, in_shape):
        return (*in_shape[:-1], features), dense_init(key, in_shape[-1], features, "uniform")

    return L.stateless("dense", init, lambda params, x: x @ params["w"] + params["b"])


def layer_norm_layer() -> L.Layer:
    """LayerNorm over the last axis (eps 1e-5, PyTorch's), as a layer: params `gamma`, `beta`."""
    return L.stateless("ln", lambda key, s: (s, norm_init(s[-1])), layer_norm)


def mask_lm_mlp(vocab: int, num_mlm_hiddens: int) -> L.Layer:
    """MaskLM's MLP (D2L 14.8.4.1): (batch, P, d) -> (batch, P, vocab)."""
    return K.serial(torch_dense(num_mlm_hiddens), L.activation("relu"), layer_norm_layer(), torch_dense(vocab))


def nsp_hidden(num_hiddens: int) -> L.Layer:
    """`BERTModel.hidden`: dense(num_hiddens) and tanh on the `<cls>` encoding (batch, d)."""
    return K.serial(torch_dense(num_hiddens), L.activation("tanh"))


def nsp_output() -> L.Layer:
    """NextSentencePred (D2L 14.8.4.2): dense(2), (batch, d_in) -> (batch, 2)."""
    return torch_dense(2)


def gather_positions(x: jax.Array, pred_positions: jax.Array) -> jax.Array:
    """The encodings at the predicted positions: x (batch, T, d), positions (batch, P) ->
    (batch, P, d) (MaskLM's `X[batch_idx, pred_positions]`)."""
    return jnp.take_along_axis(x, pred_positions[:, :, None].astype(jnp.int32), axis=1)


def encoder_init(key, sizes: BertSizes) -> dict:
    """The encoder's params: `token` (vocab, d), `segment` (2, d), `position` (max_len, d) and
    `block{i}` {attention, norm0, ffn {dense0, dense1}, norm1}."""
    d = sizes.hidden
    k_tok, k_seg, k_pos, k_blocks = jax.random.split(key, 4)
    params = {"token": jax.random.normal(k_tok, (sizes.vocab, d), jnp.float32),
              "segment": jax.random.normal(k_seg, (2, d), jnp.float32),
              "position": jax.random.normal(k_pos, (sizes.max_len, d), jnp.float32)}
    for i, k in enumerate(jax.random.split(k_blocks, sizes.blocks)):
        ka, k0, k1 = jax.random.split(k, 3)
        params[f"block{i}"] = {
            "attention": multi_head_init(ka, d, d, d, d, bias=True, init=fan_in_uniform_init()),
            "norm0": norm_init(d),
            "ffn": {"dense0": dense_init(k0, d, sizes.ffn_hidden, "uniform"),
                    "dense1": dense_init(k1, sizes.ffn_hidden, d, "uniform")},
            "norm1": norm_init(d),
        }
    return params


def _ffn(params, x):
    hidden = jax.nn.relu(x @ params["dense0"]["w"] + params["dense0"]["b"])
    return hidden @ params["dense1"]["w"] + params["dense1"]["b"]


def encoder_block(params, x, mask, heads: int, rate: float, train: bool, keys) -> tuple[jax.Array, jax.Array]:
    """One post-norm Transformer encoder block (D2L 11.7.2), dropout `rate` on the attention
    weights and in both add & norms: x (batch, T, d) -> (x' (batch, T, d), attention weights
    (batch, heads, T, T)); `keys` three PRNG keys (or Nones), for the attention and the norms."""
    y, weights = multi_head_attention(params["attention"], x, x, x, heads, mask, rate, train, keys[0])
    x = layer_norm(params["norm0"], x + dropout(y, rate, train, keys[1]))
    return layer_norm(params["norm1"], x + dropout(_ffn(params["ffn"], x), rate, train, keys[2])), weights


def encode(params, tokens, segments, valid_lens, sizes: BertSizes, *, train: bool = False, key=None) -> jax.Array:
    """The BERT encoder (D2L 14.8.2): tokens and segments (batch, T) int, valid_lens (batch,) or
    None (every position visible) -> encodings (batch, T, d)."""
    t = tokens.shape[1]
    if t > sizes.max_len:
        raise ValueError(f"a sequence of {t} tokens is longer than the positional embedding ({sizes.max_len})")
    x = jnp.take(params["token"], tokens, axis=0) + jnp.take(params["segment"], segments, axis=0)
    x = x + params["position"][:t]
    mask = length_mask(valid_lens, t, t)
    keys = list(jax.random.split(key, 3 * sizes.blocks)) if key is not None else [None] * (3 * sizes.blocks)
    for i in range(sizes.blocks):
        x, _ = encoder_block(params[f"block{i}"], x, mask, sizes.heads, sizes.dropout, train, keys[3 * i : 3 * i + 3])
    return x


class BertHeads(NamedTuple):
    mlm: L.Layer
    hidden: L.Layer
    nsp: L.Layer


def heads(sizes: BertSizes) -> BertHeads:
    """MaskLM (num_mlm_hiddens = num_hiddens, as `BERTModel` builds it), the NSP hidden layer and
    NextSentencePred."""
    return BertHeads(mask_lm_mlp(sizes.vocab, sizes.hidden), nsp_hidden(sizes.hidden), nsp_output())


def bert_init(key, sizes: BertSizes) -> dict:
    """`BERTModel`'s params: {encoder, mlm, hidden, nsp}."""
    k_enc, k_mlm, k_hid, k_nsp = jax.random.split(key, 4)
    h, d = heads(sizes), sizes.hidden
    return {"encoder": encoder_init(k_enc, sizes), "mlm": h.mlm.init(k_mlm, (1, d))[1],
            "hidden": h.hidden.init(k_hid, (d,))[1], "nsp": h.nsp.init(k_nsp, (d,))[1]}


def bert_model(params, tokens, segments, valid_lens, pred_positions, sizes: BertSizes, *, train: bool = False,
               key=None) -> tuple[jax.Array, jax.Array | None, jax.Array]:
    """`BERTModel.forward` (D2L 14.8.5): (encoded (batch, T, d), MLM logits (batch, P, vocab) or
    None without `pred_positions`, NSP logits (batch, 2) from the `<cls>` encoding)."""
    h = heads(sizes)
    encoded = encode(params["encoder"], tokens, segments, valid_lens, sizes, train=train, key=key)
    mlm = None
    if pred_positions is not None:
        mlm = h.mlm.apply(params["mlm"], {}, gather_positions(encoded, pred_positions))[0]
    cls = h.hidden.apply(params["hidden"], {}, encoded[:, 0, :])[0]
    return encoded, mlm, h.nsp.apply(params["nsp"], {}, cls)[0]


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example softmax cross-entropy (nn.CrossEntropyLoss(reduction='none')): logits
    (n, classes), labels (n,) -> (n,)."""
    return -jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), labels[:, None].astype(jnp.int32), axis=1)[:, 0]


def parameter_count(params) -> int:
    """The number of scalars in a params tree (shapes only: works on `jax.eval_shape`'s output)."""
    return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(params))
