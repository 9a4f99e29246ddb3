"""The modern convolutional networks of D2L chapter 8 (7 in the 0.16 edition), built from
layers and combinators; NHWC throughout, one output per class.

Each builder takes its config section (`core.config.models`) and returns a `Layer`; every width
and depth the book fixes is a config field, so the CPU-sized variants are configs. Parameter
counts at the book's settings (1-channel input, 10 classes), checked in `tests/test_cnn.py`
against counts written out by hand: BN-LeNet 44,878; AlexNet 46,764,746; VGG-11/4 43,093,322;
NiN 1,992,166; GoogLeNet 5,977,530; ResNet-18 11,178,378; DenseNet 758,226.
"""

from __future__ import annotations

from typing import Callable

from . import layers as L
from .combinators import parallel, residual, serial
from .conv import resolve_conv_impl
from .init import WEIGHT_INITS


class Parts:
    """Layer factories with a config's initialiser, convolution formulation and batch norm."""

    def __init__(self, cfg):
        self.w_init = WEIGHT_INITS[cfg.init](cfg.init_scale)
        self.impl = resolve_conv_impl(cfg.conv_impl)
        self.bn_kind = getattr(cfg, "batch_norm", "concise")

    def conv(self, features: int, kernel, padding=0, stride=1) -> L.Layer:
        return L.conv2d(features, kernel, padding, stride, w_init=self.w_init, impl=self.impl)

    def dense(self, features: int) -> L.Layer:
        return L.dense(features, self.w_init)

    def bn(self) -> L.Layer:
        return L.BATCH_NORMS[self.bn_kind]()

    def relu(self) -> L.Layer:
        return L.activation("relu")


def _scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def bn_lenet(cfg, output_dim: int) -> L.Layer:
    """D2L 8.5: LeNet with batch norm before each hidden activation."""
    p, act = Parts(cfg), lambda: L.activation(cfg.activation)
    return serial(
        p.conv(6, 5, cfg.padding), p.bn(), act(), L.pool2d("avg", 2),
        p.conv(16, 5, cfg.padding), p.bn(), act(), L.pool2d("avg", 2),
        L.flatten(),
        p.dense(120), p.bn(), act(),
        p.dense(84), p.bn(), act(),
        p.dense(output_dim),
    )  # fmt: skip


def _classifier_head(p: Parts, hidden: int, drop_rate: float, output_dim: int) -> list[L.Layer]:
    """Flatten, two dense layers of `hidden` with ReLU and dropout, dense out (AlexNet, VGG)."""
    dropout = (lambda: [L.dropout(drop_rate)]) if drop_rate > 0 else (lambda: [])
    return [L.flatten(), p.dense(hidden), p.relu(), *dropout(), p.dense(hidden), p.relu(), *dropout(), p.dense(output_dim)]


def alexnet(cfg, output_dim: int) -> L.Layer:
    """D2L 8.1."""
    p, c = Parts(cfg), lambda n: _scaled(n, cfg.width)
    return serial(
        p.conv(c(96), cfg.stem_kernel, cfg.stem_padding, cfg.stem_stride), p.relu(), L.pool2d("max", 3, 2),
        p.conv(c(256), 5, 2), p.relu(), L.pool2d("max", 3, 2),
        p.conv(c(384), 3, 1), p.relu(), p.conv(c(384), 3, 1), p.relu(), p.conv(c(256), 3, 1), p.relu(),
        L.pool2d("max", 3, 2),
        *_classifier_head(p, cfg.hidden, cfg.dropout, output_dim),
    )  # fmt: skip


def vgg_block(p: Parts, convs: int, channels: int) -> L.Layer:
    """`convs` x (conv 3x3 p1, ReLU), then max-pool 2/2 (D2L 8.2.1)."""
    layers = [layer for _ in range(convs) for layer in (p.conv(channels, 3, 1), p.relu())]
    return serial(*layers, L.pool2d("max", 2), kind="vgg_block")


