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
