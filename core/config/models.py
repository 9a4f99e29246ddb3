"""The model sections of the config schema, one frozen pydantic model per architecture.

The convolutional models share `ConvSection`'s initialisation and convolution fields. Every
width and depth the book fixes is a field, so that a CPU-sized variant is a config, not code.
Every section derives from `Section` (`core.config.section`): unknown keys and a boolean where a
number belongs are refused.
"""

from __future__ import annotations

import typing
from typing import Annotated, Any, Literal, Union

from pydantic import Field, model_validator

from .families import FAMILY_MODELS
from .generative import DCGANModel, GANModel
from .section import Init, Section

# Model keys whose values live in the training state, not the program: a dropout layer keeps its
# rate in the model state (`core.nn.layers.dropout`; whether there is one at all is structure),
# and the initialisation only decides the initial params. Trials differing only in these share
# one compiled program (`core.sweep.groups`).
MODEL_IN_STATE: dict[str, typing.Callable[[Any], Any]] = {
    "dropout": lambda v: [r > 0 for r in v] if isinstance(v, list) else v > 0,
    "init": lambda v: None,
    "init_scale": lambda v: None,
}


class LinearRegressionModel(Section):
    """One dense layer with a single output (D2L 3.1)."""

    name: Literal["linear_regression"] = "linear_regression"
    init: Init = "normal"
    init_scale: float = Field(0.01, ge=0, description="stddev of the 'normal' initialisation")
    bias: bool = True


class SoftmaxRegressionModel(Section):
    """Flatten, then one dense layer with one output per class (D2L 3.4)."""

    name: Literal["softmax_regression"] = "softmax_regression"
    init: Init = "normal"
    init_scale: float = Field(0.01, ge=0)


class MLPModel(Section):
    """Flatten, then dense + activation (+ dropout) per hidden layer, then a dense output (D2L 4.1)."""

    name: Literal["mlp"] = "mlp"
    hidden: tuple[Annotated[int, Field(gt=0)], ...] = (256,)
    activation: Literal["relu", "sigmoid", "tanh"] = "relu"
    dropout: Annotated[float, Field(ge=0, lt=1)] | tuple[Annotated[float, Field(ge=0, lt=1)], ...] = 0.0
    init: Init = "normal"
    init_scale: float = Field(0.01, ge=0)

    @model_validator(mode="after")
    def _dropout_per_layer(self) -> MLPModel:
        if isinstance(self.dropout, tuple) and len(self.dropout) != len(self.hidden):
            raise ValueError(
                f"dropout lists {len(self.dropout)} rates for {len(self.hidden)} hidden layers; "
                "give one rate per hidden layer or a single number"
            )
        return self

    def drop_rates(self) -> tuple[float, ...]:
        if isinstance(self.dropout, tuple):
            return self.dropout
        return (self.dropout,) * len(self.hidden)


ConvImplName = Literal["auto", "xla", "cpu", "onednn"]
Activation = Literal["relu", "sigmoid", "tanh"]


class ConvSection(Section):
    """Fields every convolutional model has."""

    init: Init = "xavier"
    init_scale: float = Field(0.01, ge=0, description="stddev of the 'normal' initialisation")
    conv_impl: ConvImplName = Field(
        "auto", description="convolution formulation (core/nn/conv.py); auto: the fastest measured for the backend"
    )


class LeNetModel(ConvSection):
    """LeNet-5 as D2L 6.6 builds it: conv 5x5 (6, padding 2), pool 2, conv 5x5 (16), pool 2,
    dense 120, 84, then one output per class; the activation after every hidden layer."""

    name: Literal["lenet"] = "lenet"
    activation: Activation = "sigmoid"
    pool: Literal["avg", "max"] = "avg"


BN_DOC = ("scratch: the book's 8.5 formula, autodiff's gradient; concise: jnp.var and jax.nn.standardize; "
          "fused: the formula with its gradient written out (two reductions and one pass; the fastest)")


class BNLeNetModel(ConvSection):
    """LeNet with batch norm after every convolution and hidden dense layer (D2L 8.5): conv
    6@5x5, BN, sigmoid, avg-pool 2; conv 16@5x5, BN, sigmoid, avg-pool 2; dense 120, BN, sigmoid;
    dense 84, BN, sigmoid; dense out. `padding: 0` is the PyTorch/MXNet model (44,878 params)."""

    name: Literal["bn_lenet"] = "bn_lenet"
    batch_norm: Literal["scratch", "concise", "fused"] = Field("scratch", description=BN_DOC)
    padding: int = Field(0, ge=0, description="of both convolutions (the book's JAX code pads to SAME: 2)")
    activation: Activation = "sigmoid"


