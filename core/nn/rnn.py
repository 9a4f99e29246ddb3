"""Recurrent cells (D2L 9.4-10.3) and the recurrent language model built from them.

Each cell comes in two formulations of the same equations:
- `scratch`: the book's from-scratch code, one weight matrix per gate and per input (`w_xz`,
  `w_hz`, `b_z`, ...), every product computed inside the step;
- `fused`: the gates' weights side by side (`w_x` (F, G H), `w_h` (H, G H), `b` (G H)), as
  framework layers store them; the input's products for all steps are one matrix product
  before the scan (`Cell.project`), and each step does one product with `w_h`.
Their outputs agree to rounding for the same weights (`fuse` maps one to the other; tested).
Unlike PyTorch's and Flax's layers, which keep a second bias per gate and apply the GRU's reset
gate after the product with W_h, both follow the book's equations, with one bias per gate.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from . import layers as L
from .combinators import Cell, parallel, recurrent, serial
from .init import Initializer, normal_init, xavier_init, zeros_init

# gate names of each cell, in the order the fused weights stack them; the last is the candidate
GATES = {"rnn": ("h",), "gru": ("z", "r", "h"), "lstm": ("i", "f", "o", "c")}


def _gate_params(key, features: int, hidden: int, gates, w_init: Initializer, b_init: Initializer) -> dict[str, jax.Array]:
    params = {}
    for g, k in zip(gates, jax.random.split(key, len(gates))):
        kx, kh, kb = jax.random.split(k, 3)
        params |= {f"w_x{g}": w_init(kx, (features, hidden), jnp.float32),
                   f"w_h{g}": w_init(kh, (hidden, hidden), jnp.float32),
                   f"b_{g}": b_init(kb, (hidden,), jnp.float32)}
    return params


def fuse(kind: str, scratch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """A scratch cell's params as the fused cell's: the gates' matrices side by side."""
    gates = GATES[kind]
    return {"w_x": jnp.concatenate([scratch[f"w_x{g}"] for g in gates], axis=1),
            "w_h": jnp.concatenate([scratch[f"w_h{g}"] for g in gates], axis=1),
            "b": jnp.concatenate([scratch[f"b_{g}"] for g in gates])}


def _zeros(hidden: int, lstm: bool) -> Callable[[int], Any]:
    def initial(batch):
        h = jnp.zeros((batch, hidden), jnp.float32)
        # an LSTM's (H, C) as two arrays: a state holding one buffer twice cannot be donated to a step
        return (h, jnp.zeros((batch, hidden), jnp.float32)) if lstm else h

    return initial


def rnn_cell(hidden: int, w_init: Initializer = normal_init(), b_init: Initializer = zeros_init()) -> Cell:
    """H_t = tanh(X_t W_xh + H_{t-1} W_hh + b_h), output H_t (D2L 9.5, from scratch)."""

    def init(key, features):
        return hidden, _gate_params(key, features, hidden, GATES["rnn"], w_init, b_init)

    def step(p, h, x_t):
        h = jnp.tanh(x_t @ p["w_xh"] + h @ p["w_hh"] + p["b_h"])
        return h, h

    return Cell("rnn", init, _zeros(hidden, False), step)


def gru_cell(hidden: int, w_init: Initializer = normal_init(), b_init: Initializer = zeros_init()) -> Cell:
    """Gated recurrent unit (D2L 10.2): Z = sigmoid(X W_xz + H W_hz + b_z), R likewise,
    H~ = tanh(X W_xh + (R * H) W_hh + b_h), H = Z * H + (1 - Z) * H~."""

    def init(key, features):
        return hidden, _gate_params(key, features, hidden, GATES["gru"], w_init, b_init)

    def step(p, h, x_t):
        z = jax.nn.sigmoid(x_t @ p["w_xz"] + h @ p["w_hz"] + p["b_z"])
        r = jax.nn.sigmoid(x_t @ p["w_xr"] + h @ p["w_hr"] + p["b_r"])
        h_tilde = jnp.tanh(x_t @ p["w_xh"] + (r * h) @ p["w_hh"] + p["b_h"])
        h = z * h + (1.0 - z) * h_tilde
        return h, h

    return Cell("gru", init, _zeros(hidden, False), step)


def lstm_cell(hidden: int, w_init: Initializer = normal_init(), b_init: Initializer = zeros_init()) -> Cell:
    """Long short-term memory (D2L 10.1): gates I, F, O = sigmoid(X W_x. + H W_h. + b_.),
    C~ = tanh(X W_xc + H W_hc + b_c), C = F * C + I * C~, H = O * tanh(C); carry (H, C)."""

    def init(key, features):
        return hidden, _gate_params(key, features, hidden, GATES["lstm"], w_init, b_init)

    def step(p, carry, x_t):
        h, c = carry
        gate = lambda g, act: act(x_t @ p[f"w_x{g}"] + h @ p[f"w_h{g}"] + p[f"b_{g}"])  # noqa: E731
        i, f, o = (gate(g, jax.nn.sigmoid) for g in "ifo")
        c = f * c + i * gate("c", jnp.tanh)
        h = o * jnp.tanh(c)
        return (h, c), h

    return Cell("lstm", init, _zeros(hidden, True), step)


