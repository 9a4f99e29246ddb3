"""Natural language inference models (D2L 15.5): decomposable attention (Parikh et al., 2016).

x = {"premise": (batch, T_a), "hypothesis": (batch, T_b)} token ids -> logits (batch, 3) of
entailment, contradiction, neutral. As the book's code, padding tokens are embedded, attended
to and summed like any other token (no mask).
"""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ..data.spec import BatchSpec
from ..errors import ConfigError, DataNotFoundError
from . import layers as L
from .combinators import composite, serial
from .embeddings import read_text_vectors
from .init import fan_in_uniform_init, normal_init
from .model import Model, from_layer

INPUTS = ("premise", "hypothesis")


def torch_linear(num_inputs: int, features: int) -> L.Layer:
    """nn.Linear(num_inputs, features) as PyTorch draws it: weights and bias U(+-1/sqrt(num_inputs))."""
    bound = 1 / math.sqrt(num_inputs)
    bias_init = lambda key, shape, dtype: jax.random.uniform(key, shape, dtype, -bound, bound)
    return L.dense(features, fan_in_uniform_init(), bias_init)


def mlp(num_inputs: int, num_hiddens: int, drop_rate: float) -> L.Layer:
    """The book's `mlp`: dropout, dense num_hiddens, ReLU, dropout, dense num_hiddens, ReLU, on
    the last axis (its `flatten` is a no-op on the (batch, features) it flattens)."""
    return serial(L.dropout(drop_rate), torch_linear(num_inputs, num_hiddens), L.activation("relu"),
                  L.dropout(drop_rate), torch_linear(num_hiddens, num_hiddens), L.activation("relu"), kind="mlp")


def attend(f_a: jax.Array, f_b: jax.Array, a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The book's `Attend` after f: e = f(A) f(B)^T (batch, T_a, T_b); beta (batch, T_a, embed)
    is B softly aligned to each token of A, alpha (batch, T_b, embed) A aligned to each of B."""
    e = jnp.einsum("bih,bjh->bij", f_a, f_b)
    beta = jnp.einsum("bij,bjd->bid", jax.nn.softmax(e, axis=-1), b)
    alpha = jnp.einsum("bji,bjd->bid", jax.nn.softmax(e, axis=1), a)  # softmax of e^T over A's tokens
    return beta, alpha


def decomposable_attention_layer(vocab: int, embed_size: int, num_hiddens: int, drop_rate: float,
                                 num_outputs: int = 3) -> L.Layer:
    """The book's `DecomposableAttention` as one layer over {"premise", "hypothesis"}. Children:
    `embed` (vocab, embed_size) N(0, 1) as nn.Embedding; `attend` f, `compare` g, `aggregate` h
    (`mlp`) and `dense` (num_outputs). f and g run once over A's and B's tokens side by side
    (they act on each token alone), so each token draws its own dropout, as two calls would."""
    children = {"embed": L.embedding(vocab, embed_size, normal_init(1.0)),
                "attend": mlp(embed_size, num_hiddens, drop_rate),
                "compare": mlp(2 * embed_size, num_hiddens, drop_rate),
                "aggregate": mlp(2 * num_hiddens, num_hiddens, drop_rate),
                "dense": torch_linear(num_hiddens, num_outputs)}

    def forward(run, x, shape_mode):
        if shape_mode:  # x: each input's shape; the shapes each child sees
            steps = (x["premise"][0] + x["hypothesis"][0],)
            run("attend", run("embed", steps))
            run("compare", (*steps, 2 * embed_size))
            return run("dense", run("aggregate", (2 * num_hiddens,)))
        t_a = x["premise"].shape[1]
        ab = run("embed", jnp.concatenate([x["premise"], x["hypothesis"]], axis=1))  # (batch, T_a + T_b, embed)
        a, b = ab[:, :t_a], ab[:, t_a:]
        f_ab = run("attend", ab)
        beta, alpha = attend(f_ab[:, :t_a], f_ab[:, t_a:], a, b)
        v = run("compare", jnp.concatenate([jnp.concatenate([a, beta], -1), jnp.concatenate([b, alpha], -1)], axis=1))
        v_a, v_b = v[:, :t_a].sum(axis=1), v[:, t_a:].sum(axis=1)  # sum each set of comparison vectors
        return run("dense", run("aggregate", jnp.concatenate([v_a, v_b], axis=-1)))

    return composite("decomposable_attention", children, forward)


def pretrained_rows(path: Path, vocab: tuple[str, ...], embed_size: int) -> np.ndarray:
    """The rows of the text vectors in `path` for `vocab`'s tokens (D2L 15.5 copies GloVe's
    into the embedding), (len(vocab), embed_size); a word the file lacks gets zeros, as
    `TokenEmbedding` gives unknown words."""
    if not path.is_file():
        raise DataNotFoundError(f"model.embedding_file: {path} not found (expected a GloVe or fastText .txt, "
                                "e.g. glove.6B.100d.txt)")
    try:
        vectors = read_text_vectors(path)
    except ValueError as err:
        raise ConfigError(f"model.embedding_file: {err}") from None
    if vectors.W.shape[1] != embed_size:
        raise ConfigError(f"model.embedding_file: {path} holds {vectors.W.shape[1]}-d vectors, "
                          f"model.embed_size is {embed_size}")
    rows = np.zeros((len(vocab), embed_size), np.float32)
    for i, token in enumerate(vocab):
        if token in vectors and token != "<unk>":
            rows[i] = vectors.W[vectors.id(token)]
    return rows


def decomposable_attention(cfg, spec: BatchSpec) -> Model:
    """Decomposable attention on `snli` data: spec's vocabulary sizes the embedding, which
    `model.embedding_file` initialises (trained further, as the book trains its GloVe rows)."""
    shape = spec.input_shape
    if not isinstance(shape, dict) or set(shape) != set(INPUTS) or spec.vocab is None:
        raise ConfigError(f"model.name: {cfg.name} takes premise-hypothesis pairs of token ids (data.name: snli); "
                          f"the data's examples have shape {shape}")
    net = decomposable_attention_layer(len(spec.vocab), cfg.embed_size, cfg.num_hiddens, cfg.dropout,
                                       spec.output_dim)
    model = from_layer(net, shape)
    if cfg.embedding_file is None:
        return model
    rows = jnp.asarray(pretrained_rows(Path(cfg.embedding_file).expanduser(), spec.vocab, cfg.embed_size))

    def init(key):
        params, state = model.init(key)
        return {**params, "embed": {"w": rows}}, state

    return model._replace(init=init)


# model.name -> build(cfg, spec) -> Model; every one takes named inputs
NLI_MODELS: dict = {"decomposable_attention": decomposable_attention}
