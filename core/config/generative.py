"""The model sections of generative models (D2L 17): networks trained against each other, each
part with its own optimizer (`optimizers.<part>`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .section import Init, Section


class GANModel(Section):
    """A generator and a discriminator trained against each other (D2L 17.1), each an MLP; the
    defaults are the book's: G = Dense(2) on 2-d noise, D = 2-5-3-1 with tanh, every weight
    and bias from N(0, 0.02^2). Their optimizers are `optimizers.discriminator` and
    `optimizers.generator`."""

    name: Literal["gan"] = "gan"
    latent_dim: int = Field(2, gt=0, description="the noise's dimension")
    generator_hidden: tuple[Annotated[int, Field(gt=0)], ...] = Field((), description="the generator's hidden widths")
    discriminator_hidden: tuple[Annotated[int, Field(gt=0)], ...] = Field((5, 3), description="the discriminator's hidden widths")
    activation: Literal["relu", "sigmoid", "tanh"] = "tanh"
    init: Init = "normal"
    init_scale: float = Field(0.02, ge=0)


class DCGANModel(Section):
    """A deep convolutional GAN (D2L 17.2): the generator's transposed convolutions grow noise,
    a 1x1 image, to the data's images (H x W x C, H == W a power of two >= 16: the book's 64 x 64
    x 3, or one or two blocks fewer at 32 or 16); the discriminator's convolutions mirror it down
    to one logit. The defaults are the book's; train with Adam, lr 0.005, b1 0.5 for both parts
    (`optimizers.discriminator`, `optimizers.generator`)."""

    name: Literal["dcgan"] = "dcgan"
    latent_dim: int = Field(100, gt=0, description="the noise's dimension")
    generator_channels: int = Field(64, gt=0, description="n_G: the generator's last block's channels, doubled toward its first")
    discriminator_channels: int = Field(64, gt=0, description="n_D: the discriminator's first block's channels, doubled by each")
    init: Init = "normal"
    init_scale: float = Field(0.02, ge=0, description="stddev of the 'normal' initialisation")
    conv_impl: Literal["auto", "xla", "cpu", "onednn"] = Field(
        "auto", description="the discriminator's convolution formulation (core/nn/conv.py); auto: the fastest measured for "
                            "the backend")
    batch_norm_init: Literal["normal", "ones"] = Field(
        "normal", description="batch norm's scale and shift: from N(0, init_scale^2) as the book's PyTorch code draws every "
                              "parameter, or 1 and 0 (its MXNet code, and PyTorch's own default)")
