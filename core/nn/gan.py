"""Generative adversarial networks (D2L 17.1): a generator G maps noise z ~ N(0, I) to examples,
a discriminator D scores examples as real (logit > 0) or generated.

Each training step updates D on a batch of real examples and as many generated ones,
loss_D = (BCE(D(x), 1) + BCE(D(G(z)), 0)) / 2, then G against the updated D with the same z,
loss_G = BCE(D(G(z)), 1): two parts, two optimizers, in the one training loop
(`core.training.parts`). Params, optimizer state and model state are dicts by part.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import optax

from ..data.spec import BatchSpec
from . import layers as L
from .combinators import serial
from .init import WEIGHT_INITS
from .objective import Update


def mlp_part(widths: tuple[int, ...], out: int, activation: str, w_init) -> L.Layer:
    hidden = [layer for width in widths for layer in (L.dense(width, w_init, w_init), L.activation(activation))]
    return serial(*hidden, L.dense(out, w_init, w_init))


def bce(logits: jax.Array, label: float) -> jax.Array:
    """Binary cross-entropy from logits, averaged over the batch (PyTorch's BCEWithLogitsLoss)."""
    return optax.sigmoid_binary_cross_entropy(logits[:, 0], jax.numpy.full(logits.shape[:1], label)).mean()


class GAN(NamedTuple):
    init: Callable  # key -> (params, model_state), dicts by part
    apply: Callable  # (params, model_state, z) -> (generated examples, model_state)
    latent_dim: int
    updates: tuple[Update, ...]  # the discriminator's, then the generator's


def gan_mlp(cfg, spec: BatchSpec) -> GAN:
    """The book's 17.1 networks by default: G = Dense(2) on 2-d noise, D = 2-5-3-1 with tanh;
    every weight and bias drawn from N(0, 0.02^2) as the book's `normal_(w, 0, 0.02)`."""
    if len(spec.input_shape) != 1:
        raise ValueError(f"model.name: {cfg.name} takes vectors (features,); the data's examples have shape {spec.input_shape}")
    w_init = WEIGHT_INITS[cfg.init](cfg.init_scale)
    features = spec.input_shape[0]
    generator = mlp_part(cfg.generator_hidden, features, cfg.activation, w_init)
    discriminator = mlp_part(cfg.discriminator_hidden, 1, cfg.activation, w_init)

    def init(key):
        k_g, k_d = jax.random.split(key)
        _, g, g_state = generator.init(k_g, (cfg.latent_dim,))
        _, d, d_state = discriminator.init(k_d, (features,))
        return {"discriminator": d, "generator": g}, {"discriminator": d_state, "generator": g_state}

    def generate(params, model_state, z):
        return generator.apply(params["generator"], model_state["generator"], z)[0]

    def score(params, model_state, x):
        return discriminator.apply(params["discriminator"], model_state["discriminator"], x)[0]

    def noise(batch, key):
        return jax.random.normal(key, (batch.x.shape[0], cfg.latent_dim))

    def loss_d(params, model_state, batch, key):
        fake = generate(params, model_state, noise(batch, key))
        loss = (bce(score(params, model_state, batch.x), 1.0) + bce(score(params, model_state, fake), 0.0)) / 2
        return loss, (model_state, {"loss_D": loss})

    def loss_g(params, model_state, batch, key):
        loss = bce(score(params, model_state, generate(params, model_state, noise(batch, key))), 1.0)
        return loss, (model_state, {"loss_G": loss})

    def apply(params, model_state, z, *, train=False, key=None):  # noqa: ARG001 - the generator, as predictions use it
        return generate(params, model_state, z), model_state

    return GAN(init, apply, cfg.latent_dim, (Update("discriminator", loss_d), Update("generator", loss_g)))


SNAPSHOT_SEED = 17  # the noise every epoch's samples are generated from: the same points, epoch after epoch


def gan_snapshot(gan: GAN, vectors: int = 100, images: int = 16) -> Callable:
    """`snapshot(params, model_state)`: what the generator makes of one fixed draw of noise, in
    evaluation mode: `vectors` points of low-dimensional data (D2L 17.1's scatter), `images`
    images (17.2's grid)."""

    def snapshot(params, model_state):
        z = jax.random.normal(jax.random.PRNGKey(SNAPSHOT_SEED), (vectors, gan.latent_dim))
        out = gan.apply(params, model_state, z)[0]
        return out[:images] if out.ndim > 2 else out

    return snapshot


def sample(model, params: Any, model_state: Any, key: jax.Array, n: int, latent_dim: int) -> jax.Array:
    """`n` generated examples."""
    return model.apply(params, model_state, jax.random.normal(key, (n, latent_dim)))[0]
