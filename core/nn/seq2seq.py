"""Encoder-decoder models for sequence to sequence learning (D2L 10.6-10.8).

An `EncoderDecoder` is four pure functions over one params pytree:
- `encode(params, src, src_len, *, train, key) -> memory`: what the decoder reads of the source;
- `start(params, memory) -> state`: the decoder's state before its first token;
- `decode(params, memory, state, tokens, *, train, key) -> (logits, state)`: tokens (batch, t)
  -> logits (batch, t, target vocabulary); training feeds the whole target at once (teacher
  forcing), decoding one token at a time.
Every leaf of `memory` and `state` has the batch on its first axis, so beam search can copy and
reorder them. `as_layer` makes one a `Layer` the trainer runs on packed pairs
(`core.data.translation`); `greedy_decode` and `beam_search` translate with it.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from .attention import additive_attention, additive_init, dropout, length_mask
from .combinators import scan_cell
from .layers import Layer
from .rnn import RNN_INITS, fused_cell


class EncoderDecoder(NamedTuple):
    kind: str
    init: Callable[[jax.Array], Any]
    encode: Callable[..., Any]
    start: Callable[[Any, Any], Any]
    decode: Callable[..., tuple[jax.Array, Any]]
    vocab: int  # the target vocabulary's size
    dropout: float = 0.0  # the config's rate; `as_layer` keeps it in the model state


def _rate(cfg, rate):
    """The dropout rate of one call: the model state's (an array) when given, else the config's."""
    return cfg.dropout if rate is None else rate


def _keys(key: jax.Array | None, n: int) -> list[jax.Array | None]:
    return list(jax.random.split(key, n)) if key is not None else [None] * n


class GRUStack(NamedTuple):
    """`layers` GRU layers, each feeding the next, with dropout between them (PyTorch's
    `nn.GRU(dropout=...)`, D2L 10.3). Params are `{"gru0": ..., "gru1": ...}`; the state is
    (batch, layers, hidden)."""

    init: Callable[[jax.Array, int], dict]
    run: Callable[..., tuple[jax.Array, jax.Array]]


def gru_stack(hidden: int, layers: int, w_init, b_init) -> GRUStack:
    cell = fused_cell("gru", hidden, w_init, b_init)

    def init(key, features):
        params = {}
        for i, k in enumerate(jax.random.split(key, layers)):
            _, params[f"gru{i}"] = cell.init(k, features if i == 0 else hidden)
        return params

    def run(params, x, h0, *, train, key, rate=0.0):
        """x (batch, T, F), h0 (batch, layers, hidden) -> (top layer's outputs, final states);
        dropout at `rate` between the layers."""
        finals = []
        for i, k in enumerate(_keys(key, layers)):
            if i:
                x = dropout(x, rate, train, k)
            x, h = scan_cell(cell, params[f"gru{i}"], x, h0[:, i])
            finals.append(h)
        return x, jnp.stack(finals, axis=1)

    return GRUStack(init, run)


def seq2seq(cfg, src_vocab: int, tgt_vocab: int, steps: int = 0) -> EncoderDecoder:
    """The book's RNN encoder-decoder (D2L 10.7): embedding and a multi-layer GRU encode the
    source; the decoder embeds each target token, concatenates the context (the encoder's
    top-layer final state) to it, runs a multi-layer GRU that starts from the encoder's final
    states, and a dense layer gives the next token's logits."""
    w_init, b_init = RNN_INITS[cfg.init](cfg.init_scale, cfg.hidden)
    e, h = cfg.embed, cfg.hidden
    encoder_rnn = gru_stack(h, cfg.layers, w_init, b_init)
    decoder_rnn = gru_stack(h, cfg.layers, w_init, b_init)
    embed_init = jax.nn.initializers.normal(1.0)  # PyTorch's nn.Embedding: N(0, 1)

    def init(key):
        k = jax.random.split(key, 6)
        return {"encoder": {"embed": embed_init(k[0], (src_vocab, e)), "rnn": encoder_rnn.init(k[1], e)},
                "decoder": {"embed": embed_init(k[2], (tgt_vocab, e)), "rnn": decoder_rnn.init(k[3], e + h),
                            "dense": {"w": w_init(k[4], (h, tgt_vocab)), "b": b_init(k[5], (tgt_vocab,))}}}

    def encode(params, src, src_len, *, train=False, key=None, rate=None):
        p = params["encoder"]
        x = jnp.take(p["embed"], src, axis=0)
        h0 = jnp.zeros((src.shape[0], cfg.layers, h), x.dtype)
        outputs, finals = encoder_rnn.run(p["rnn"], x, h0, train=train, key=key, rate=_rate(cfg, rate))
        return {"outputs": outputs, "finals": finals, "src_len": src_len}

    def start(params, memory):
        return memory["finals"]

    def decode(params, memory, state, tokens, *, train=False, key=None, rate=None):
        p = params["decoder"]
        x = jnp.take(p["embed"], tokens, axis=0)
        context = jnp.broadcast_to(memory["finals"][:, -1:, :], (x.shape[0], x.shape[1], h))
        outputs, state = decoder_rnn.run(p["rnn"], jnp.concatenate([x, context], axis=-1), state, train=train, key=key,
                                         rate=_rate(cfg, rate))
        return outputs @ p["dense"]["w"] + p["dense"]["b"], state

    return EncoderDecoder("seq2seq", init, encode, start, decode, tgt_vocab, cfg.dropout)


def bahdanau(cfg, src_vocab: int, tgt_vocab: int, steps: int = 0) -> EncoderDecoder:
    """Seq2seq with Bahdanau attention (D2L 11.4): the encoder as in `seq2seq`; at each step
    the decoder's top-layer hidden state queries the encoder's outputs (additive attention,
    masked by the source's valid length, dropout on its weights), and the GRU reads [context;
    embedding]. The decoder
    state keeps the last step's attention weights (`attention`, (batch, source steps)) for the
    heatmaps."""
    base = seq2seq(cfg, src_vocab, tgt_vocab)
    e, h = cfg.embed, cfg.hidden
    w_init, b_init = RNN_INITS[cfg.init](cfg.init_scale, cfg.hidden)
    decoder_rnn = gru_stack(h, cfg.layers, w_init, b_init)

    def init(key):
        k_base, k_rnn, k_att = jax.random.split(key, 3)
        params = base.init(k_base)
        params["decoder"]["rnn"] = decoder_rnn.init(k_rnn, e + h)
        params["decoder"]["attention"] = additive_init(k_att, h, h, h)
        return params

    def start(params, memory):
        return {"h": memory["finals"], "attention": jnp.zeros(memory["outputs"].shape[:2], memory["outputs"].dtype)}

    def decode(params, memory, state, tokens, *, train=False, key=None, rate=None):
        p = params["decoder"]
        r = _rate(cfg, rate)
        x = jnp.take(p["embed"], tokens, axis=0)  # (batch, t, e)
        mask = length_mask(memory["src_len"], 1, memory["outputs"].shape[1])

        def step(hidden, inputs):
            x_t, i = inputs
            k_att, k_rnn = (None, None) if key is None else jax.random.split(jax.random.fold_in(key, i))
            context, weights = additive_attention(p["attention"], hidden[:, -1:, :], memory["outputs"], memory["outputs"], mask,
                                                  r, train, k_att)
            y, hidden = decoder_rnn.run(p["rnn"], jnp.concatenate([context, x_t[:, None, :]], axis=-1), hidden,
                                        train=train, key=k_rnn, rate=r)
            return hidden, (y[:, 0], weights[:, 0])

        hidden, (ys, weights) = jax.lax.scan(step, state["h"], (jnp.swapaxes(x, 0, 1), jnp.arange(tokens.shape[1])))
        logits = jnp.swapaxes(ys, 0, 1) @ p["dense"]["w"] + p["dense"]["b"]
        return logits, {"h": hidden, "attention": weights[-1]}

    return EncoderDecoder("bahdanau", init, base.encode, start, decode, tgt_vocab, cfg.dropout)


def as_layer(model: EncoderDecoder) -> Layer:
    """The encoder-decoder on named inputs x {"src": (batch, T), "src_len": (batch,), "dec": (batch, T)}
    (`core.data.translation`) -> logits (batch, T, vocab), the
    decoder fed the whole target (teacher forcing). A non-zero dropout rate lives in the model
    state (`dropout`), so that a sweep's trials differing only in it share one program."""

    def init(key, in_shape):
        state = {"dropout": jnp.asarray(model.dropout, jnp.float32)} if model.dropout > 0 else {}
        return (in_shape["dec"][0], model.vocab), model.init(key), state

    def apply(params, state, x, *, train=False, key=None):
        k_enc, k_dec = _keys(key, 2)
        rate = state.get("dropout", 0.0)
        memory = model.encode(params, x["src"], x["src_len"], train=train, key=k_enc, rate=rate)
        logits, _ = model.decode(params, memory, model.start(params, memory), x["dec"], train=train, key=k_dec, rate=rate)
        return logits, state

    return Layer(model.kind, init, apply)


def greedy_decode(model: EncoderDecoder, params, src, src_len, num_steps: int, bos: int) -> jax.Array:
    """(batch, num_steps) tokens, each the most likely after those before it (D2L 10.7.6).
    Tokens after the first `<eos>` mean nothing; the caller cuts there."""
    memory = model.encode(params, src, src_len)

    def body(carry, _):
        state, token = carry
        logits, state = model.decode(params, memory, state, token[:, None])
        token = jnp.argmax(logits[:, -1], axis=-1).astype(jnp.int32)
        return (state, token), token

    first = jnp.full((src.shape[0],), bos, jnp.int32)
    _, tokens = jax.lax.scan(body, (model.start(params, memory), first), None, length=num_steps)
    return tokens.T


def decoder_attention(model: EncoderDecoder, params, src, src_len, num_steps: int, bos: int):
    """Greedy decoding that also returns, per decoded step, the decoder's attention over the
    source (its state's `attention`: (batch, steps, [blocks, heads,] source steps)), and the
    encoder's self-attention when it has one (memory's `attention`), or None for either."""
    memory = model.encode(params, src, src_len)
    state = model.start(params, memory)
    if not isinstance(state, dict) or "attention" not in state:
        return greedy_decode(model, params, src, src_len, num_steps, bos), None, None

    def body(carry, _):
        state, token = carry
        logits, state = model.decode(params, memory, state, token[:, None])
        token = jnp.argmax(logits[:, -1], axis=-1).astype(jnp.int32)
        return (state, token), (token, state["attention"])

    first = jnp.full((src.shape[0],), bos, jnp.int32)
    _, (tokens, weights) = jax.lax.scan(body, (state, first), None, length=num_steps)
    return tokens.T, jnp.swapaxes(weights, 0, 1), memory.get("attention")


def beam_search(model: EncoderDecoder, params, src, src_len, num_steps: int, bos: int, eos: int, pad: int,
                beam_size: int, alpha: float = 0.75) -> jax.Array:
    """(batch, num_steps) tokens by beam search (D2L 10.8.3): each step keeps the `beam_size`
    most likely continuations of the beams so far; a beam that has produced `<eos>` is finished
    and carries on unchanged (with `<pad>`) at no cost. Of the final beams, the one with the
    highest log-likelihood / L^alpha wins, L its length up to and including `<eos>`. With
    beam_size 1 it is greedy decoding."""
    batch, k = src.shape[0], beam_size
    memory = jax.tree_util.tree_map(lambda a: jnp.repeat(a, k, axis=0), model.encode(params, src, src_len))
    # only the first beam is live at the start, so the first step picks k different tokens
    logp = jnp.tile(jnp.asarray([0.0] + [-jnp.inf] * (k - 1), jnp.float32), batch)
    init = (model.start(params, memory), jnp.full((batch * k,), bos, jnp.int32), logp,
            jnp.zeros((batch * k,), bool), jnp.zeros((batch * k,), jnp.int32), jnp.zeros((batch * k, num_steps), jnp.int32))

    def body(carry, t):
        state, token, logp, finished, length, history = carry
        logits, state = model.decode(params, memory, state, token[:, None])
        step_logp = jax.nn.log_softmax(logits[:, -1].astype(jnp.float32), axis=-1)
        vocab = step_logp.shape[-1]
        done = jnp.where(jnp.arange(vocab) == pad, 0.0, -jnp.inf)
        step_logp = jnp.where(finished[:, None], done[None, :], step_logp)
        scores, flat = jax.lax.top_k((logp[:, None] + step_logp).reshape(batch, k * vocab), k)
        rows = (jnp.arange(batch)[:, None] * k + flat // vocab).reshape(-1)
        token = (flat % vocab).reshape(-1).astype(jnp.int32)
        state = jax.tree_util.tree_map(lambda a: a[rows], state)
        was_finished = finished[rows]
        history = history[rows].at[:, t].set(token)
        return (state, token, scores.reshape(-1), was_finished | (token == eos), length[rows] + ~was_finished,
                history), None

    (_, _, logp, _, length, history), _ = jax.lax.scan(body, init, jnp.arange(num_steps))
    score = (logp / jnp.maximum(length, 1).astype(jnp.float32) ** alpha).reshape(batch, k)
    best = jnp.arange(batch) * k + jnp.argmax(score, axis=1)
    return history[best]
