"""Deep convolutional GANs (D2L 17.2): the 17.1 GAN (`core.nn.gan`) with a generator of
transposed convolutions and a discriminator of convolutions, NHWC, as the book's PyTorch code
builds them. For the book's 64 x 64 x 3 images (n_G = n_D = 64):

    generator      z (100,) as a 1x1 image -> G_block(512, stride 1, padding 0): 4x4x512
                   -> G_block(256): 8x8 -> G_block(128): 16x16 -> G_block(64): 32x32
                   -> ConvTranspose(3, 4, 2, 1), tanh: 64x64x3, in (-1, 1) as the data's [-1, 1]
    discriminator  D_block(64): 32x32 -> D_block(128): 16x16 -> D_block(256): 8x8
                   -> D_block(512): 4x4 -> Conv(1, 4): one logit

A side of 32 or 16 has one or two blocks fewer on each side (so CPU-sized runs on resized
Fashion-MNIST work). As the book: no convolution has a bias; every D_block has batch norm, the
first included (Radford et al. leave it out there); every parameter is drawn from N(0, 0.02^2),
batch norm's scale and shift included (`model.batch_norm_init: ones` keeps 1 and 0).

The losses are `gan_mlp`'s, with batch norm's statistics threaded: both networks run in training
mode in both updates, as the book's `update_D` and `update_G` do, and each update returns the
model state of both parts. The book sums its BCE where these average; Adam, which both parts
use, is blind to the scale but for its epsilon.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from ..data.spec import BatchSpec
from . import layers as L
from .combinators import serial
from .conv import ConvImpl, resolve_conv_impl
from .gan import GAN, bce
from .init import WEIGHT_INITS, Initializer, normal_init
from .objective import Update

BatchNorm = Callable[[], L.Layer]


def drawn_batch_norm(draw: Initializer) -> BatchNorm:
    """`L.batch_norm` whose scale and shift are drawn from `draw`, as the book's
    `for w in net.parameters(): nn.init.normal_(w, 0, 0.02)` draws them."""

    def make() -> L.Layer:
        layer = L.batch_norm()

        def init(key, in_shape):
            out_shape, _, state = layer.init(key, in_shape)
            k_gamma, k_beta = jax.random.split(key)
            c = in_shape[-1]
            return out_shape, {"gamma": draw(k_gamma, (c,), jnp.float32), "beta": draw(k_beta, (c,), jnp.float32)}, state

        return layer._replace(init=init)

    return make


def g_block(out_channels: int, stride: int = 2, padding: int = 1, *, w_init: Initializer = normal_init(0.02),
            batch_norm: BatchNorm = L.batch_norm) -> L.Layer:
    """The book's G_block: a 4x4 transposed convolution without bias, batch norm, ReLU;
    (H, W, C) -> (2H, 2W, out_channels) at the defaults, (1, 1, C) -> (4, 4, out_channels) at
    stride 1, padding 0."""
    return serial(L.conv2d_transpose(out_channels, 4, stride, padding, w_init, use_bias=False), batch_norm(),
                  L.activation("relu"), kind="g_block")


def d_block(out_channels: int, stride: int = 2, padding: int = 1, *, w_init: Initializer = normal_init(0.02),
            batch_norm: BatchNorm = L.batch_norm, impl: ConvImpl | None = None) -> L.Layer:
    """The book's D_block: a 4x4 convolution without bias, batch norm, leaky ReLU (slope 0.2);
    (H, W, C) -> (H/2, W/2, out_channels) at the defaults. `impl`: `L.conv2d`'s."""
    return serial(L.conv2d(out_channels, 4, padding, stride, w_init, impl=impl, use_bias=False), batch_norm(),
                  L.leaky_relu(), kind="d_block")


def _blocks(cfg, image_shape) -> int:
    """The number of G_blocks, and of D_blocks: log2(side) - 2. The G_blocks grow the 1x1 noise to
    side/2 (the last transposed convolution doubles it), the D_blocks shrink side to 4.

    Raises:
        ValueError: the images are not square with a side a power of two >= 16.
    """
    shape = () if isinstance(image_shape, dict) else tuple(image_shape)
    side, width = shape[:2] if len(shape) == 3 else (0, 0)
    if side != width or side < 16 or side & (side - 1):
        raise ValueError(f"model.name: {cfg.name} takes square images (H, W, C) whose side is a power of two >= 16 "
                         f"(the book's 64 x 64 x 3); the data's examples have shape {image_shape}")
    return side.bit_length() - 3