def fused_cell(kind: str, hidden: int, w_init: Initializer = normal_init(), b_init: Initializer = zeros_init()) -> Cell:
    """The `kind` cell's equations with the gates' weights side by side (see the module doc)."""
    def init(key, features):
        return hidden, fuse(kind, _gate_params(key, features, hidden, GATES[kind], w_init, b_init))

    def project(p, x):
        return x @ p["w_x"] + p["b"]  # (batch, steps, G H): every step's input products at once

    def rnn_step(p, h, xp):
        h = jnp.tanh(xp + h @ p["w_h"])
        return h, h

    def gru_step(p, h, xp):
        zr = jax.nn.sigmoid(xp[:, : 2 * hidden] + h @ p["w_h"][:, : 2 * hidden])
        z, r = zr[:, :hidden], zr[:, hidden:]
        h_tilde = jnp.tanh(xp[:, 2 * hidden :] + (r * h) @ p["w_h"][:, 2 * hidden :])
        h = z * h + (1.0 - z) * h_tilde
        return h, h

    def lstm_step(p, carry, xp):
        h, c = carry
        gates = xp + h @ p["w_h"]
        ifo = jax.nn.sigmoid(gates[:, : 3 * hidden])
        i, f, o = ifo[:, :hidden], ifo[:, hidden : 2 * hidden], ifo[:, 2 * hidden :]
        c = f * c + i * jnp.tanh(gates[:, 3 * hidden :])
        h = o * jnp.tanh(c)
        return (h, c), h

    step = {"rnn": rnn_step, "gru": gru_step, "lstm": lstm_step}[kind]
    return Cell(kind, init, _zeros(hidden, kind == "lstm"), step, project)


SCRATCH_CELLS = {"rnn": rnn_cell, "gru": gru_cell, "lstm": lstm_cell}


def make_cell(kind: str, impl: str, hidden: int, w_init: Initializer, b_init: Initializer) -> Cell:
    if impl == "scratch":
        return SCRATCH_CELLS[kind](hidden, w_init, b_init)
    return fused_cell(kind, hidden, w_init, b_init)


def rnn_stack(cell: Callable[[], Cell], layers: int, bidirectional: bool = False, dropout: float = 0.0,
              carry_batch: int | None = None) -> list[L.Layer]:
    """`layers` recurrent layers, each feeding the next (D2L 10.3), with dropout between them;
    bidirectional: each layer runs a cell forward and another backward and concatenates their
    outputs (D2L 10.4). Only a forward recurrence can carry its state across batches."""
    stack: list[L.Layer] = []
    for i in range(layers):
        if i and dropout > 0:
            stack.append(L.dropout(dropout))
        forward = recurrent(cell(), carry_batch=carry_batch)
        stack.append(parallel(forward, recurrent(cell(), reverse=True), kind="birnn") if bidirectional else forward)
    return stack


def uniform_init(hidden: int) -> Initializer:
    """U(-1/sqrt(hidden), 1/sqrt(hidden)), PyTorch's default for its recurrent layers' weights and biases."""
    bound = hidden**-0.5
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


# `model.init` of a recurrent model -> (weight, bias) initialisers, given (init_scale, hidden)
RNN_INITS: dict[str, Callable[[float, int], tuple[Initializer, Initializer]]] = {
    "normal": lambda scale, hidden: (normal_init(scale), zeros_init()),
    "xavier": lambda scale, hidden: (xavier_init(), zeros_init()),
    "uniform": lambda scale, hidden: (uniform_init(hidden), uniform_init(hidden)),
}


def rnn_lm(cfg, in_shape: tuple[int, ...], vocab_size: int, carry_batch: int | None = None) -> L.Layer:
    """A recurrent language model (D2L 9.5-10.4): tokens (batch, steps) -> one-hot vectors (or an
    embedding), the recurrent stack, and a dense layer to the vocabulary at every step:
    logits (batch, steps, vocab)."""
    w_init, b_init = RNN_INITS[cfg.init](cfg.init_scale, cfg.hidden)
    cell = lambda: make_cell(cfg.cell, cfg.impl, cfg.hidden, w_init, b_init)  # noqa: E731
    inputs = L.embedding(vocab_size, cfg.embedding) if cfg.embedding else L.one_hot(vocab_size)
    stack = rnn_stack(cell, cfg.layers, cfg.bidirectional, cfg.dropout, carry_batch)
    return serial(inputs, *stack, L.dense(vocab_size, w_init, b_init))


def greedy_continuation(apply: Callable, params: Any, model_state: Any, prefix: list[int], num_tokens: int) -> list[int]:
    """`prefix` followed by `num_tokens` tokens, each the most likely after those before it
    (D2L 9.5.5's `predict`). `apply` maps (batch, steps) tokens to (batch, steps, vocab) logits;
    the model runs on a buffer of the final length, so one program serves every step, and a
    model that reads ahead (a bidirectional one) sees only padding there."""
    if not prefix:
        raise ValueError("the prefix must hold at least one token")
    total = len(prefix) + num_tokens
    buffer = jnp.zeros((1, total), jnp.int32).at[0, : len(prefix)].set(jnp.asarray(prefix, jnp.int32))

    def body(i, buffer):
        logits, _ = apply(params, model_state, buffer, train=False)
        return buffer.at[0, i].set(jnp.argmax(logits[0, i - 1]).astype(jnp.int32))

    buffer = jax.jit(lambda b: jax.lax.fori_loop(len(prefix), total, body, b))(buffer)
    return [int(t) for t in buffer[0]]
