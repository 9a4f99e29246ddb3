"""The model section of torchvision's ResNet-18 (D2L 13.2), which loads the weights the book fine-tunes."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .section import Init, Section


class TorchvisionResNetModel(Section):
    """torchvision's `resnet18` layer for layer (`core.nn.torchvision_resnet`): conv 7x7/2 (no
    bias), BN, ReLU, max-pool 3/2; four stages of two BasicBlocks (64, 128, 256, 512 channels;
    a 1x1/2 conv and BN on the skip path where the shape changes); global average pooling; fc to
    one output per class. Its parameter paths are torchvision's module names (`fc/w` the head),
    so a state dict of torchvision's weights loads by name (`experiment.pretrained` of fine_tuning)."""

    name: Literal["torchvision_resnet18"] = "torchvision_resnet18"
    normalize: Literal["imagenet", "none"] = Field(
        "imagenet", description="imagenet: (x - mean) / std with ImageNet's statistics first, as torchvision's weights expect")
    init: Init = Field("xavier", description="of weights not loaded (the new fc: the book's xavier_uniform)")
    init_scale: float = Field(0.01, ge=0, description="stddev of the 'normal' initialisation")
    conv_impl: Literal["auto", "xla", "cpu", "onednn"] = Field("auto", description="convolution formulation (core/nn/conv.py)")
    batch_norm: Literal["scratch", "concise", "fused"] = Field("fused", description="the BN formulation (see resnet)")


TORCHVISION_MODELS = (TorchvisionResNetModel,)
