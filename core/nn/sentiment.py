"""Text classifiers of sentiment analysis (D2L 15.2-15.3): the bidirectional LSTM here, textCNN
in `core.nn.textcnn`, both over token ids with embeddings that pretrained word vectors may fill
(`core.nn.pretrained`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..data.spec import BatchSpec
from . import layers as L
from .combinators import Cell, serial
from .init import xavier_init
from .model import Model, from_layer
from .pretrained import embedding_layer, pretrained_table
from .rnn import fused_cell, rnn_stack, uniform_init
from .textcnn import dense_book, textcnn, token_input


def book_lstm_cell(hidden: int) -> Cell:
    """The fused LSTM cell (`core.nn.rnn`) initialised as the book's BiRNN: Xavier-uniform over
    each whole weight matrix, W_x (F, 4H) and W_h (H, 4H), as `xavier_uniform_` treats nn.LSTM's
    (4H, F) and (4H, H) weights; the bias the sum of PyTorch's two default ones (b_ih + b_hh,
    each U(-1/sqrt(H), 1/sqrt(H))), which the book leaves as they are."""
    cell = fused_cell("lstm", hidden)
    w_init, b_init = xavier_init(), uniform_init(hidden)

    def init(key, features):
        kx, kh, kb1, kb2 = jax.random.split(key, 4)
        return hidden, {"w_x": w_init(kx, (features, 4 * hidden), jnp.float32),
                        "w_h": w_init(kh, (hidden, 4 * hidden), jnp.float32),
                        "b": b_init(kb1, (4 * hidden,), jnp.float32) + b_init(kb2, (4 * hidden,), jnp.float32)}

    return cell._replace(init=init)


def first_and_last() -> L.Layer:
    """(batch, steps, F) -> (batch, 2 F): the outputs at the first and the last time steps side
    by side (the book's `torch.cat((outputs[0], outputs[-1]), dim=1)`)."""
    return L.stateless("ends", lambda key, s: ((2 * s[-1],), {}),
                       lambda p, x: jnp.concatenate([x[:, 0], x[:, -1]], axis=-1))


def birnn(cfg, spec: BatchSpec) -> Model:
    """BiRNN (D2L 15.2.1): token ids (batch, steps) -> embedding (batch, steps, embed_size) ->
    `layers` bidirectional LSTM layers (batch, steps, 2 hidden) -> first and last steps
    (batch, 4 hidden) -> logits (batch, classes). With `embedding.freeze` the table is model
    state (`core.nn.pretrained.embedding_layer`)."""
    in_shape, vocab_size = token_input(cfg, spec)
    vectors = cfg.embedding
    table = pretrained_table(vectors, spec.vocab, cfg.embed_size) if vectors is not None else None
    embed = embedding_layer(vocab_size, cfg.embed_size, table, frozen=vectors is not None and vectors.freeze)
    stack = rnn_stack(lambda: book_lstm_cell(cfg.hidden), cfg.layers, bidirectional=True)
    net = serial(embed, *stack, first_and_last(), dense_book(spec.output_dim, 4 * cfg.hidden))
    return from_layer(net, in_shape)


# model.name -> build(cfg, spec) -> Model; models of one input (token ids)
TEXT_CLASSIFIERS: dict = {"birnn": birnn, "textcnn": textcnn}
