"""Skip-gram word2vec (D2L 14.4): the model, its masked sigmoid cross-entropy, nearest neighbours."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..data.spec import BatchSpec
from .embeddings import WordVectors
from .init import xavier_init
from .model import Model


def skip_gram(cfg, spec: BatchSpec) -> Model:
    """Skip-gram with negative sampling (D2L 14.4.1): x = {"center": (batch,), "contexts_negatives":
    (batch, max_len)} ids -> the logits u_o . v_c, (batch, max_len). `embed_v` holds the centre
    vectors, `embed_u` the context vectors, both (vocab, embed_size), Xavier-uniform (the book's
    `init_weights`)."""
    shape = spec.input_shape
    if not isinstance(shape, dict) or set(shape) != {"center", "contexts_negatives"} or not spec.id_counts:
        raise ValueError(f"model.name: {cfg.name} takes centre words and their contexts and noise words "
                         f"(data.name: ptb_word2vec); the data's examples have shape {shape}")
    vocab, d = spec.id_counts["center"], cfg.embed_size
    w_init = xavier_init()

    def init(key):
        kv, ku = jax.random.split(key)
        return {"embed_v": {"w": w_init(kv, (vocab, d), jnp.float32)}, "embed_u": {"w": w_init(ku, (vocab, d), jnp.float32)}}, {}

    def apply(params, model_state, x, *, train=False, key=None):
        v = params["embed_v"]["w"][x["center"]]  # (batch, d)
        u = params["embed_u"]["w"][x["contexts_negatives"]]  # (batch, max_len, d)
        return jnp.einsum("bd,bld->bl", v, u), model_state

    return Model(init, apply, shape)


# model.name -> build(cfg, spec) -> Model
EMBEDDERS: dict = {"skip_gram": skip_gram}


def masked_sigmoid_bce(out: Any, y: Any) -> jax.Array:
    """The book's loss (D2L 14.4.2): sigmoid cross-entropy of each logit against `label`,
    averaged over the positions `mask` keeps, one value per example, (batch,). The book's
    `SigmoidBCELoss(pred, label, mask) * mask.shape[1] / mask.sum(1)` is this: a mean over all
    max_len positions, padding weighted 0, rescaled to the valid ones."""
    mask, label = y["mask"], y["label"]
    logits = out.reshape(label.shape)
    bce = jnp.maximum(logits, 0) - logits * label + jnp.log1p(jnp.exp(-jnp.abs(logits)))
    return jnp.sum(bce * mask, axis=1) / jnp.maximum(jnp.sum(mask, axis=1), 1.0)


def word_vectors(params, vocab) -> WordVectors:
    """The centre vectors `embed_v` of a trained skip-gram with their words (the book searches these)."""
    return WordVectors(vocab, np.asarray(params["embed_v"]["w"]))


def embedding_report(setup, state, data) -> dict[str, Any]:
    """The `top_k` nearest words by cosine of each configured word in the vocabulary (D2L
    14.4.3: the book prints those of "chip"), as {"similar": {word: [[neighbour, cosine], ...]}};
    a word the vocabulary lacks is listed under "unknown"."""
    cfg = setup.cfg.model
    vectors = word_vectors(state.params, data.meta["vocab"])
    similar = {w: [[t, round(s, 4)] for t, s in vectors.similar(w, cfg.top_k)] for w in cfg.similar if w in vectors}
    unknown = [w for w in cfg.similar if w not in vectors]
    return {"similar": similar} | ({"similar_unknown": unknown} if unknown else {})