class AlexNetModel(ConvSection):
    """AlexNet (D2L 8.1): conv 96@11x11/4, max-pool 3/2, conv 256@5x5 p2, max-pool 3/2, three conv
    3x3 p1 (384, 384, 256), max-pool 3/2, dense 4096, dropout, 4096, dropout, out. `width`
    scales every channel count and hidden width; `stem_padding` is 1 in the PyTorch/JAX code."""

    name: Literal["alexnet"] = "alexnet"
    width: float = Field(1.0, gt=0)
    hidden: int = Field(4096, gt=0)
    dropout: float = Field(0.5, ge=0, lt=1)
    stem_kernel: int = Field(11, gt=0)
    stem_stride: int = Field(4, gt=0)
    stem_padding: int = Field(1, ge=0)


class VGGModel(ConvSection):
    """VGG (D2L 8.2): per block, `convs` 3x3 p1 convolutions of `channels`, ReLU, max-pool 2/2; then
    dense `hidden`, dropout, `hidden`, dropout, out. The default is the book's trained VGG-11
    with channels divided by 4."""

    name: Literal["vgg"] = "vgg"
    blocks: tuple[tuple[Annotated[int, Field(gt=0)], Annotated[int, Field(gt=0)]], ...] = (
        (1, 16), (1, 32), (2, 64), (2, 128), (2, 128))  # fmt: skip
    hidden: int = Field(4096, gt=0)
    dropout: float = Field(0.5, ge=0, lt=1)


class NiNModel(ConvSection):
    """Network in network (D2L 8.3): NiN blocks (conv, then two 1x1 convs, each with ReLU) of 96
    (11x11/4), 256 (5x5 p2), 384 (3x3 p1) channels with max-pool 3/2 between, dropout, a block
    down to one channel per class, global average pooling. `width` scales the channels."""

    name: Literal["nin"] = "nin"
    width: float = Field(1.0, gt=0)
    dropout: float = Field(0.5, ge=0, lt=1)
    stem_kernel: int = Field(11, gt=0)
    stem_stride: int = Field(4, gt=0)


Stem = Literal["imagenet", "small", "small_pooled"]
STEM_DOC = ("imagenet: conv 7x7/2 p3, BN, ReLU, max-pool 3/2 p1 (the book's); small: conv 3x3 p1, BN, ReLU; "
            "small_pooled: small, then max-pool 2/2")


class GoogLeNetModel(ConvSection):
    """GoogLeNet (D2L 8.4): stem, two stages of Inception blocks (2 and 5), a last stage of 2,
    global average pooling, dense out; `width` scales every channel count. The book's
    GoogLeNet has no batch norm; `small` adds none either (conv 3x3 p1, ReLU)."""

    name: Literal["googlenet"] = "googlenet"
    width: float = Field(1.0, gt=0)
    stem: Stem = Field("imagenet", description="imagenet: b1 as in the book; small: conv 3x3 p1, ReLU; small_pooled: then max-pool 2/2")


class ResNetModel(ConvSection):
    """ResNet (D2L 8.6): stem, then per stage `blocks` residual blocks of `channels` (conv 3x3,
    BN, ReLU, conv 3x3, BN, add, ReLU; a stride-2 first block with a 1x1 projection after the
    first stage), global average pooling, dense out. The default is ResNet-18."""

    name: Literal["resnet"] = "resnet"
    stages: tuple[tuple[Annotated[int, Field(gt=0)], Annotated[int, Field(gt=0)]], ...] = Field(
        ((64, 2), (128, 2), (256, 2), (512, 2)), description="(channels, blocks) per stage"
    )
    stem: Stem = Field("imagenet", description=STEM_DOC)
    batch_norm: Literal["scratch", "concise", "fused"] = Field("fused", description=BN_DOC)


class DenseNetModel(ConvSection):
    """DenseNet (D2L 8.7): stem, dense blocks of `convs_per_block` conv blocks (BN, ReLU, conv
    3x3 p1 of `growth_rate` channels, concatenated to the input) with transitions (BN, ReLU, 1x1
    conv to half the channels, avg-pool 2/2) between, then BN, ReLU, global average pooling,
    dense out."""

    name: Literal["densenet"] = "densenet"
    stem_channels: int = Field(64, gt=0)
    growth_rate: int = Field(32, gt=0)
    blocks: tuple[Annotated[int, Field(gt=0)], ...] = Field((4, 4, 4, 4), description="conv blocks per dense block")
    stem: Stem = Field("imagenet", description=STEM_DOC)
    batch_norm: Literal["scratch", "concise", "fused"] = Field("fused", description=BN_DOC)