def vgg(cfg, output_dim: int) -> L.Layer:
    """D2L 8.2."""
    p = Parts(cfg)
    return serial(*(vgg_block(p, n, c) for n, c in cfg.blocks), *_classifier_head(p, cfg.hidden, cfg.dropout, output_dim))


def nin_block(p: Parts, channels: int, kernel: int, stride: int, padding: int) -> L.Layer:
    """conv, ReLU, then two 1x1 convs with ReLU: a per-pixel MLP across channels (D2L 8.3.1)."""
    return serial(p.conv(channels, kernel, padding, stride), p.relu(), p.conv(channels, 1), p.relu(),
                  p.conv(channels, 1), p.relu(), kind="nin_block")


def nin(cfg, output_dim: int) -> L.Layer:
    """D2L 8.3."""
    p, c = Parts(cfg), lambda n: _scaled(n, cfg.width)
    return serial(
        nin_block(p, c(96), cfg.stem_kernel, cfg.stem_stride, 0), L.pool2d("max", 3, 2),
        nin_block(p, c(256), 5, 1, 2), L.pool2d("max", 3, 2),
        nin_block(p, c(384), 3, 1, 1), L.pool2d("max", 3, 2),
        *([L.dropout(cfg.dropout)] if cfg.dropout > 0 else []),
        nin_block(p, output_dim, 3, 1, 1),
        L.global_avg_pool(),
    )  # fmt: skip


def inception(p: Parts, c1: int, c2: tuple[int, int], c3: tuple[int, int], c4: int) -> L.Layer:
    """Four branches concatenated on channels: 1x1; 1x1 then 3x3; 1x1 then 5x5; max-pool 3/1
    then 1x1; each convolution followed by ReLU (D2L 8.4.1)."""
    return parallel(
        serial(p.conv(c1, 1), p.relu()),
        serial(p.conv(c2[0], 1), p.relu(), p.conv(c2[1], 3, 1), p.relu()),
        serial(p.conv(c3[0], 1), p.relu(), p.conv(c3[1], 5, 2), p.relu()),
        serial(L.pool2d("max", 3, 1, 1), p.conv(c4, 1), p.relu()),
        kind="inception",
    )


# (c1, (c2a, c2b), (c3a, c3b), c4) of the Inception blocks of stages b3, b4, b5 (D2L 8.4.2)
GOOGLENET_STAGES = (
    ((64, (96, 128), (16, 32), 32), (128, (128, 192), (32, 96), 64)),
    ((192, (96, 208), (16, 48), 64), (160, (112, 224), (24, 64), 64), (128, (128, 256), (24, 64), 64),
     (112, (144, 288), (32, 64), 64), (256, (160, 320), (32, 128), 128)),
    ((256, (160, 320), (32, 128), 128), (384, (192, 384), (48, 128), 128)),
)


def googlenet(cfg, output_dim: int) -> L.Layer:
    """D2L 8.4."""
    p, c = Parts(cfg), lambda n: _scaled(n, cfg.width)
    pool = lambda: L.pool2d("max", 3, 2, 1)  # noqa: E731
    if cfg.stem == "imagenet":
        stem = [p.conv(c(64), 7, 3, 2), p.relu(), pool()]
    else:
        stem = [p.conv(c(64), 3, 1), p.relu()] + ([L.pool2d("max", 2)] if cfg.stem == "small_pooled" else [])
    b2 = [p.conv(c(64), 1), p.relu(), p.conv(c(192), 3, 1), p.relu(), pool()]
    stages = []
    for i, blocks in enumerate(GOOGLENET_STAGES):
        stages += [inception(p, c(c1), (c(c2a), c(c2b)), (c(c3a), c(c3b)), c(c4)) for c1, (c2a, c2b), (c3a, c3b), c4 in blocks]
        stages.append(pool() if i < 2 else L.global_avg_pool())
    return serial(*stem, *b2, *stages, p.dense(output_dim))


