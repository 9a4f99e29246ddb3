"""textCNN (D2L 15.3): one-dimensional cross-correlation, pooling over time, and the model.

`corr1d` is the one-dimensional cross-correlation both the book's demos (`corr1d`,
`corr1d_multi_in`, the `text_cnn_demo` experiment) and the model's convolutions compute:
channels last, a sum over the kernel's positions of shifted matrix products, exact and cheap
on a CPU for the few positions a text kernel has.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..data.spec import BatchSpec
from ..errors import ConfigError
from . import layers as L
from .combinators import parallel, serial
from .init import xavier_init
from .model import Model, from_layer
from .pretrained import embedding_layer, pretrained_table


def corr1d(x: jax.Array, w: jax.Array) -> jax.Array:
    """One-dimensional cross-correlation with several input and output channels (D2L 15.3.1):
    y[b, t, o] = sum_{i, c} x[b, t + i, c] w[i, c, o].

    Args:
        x: (batch, steps, in_channels).
        w: (width, in_channels, out_channels).
    Returns:
        (batch, steps - width + 1, out_channels).
    """
    width, steps = w.shape[0], x.shape[1]
    if width > steps:
        raise ValueError(f"a kernel of width {width} is wider than the {steps} steps of its input")
    out = steps - width + 1
    return sum(x[:, i : i + out, :] @ w[i] for i in range(width))


def fan_in_bias(fan_in: int):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default bias of nn.Linear and nn.Conv1d,
    which the book's `init_weights` leaves as it is."""
    bound = fan_in**-0.5
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


def conv1d(channels: int, width: int) -> L.Layer:
    """(batch, steps, C_in) -> (batch, steps - width + 1, channels) by `corr1d` plus a bias;
    Xavier-uniform weights (fans C_in * width and channels * width, as PyTorch's for its
    (channels, C_in, width) weight)."""

    def init(key, in_shape):
        steps, c_in = in_shape
        kw, kb = jax.random.split(key)
        params = {"w": xavier_init()(kw, (width, c_in, channels), jnp.float32),
                  "b": fan_in_bias(c_in * width)(kb, (channels,), jnp.float32)}
        return (steps - width + 1, channels), params

    return L.stateless("conv1d", init, lambda p, x: corr1d(x, p["w"]) + p["b"])


def pool_over_time(kind: str) -> L.Layer:
    """(batch, steps, C) -> (batch, C): each channel's maximum over time (max-over-time pooling,
    D2L 15.3.2) or its mean (the PyTorch tab's AdaptiveAvgPool1d(1))."""
    reduce = {"max": jnp.max, "avg": jnp.mean}[kind]
    return L.stateless("pool", lambda key, s: ((s[-1],), {}), lambda p, x: reduce(x, axis=1))


def dense_book(features: int, fan_in: int) -> L.Layer:
    """nn.Linear after the book's `init_weights`: Xavier-uniform weight, PyTorch's default bias."""
    return L.dense(features, xavier_init(), fan_in_bias(fan_in))


def token_input(cfg, spec: BatchSpec) -> tuple[tuple[int, ...], int]:
    """A text classifier's input: (steps,) token ids of the data's vocabulary, and its size.

    Raises:
        ConfigError: data of other examples, or without a vocabulary.
    """
    shape = spec.input_shape
    if isinstance(shape, dict) or len(shape) != 1 or not spec.vocab:
        raise ConfigError(f"model.name: {cfg.name} takes token ids of a vocabulary (data.name: imdb); "
                          f"the examples have shape {shape}")
    return tuple(shape), len(spec.vocab)


def textcnn(cfg, spec: BatchSpec) -> Model:
    """textCNN (D2L 15.3.3): token ids (batch, steps) -> logits (batch, classes).

    The trained table `embed0` and the constant one `constant_embed0` (model state) are
    concatenated on the feature axis, (batch, steps, 2 embed_size); each kernel width's
    convolution, ReLU and pooling over time gives (batch, channels); their concatenation
    (batch, sum(channels)) goes through dropout and a dense layer."""
    in_shape, vocab_size = token_input(cfg, spec)
    steps = in_shape[0]
    if max(cfg.kernel_sizes) > steps:
        raise ConfigError(f"model.kernel_sizes: {max(cfg.kernel_sizes)} is wider than the {steps} tokens of a "
                          "review (data.num_steps)")
    d = cfg.embed_size
    table = pretrained_table(cfg.embedding, spec.vocab, d) if cfg.embedding is not None else None
    embeddings = parallel(embedding_layer(vocab_size, d, table), embedding_layer(vocab_size, d, table, frozen=True,
                                                                               kind="constant_embed"), kind="embeddings")
    # relu after the pool: for max the same as before it (relu is monotone), for avg the PyTorch tab's order
    branches = [serial(conv1d(c, k), pool_over_time(cfg.pool), L.activation("relu"), kind="branch")
                for k, c in zip(cfg.kernel_sizes, cfg.channels)]
    head = [L.dropout(cfg.dropout)] if cfg.dropout > 0 else []
    net = serial(embeddings, parallel(*branches, kind="convs"), *head, dense_book(spec.output_dim, sum(cfg.channels)))
    return from_layer(net, in_shape)
