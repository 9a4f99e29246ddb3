"""Models by name, built from a model config and the data's shapes.

A `Model` (`core.nn.model`) is `init(key) -> (params, model_state)` and
`apply(params, model_state, x, *, train, key) -> (outputs, model_state)`: the network's layer
with its input shape fixed. `step_on` names the backends where training it one jitted step per batch measured faster than
a whole epoch as one `lax.scan` (`core.training.setup.choose_loop`).
"""

from __future__ import annotations

from typing import Any, Callable

from ..data.spec import BatchSpec
from . import layers as L
from .bert_models import BERT_MODELS
from .cnn import CNNS
from .combinators import serial
from .conv import resolve_conv_impl
from .dcgan import dcgan
from .fcn import SEGMENTERS
from .gan import gan_mlp, gan_snapshot
from .init import WEIGHT_INITS
from .model import Model, from_layer, pipeline_key, with_input, with_targets  # noqa: F401 - the model's names, here too
from .nli import NLI_MODELS
from .recsys import RECOMMENDERS
from .rnn import rnn_lm
from .sentiment import TEXT_CLASSIFIERS
from .seq2seq import as_layer, bahdanau, seq2seq
from .ssd import DETECTORS
from .torchvision_resnet import resnet18 as torchvision_resnet18
from .transformer import transformer
from .vit import vit
from .word2vec import EMBEDDERS

# builder(cfg, source vocabulary, target vocabulary, steps) -> EncoderDecoder
ENCODER_DECODERS = {"seq2seq": seq2seq, "bahdanau": bahdanau, "transformer": transformer}


Builder = Callable[[Any, BatchSpec], Model]


def linear_regression(cfg, spec: BatchSpec) -> Model:
    """One dense layer (D2L 3.1)."""
    in_shape, output_dim = spec.input_shape, spec.output_dim
    w_init = WEIGHT_INITS[cfg.init](cfg.init_scale)
    return from_layer(serial(L.flatten(), L.dense(output_dim, w_init, use_bias=cfg.bias)), in_shape)


def softmax_regression(cfg, spec: BatchSpec) -> Model:
    """Flatten, then one dense layer with one output per class (D2L 3.4)."""
    in_shape, output_dim = spec.input_shape, spec.output_dim
    w_init = WEIGHT_INITS[cfg.init](cfg.init_scale)
    return from_layer(serial(L.flatten(), L.dense(output_dim, w_init)), in_shape)


def mlp(cfg, spec: BatchSpec) -> Model:
    """Dense + activation (+ dropout) per hidden layer, then a dense output (D2L 4.1, 4.6). A
    rate of 0 means no dropout layer at all; the rates themselves live in the model state."""
    in_shape, output_dim = spec.input_shape, spec.output_dim
    w_init = WEIGHT_INITS[cfg.init](cfg.init_scale)
    hidden = []
    for width, rate in zip(cfg.hidden, cfg.drop_rates()):
        hidden += [L.dense(width, w_init), L.activation(cfg.activation)]
        if rate > 0:
            hidden.append(L.dropout(rate))
    return from_layer(serial(L.flatten(), *hidden, L.dense(output_dim, w_init)), in_shape)


def lenet(cfg, spec: BatchSpec) -> Model:
    """D2L 6.6 on 28x28 images (NHWC); with sigmoid and average pooling it is the book's."""
    in_shape, output_dim = spec.input_shape, spec.output_dim
    if len(in_shape) != 3:
        raise ValueError(f"model.name: lenet takes images (height, width, channels); the data's examples have shape {tuple(in_shape)}")
    w_init = WEIGHT_INITS[cfg.init](cfg.init_scale)
    impl = resolve_conv_impl(cfg.conv_impl)
    act = lambda: L.activation(cfg.activation)  # noqa: E731
    net = serial(
        L.conv2d(6, 5, padding=2, w_init=w_init, impl=impl), act(), L.pool2d(cfg.pool, 2),
        L.conv2d(16, 5, w_init=w_init, impl=impl), act(), L.pool2d(cfg.pool, 2),
        L.flatten(),
        L.dense(120, w_init), act(),
        L.dense(84, w_init), act(),
        L.dense(output_dim, w_init),
    )  # fmt: skip
    # Inside a scan's loop body XLA's CPU backend leaves its own convolution to a generic
    # kernel (LeNet about 29 s/epoch against 9 per step), so that formulation trains per step.
    return from_layer(net, in_shape, frozenset({"cpu"}) if impl == "xla" else frozenset())