def _parts(cfg) -> tuple[Initializer, BatchNorm]:
    """The config's weight initialiser and batch norm."""
    w_init = WEIGHT_INITS[cfg.init](cfg.init_scale)
    return w_init, drawn_batch_norm(normal_init(cfg.init_scale)) if cfg.batch_norm_init == "normal" else L.batch_norm


def as_image() -> L.Layer:
    """(batch, features) -> (batch, 1, 1, features): noise as a 1x1 image of `features` channels."""
    return L.stateless("as_image", lambda key, s: ((1, 1, *s), {}), lambda params, x: x.reshape(x.shape[0], 1, 1, -1))


def generator(cfg, image_shape: tuple[int, int, int]) -> L.Layer:
    """Noise (latent_dim,) -> an image of `image_shape` in (-1, 1): of k = log2(side) - 2
    G_blocks, the first has n_G 2^(k-1) channels, each next one half as many, the last n_G."""
    k = _blocks(cfg, image_shape)
    w_init, bn = _parts(cfg)
    n = cfg.generator_channels
    grow = [g_block(n * 2 ** i, w_init=w_init, batch_norm=bn) for i in reversed(range(k - 1))]
    return serial(
        as_image(),
        g_block(n * 2 ** (k - 1), 1, 0, w_init=w_init, batch_norm=bn),
        *grow,
        L.conv2d_transpose(image_shape[-1], 4, 2, 1, w_init, use_bias=False), L.activation("tanh"),
    )  # fmt: skip


def discriminator(cfg, image_shape: tuple[int, int, int]) -> L.Layer:
    """An image of `image_shape` -> one logit (1,): k = log2(side) - 2 D_blocks of n_D, 2 n_D,
    ... channels down to 4x4, then a 4x4 convolution to one channel."""
    k = _blocks(cfg, image_shape)
    w_init, bn = _parts(cfg)
    impl = resolve_conv_impl(cfg.conv_impl)
    n = cfg.discriminator_channels
    return serial(
        *[d_block(n * 2 ** i, w_init=w_init, batch_norm=bn, impl=impl) for i in range(k)],
        L.conv2d(1, 4, 0, 1, w_init, impl=impl, use_bias=False), L.flatten(),
    )  # fmt: skip


def dcgan(cfg, spec: BatchSpec) -> GAN:
    """The book's 17.2 networks for images of `spec.input_shape`; `cfg` a `DCGANModel`.

    Raises:
        ValueError: the images are not square with a side a power of two >= 16.
    """
    image_shape = spec.input_shape
    net_g, net_d = generator(cfg, image_shape), discriminator(cfg, image_shape)

    def init(key):
        k_g, k_d = jax.random.split(key)
        _, g, g_state = net_g.init(k_g, (cfg.latent_dim,))
        _, d, d_state = net_d.init(k_d, tuple(image_shape))
        return {"discriminator": d, "generator": g}, {"discriminator": d_state, "generator": g_state}

    def noise(batch, key):
        return jax.random.normal(key, (batch.x.shape[0], cfg.latent_dim))

    def loss_d(params, model_state, batch, key):
        fake, g_state = net_g.apply(params["generator"], model_state["generator"], noise(batch, key), train=True)
        # real and generated images are separate batches to batch norm, as the book's two calls of net_D
        real_logits, d_state = net_d.apply(params["discriminator"], model_state["discriminator"], batch.x, train=True)
        fake_logits, d_state = net_d.apply(params["discriminator"], d_state, fake, train=True)
        loss = (bce(real_logits, 1.0) + bce(fake_logits, 0.0)) / 2
        return loss, ({"discriminator": d_state, "generator": g_state}, {"loss_D": loss})

    def loss_g(params, model_state, batch, key):
        fake, g_state = net_g.apply(params["generator"], model_state["generator"], noise(batch, key), train=True)
        logits, d_state = net_d.apply(params["discriminator"], model_state["discriminator"], fake, train=True)
        loss = bce(logits, 1.0)
        return loss, ({"discriminator": d_state, "generator": g_state}, {"loss_G": loss})

    def apply(params, model_state, z, *, train=False, key=None):
        """Images (batch, H, W, C) from noise z (batch, latent_dim); evaluation (the default)
        normalises with the running statistics."""
        images, g_state = net_g.apply(params["generator"], model_state["generator"], z, train=train, key=key)
        return images, {**model_state, "generator": g_state}

    return GAN(init, apply, cfg.latent_dim, (Update("discriminator", loss_d), Update("generator", loss_g)))