def resnet_stem(p: Parts, kind: str, channels: int) -> list[L.Layer]:
    """The first layers of a ResNet or DenseNet (and of an FCN's body): 7x7/2 conv, batch norm,
    ReLU and 3x3/2 max pool for ImageNet-sized images, else a 3x3 conv (and 2x2 pool)."""
    if kind == "imagenet":
        return [p.conv(channels, 7, 3, 2), p.bn(), p.relu(), L.pool2d("max", 3, 2, 1)]
    return [p.conv(channels, 3, 1), p.bn(), p.relu()] + ([L.pool2d("max", 2)] if kind == "small_pooled" else [])


def residual_block(p: Parts, channels: int, stride: int = 1, project: bool = False) -> L.Layer:
    """conv 3x3, BN, ReLU, conv 3x3, BN, plus the input (through a 1x1 conv, no BN, when the
    shape changes), then ReLU (D2L 8.6.2)."""
    body = serial(p.conv(channels, 3, 1, stride), p.bn(), p.relu(), p.conv(channels, 3, 1), p.bn())
    projection = p.conv(channels, 1, 0, stride) if project else None
    return serial(residual(body, projection), p.relu(), kind="resblock")


def resnet_body(cfg) -> list[L.Layer]:
    """A ResNet's stem and residual blocks, without its global pooling and dense layer (the body
    an FCN keeps, D2L 13.11): the parameter paths (`conv0`, `bn0`, `resblock0`...) are the same
    in both, so a trained ResNet's body copies into an FCN by `init_from`."""
    p = Parts(cfg)
    blocks = []
    for i, (channels, n) in enumerate(cfg.stages):
        for j in range(n):
            first_of_later_stage = j == 0 and i > 0
            blocks.append(residual_block(p, channels, 2 if first_of_later_stage else 1, project=first_of_later_stage))
    return [*resnet_stem(p, cfg.stem, cfg.stages[0][0]), *blocks]


def resnet(cfg, output_dim: int) -> L.Layer:
    """D2L 8.6; the default stages give ResNet-18."""
    return serial(*resnet_body(cfg), L.global_avg_pool(), Parts(cfg).dense(output_dim))


def dense_block(p: Parts, convs: int, growth_rate: int) -> L.Layer:
    """`convs` times: BN, ReLU, conv 3x3 p1 of `growth_rate` channels, concatenated with its
    input, so each conv block adds `growth_rate` channels (D2L 8.7.2)."""
    identity = L.elementwise("identity", lambda x: x)
    conv_block = lambda: serial(p.bn(), p.relu(), p.conv(growth_rate, 3, 1), kind="conv_block")  # noqa: E731
    return serial(*(parallel(identity, conv_block(), kind="concat") for _ in range(convs)), kind="dense_block")


def transition(p: Parts, channels: int) -> L.Layer:
    """BN, ReLU, 1x1 conv to `channels`, avg-pool 2/2 (D2L 8.7.3)."""
    return serial(p.bn(), p.relu(), p.conv(channels, 1), L.pool2d("avg", 2), kind="transition")


def densenet(cfg, output_dim: int) -> L.Layer:
    """D2L 8.7."""
    p = Parts(cfg)
    layers, channels = resnet_stem(p, cfg.stem, cfg.stem_channels), cfg.stem_channels
    for i, convs in enumerate(cfg.blocks):
        layers.append(dense_block(p, convs, cfg.growth_rate))
        channels += convs * cfg.growth_rate
        if i < len(cfg.blocks) - 1:
            channels //= 2
            layers.append(transition(p, channels))
    return serial(*layers, p.bn(), p.relu(), L.global_avg_pool(), p.dense(output_dim))


CNNS: dict[str, Callable] = {
    "bn_lenet": bn_lenet,
    "alexnet": alexnet,
    "vgg": vgg,
    "nin": nin,
    "googlenet": googlenet,
    "resnet": resnet,
    "densenet": densenet,
}