def image_model(builder: Callable[[Any, int], L.Layer]) -> Builder:
    """A model from a `core.nn.cnn` builder, for image inputs (height, width, channels)."""

    def build(cfg, spec: BatchSpec) -> Model:
        in_shape, output_dim = spec.input_shape, spec.output_dim
        if len(in_shape) != 3:
            raise ValueError(f"model.name: {cfg.name} takes images (height, width, channels); "
                             f"the data's examples have shape {tuple(in_shape)}")
        return from_layer(builder(cfg, output_dim), in_shape)

    return build


def sequence_model(builder: Callable[..., L.Layer]) -> Builder:
    """A model from a `core.nn.rnn` builder, for token sequences (steps,); `spec.carry_batch`:
    the training batch size when the data's sampling carries hidden states across batches."""

    def build(cfg, spec: BatchSpec) -> Model:
        in_shape, output_dim, carry_batch = spec.input_shape, spec.output_dim, spec.carry_batch
        if len(in_shape) != 1:
            raise ValueError(f"model.name: {cfg.name} takes token sequences (steps,); "
                             f"the data's examples have shape {tuple(in_shape)}")
        return from_layer(builder(cfg, in_shape, output_dim, carry_batch), in_shape)

    return build


def encoder_decoder(name: str) -> Builder:
    """A model from a `core.nn.seq2seq` builder, for sentence pairs as named inputs (`src`,
    `src_len`, `dec`: `core.data.translation`); `spec.source_vocab`: the source vocabulary's size."""

    def build(cfg, spec: BatchSpec) -> Model:
        in_shape, output_dim, input_vocab = spec.input_shape, spec.output_dim, spec.source_vocab
        if not isinstance(in_shape, dict) or not {"src", "src_len", "dec"} <= set(in_shape) or input_vocab is None:
            raise ValueError(f"model.name: {cfg.name} translates sentence pairs (data.name: fra_eng); "
                             f"the data's examples have shape {in_shape}")
        translator = ENCODER_DECODERS[name](cfg, input_vocab, output_dim, in_shape["src"][0])
        net = as_layer(translator)
        return from_layer(net, in_shape)._replace(translator=translator)

    return build


def gan_model(gan, step_on: frozenset[str] = frozenset()) -> Model:
    """A GAN (`core.nn.gan`) as a model: `apply` generates from noise; its two parts train in
    turn (`updates`); each epoch's `snapshot` is what it generates from one fixed draw of noise."""
    return Model(gan.init, gan.apply, (gan.latent_dim,), step_on, updates=gan.updates, snapshot=gan_snapshot(gan))


# name -> build(model config, batch spec): every model is built the same way
MODELS: dict[str, Builder] = {
    "linear_regression": linear_regression,
    "softmax_regression": softmax_regression,
    "mlp": mlp,
    "lenet": lenet,
    **{name: image_model(builder) for name, builder in CNNS.items()},
    "vit": image_model(vit),
    "torchvision_resnet18": image_model(torchvision_resnet18),
    "rnn_lm": sequence_model(rnn_lm),
    **{name: encoder_decoder(name) for name in ENCODER_DECODERS},
    "gan": lambda cfg, spec: gan_model(gan_mlp(cfg, spec)),
    # its generator's transposed convolutions are XLA's, slow inside a scan on a CPU as LeNet's are (dcgan_cpu
    # 16.8 s/epoch per step against 46.0 in a scan: benchmarks/results/cpu-2core-x86_64-2026-12-04-chapters13-17.md)
    "dcgan": lambda cfg, spec: gan_model(dcgan(cfg, spec), frozenset({"cpu"})),
    **RECOMMENDERS,
    **DETECTORS,
    **SEGMENTERS,
    **EMBEDDERS,
    **TEXT_CLASSIFIERS,
    **NLI_MODELS,
    **BERT_MODELS,
}


# the models whose inputs are named arrays: encoder-decoders, the recommenders of (user, item) ids, skip-gram,
# inference's (premise, hypothesis) pairs and BERT's (tokens, segments, valid lengths)
NAMED_INPUTS = frozenset(ENCODER_DECODERS) | {"mf", "neumf", "caser", "skip_gram"} | set(NLI_MODELS) | set(BERT_MODELS)


def build_model(cfg, spec: BatchSpec) -> Model:
    """The model `cfg` (a model config) names, for batches as `spec` describes them.

    Raises:
        ValueError: a model of one input on named inputs (a translation's, a recommender's).
    """
    if isinstance(spec.input_shape, dict) and cfg.name not in NAMED_INPUTS:
        raise ValueError(f"model.name: {cfg.name} takes one input; the data's examples are named inputs "
                         f"({', '.join(spec.input_shape)}): use a model that reads them ({', '.join(sorted(NAMED_INPUTS))})")
    return MODELS[cfg.name](cfg, spec)