class RNNLMModel(Section):
    """A recurrent language model (D2L 9.5-10.4): one-hot tokens (or an `embedding` of that
    size), `layers` recurrent layers of `hidden` units (dropout between them; bidirectional:
    a forward and a backward cell per layer), a dense layer to the vocabulary at every step.
    `impl: scratch` is the book's from-scratch cell, one matrix per gate; `fused` the same
    equations with the gates' weights side by side and the input's products for all steps
    computed at once (the faster; core/nn/rnn.py)."""

    name: Literal["rnn_lm"] = "rnn_lm"
    cell: Literal["rnn", "gru", "lstm"] = "rnn"
    impl: Literal["scratch", "fused"] = "scratch"
    hidden: int = Field(32, gt=0)
    layers: int = Field(1, gt=0)
    bidirectional: bool = False
    dropout: float = Field(0.0, ge=0, lt=1, description="between recurrent layers")
    embedding: int | None = Field(None, gt=0, description="embed tokens in this many dimensions; None: one-hot")
    init: Literal["normal", "xavier", "uniform"] = Field(
        "normal", description="normal: N(0, init_scale^2) weights, zero biases (the book's scratch models); "
                              "uniform: weights and biases from U(+-1/sqrt(hidden)), PyTorch's default")
    init_scale: float = Field(0.01, ge=0)


class Seq2SeqModel(Section):
    """The RNN encoder-decoder (D2L 10.7): embedding (`embed`) and `layers` GRU layers of
    `hidden` units (dropout between them) encode the source; the decoder's GRU reads each
    target token's embedding next to the context (the encoder's top-layer final state), starts
    from the encoder's final states, and a dense layer gives the next token's logits. The GRUs
    keep one bias per gate, as the book's equations do (PyTorch's keep two)."""

    name: Literal["seq2seq"] = "seq2seq"
    embed: int = Field(32, gt=0)
    hidden: int = Field(32, gt=0)
    layers: int = Field(2, gt=0)
    dropout: float = Field(0.1, ge=0, lt=1, description="between GRU layers")
    init: Literal["normal", "xavier", "uniform"] = Field(
        "xavier", description="xavier: Xavier-uniform weights, zero biases (the book's init_seq2seq); "
                              "uniform: U(+-1/sqrt(hidden)), PyTorch's default; normal: N(0, init_scale^2)")
    init_scale: float = Field(0.01, ge=0)


class BahdanauModel(Seq2SeqModel):
    """Seq2seq with Bahdanau attention (D2L 11.4): the `seq2seq` encoder; at every step the
    decoder's top-layer state queries the encoder's outputs (additive attention, `hidden` units,
    masked beyond the source's valid length) and the GRU reads [context; embedding]."""

    name: Literal["bahdanau"] = "bahdanau"


def heads_divide(section):
    """Attention splits `hidden` evenly across `heads`."""
    if section.hidden % section.heads:
        raise ValueError(f"hidden ({section.hidden}) must be a multiple of heads ({section.heads})")
    return section


class TransformerModel(Section):
    """The Transformer encoder-decoder (D2L 11.7): `blocks` post-norm blocks each side,
    `heads`-head attention over `hidden` dimensions (no attention biases), a position-wise FFN
    of `ffn_hidden`, sinusoidal positions, `dropout` on embeddings, attention weights and
    sublayer outputs. Decoding caches each block's keys and values."""

    name: Literal["transformer"] = "transformer"
    hidden: int = Field(32, gt=0)
    ffn_hidden: int = Field(64, gt=0)
    heads: int = Field(4, gt=0)
    blocks: int = Field(2, gt=0)
    dropout: float = Field(0.1, ge=0, lt=1)
    init: Literal["uniform", "xavier"] = Field(
        "uniform", description="uniform: weights and biases U(+-1/sqrt(fan_in)), PyTorch's nn.Linear default, "
                               "which the book's layers keep; xavier: Xavier-uniform weights, zero biases")

    @model_validator(mode="after")
    def _heads_divide(self):
        return heads_divide(self)


class ViTModel(Section):
    """The Vision Transformer (D2L 11.8): `patch` x `patch` patches embedded in `hidden`
    dimensions, a [cls] token, learned positions, `blocks` pre-norm blocks of `heads`-head
    attention and an MLP of `mlp_hidden` (GELU), a LayerNorm and dense head on [cls]."""

    name: Literal["vit"] = "vit"
    patch: int = Field(16, gt=0, description="must divide the input's height and width (after data.resize)")
    hidden: int = Field(512, gt=0)
    mlp_hidden: int = Field(2048, gt=0)
    heads: int = Field(8, gt=0)
    blocks: int = Field(2, gt=0)
    emb_dropout: float = Field(0.1, ge=0, lt=1)
    blk_dropout: float = Field(0.1, ge=0, lt=1)

    @model_validator(mode="after")
    def _heads_divide(self):
        return heads_divide(self)


ModelConfig = Annotated[
    Union[LinearRegressionModel, SoftmaxRegressionModel, MLPModel, LeNetModel, BNLeNetModel, AlexNetModel, VGGModel,
          NiNModel, GoogLeNetModel, ResNetModel, DenseNetModel, RNNLMModel, Seq2SeqModel, BahdanauModel, TransformerModel,
          ViTModel, GANModel, DCGANModel, *FAMILY_MODELS],
    Field(discriminator="name"),
]
