"""The fully convolutional network (D2L 13.11).

A ResNet body without its global pooling and dense layer turns a (H, W, 3) image into
(H/f, W/f, C) features; a 1x1 convolution gives one channel per class, and a transposed
convolution (kernel 2f, stride f, padding f/2) brings them back to (H, W, classes): a class
score for every pixel. The transposed convolution starts as bilinear interpolation
(`bilinear_kernel`), so an untrained head already upsamples smoothly (D2L 13.11.2).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ..data.spec import BatchSpec
from . import layers as L
from .cnn import Parts, resnet_body
from .combinators import serial
from .init import Initializer
from .model import Model, from_layer


def bilinear_kernel(in_channels: int, out_channels: int, kernel_size: int) -> np.ndarray:
    """The weights by which a transposed convolution interpolates bilinearly (D2L 13.11.2),
    in `conv2d_transpose`'s layout (kernel, kernel, in_channels, out_channels): channel i maps
    to channel i alone, through the tent filter (1 - |u - c| / s)(1 - |v - c| / s) with
    s = ceil(kernel / 2) and its centre c = s - 1 (odd kernel) or s - 0.5 (even).

    Raises:
        ValueError: in_channels != out_channels (each channel is interpolated on its own).
    """
    if in_channels != out_channels:
        raise ValueError(f"bilinear_kernel maps each channel to itself: in_channels ({in_channels}) must equal "
                         f"out_channels ({out_channels})")
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = np.arange(kernel_size, dtype=np.float64)
    tent = 1 - np.abs(og - center) / factor
    filt = (tent[:, None] * tent[None, :]).astype(np.float32)
    weight = np.zeros((kernel_size, kernel_size, in_channels, out_channels), np.float32)
    weight[:, :, np.arange(in_channels), np.arange(out_channels)] = filt[:, :, None]
    return weight


def bilinear_init() -> Initializer:
    """An initialiser giving `bilinear_kernel` for a (kernel, kernel, C, C) shape; the key is unused."""

    def init(key, shape, dtype=jnp.float32):
        kh, kw, c_in, c_out = shape
        if kh != kw:
            raise ValueError(f"bilinear initialisation needs a square kernel, got {kh}x{kw}")
        return jnp.asarray(bilinear_kernel(c_in, c_out, kh), dtype)

    return init


def bilinear_upsampler(channels: int) -> L.Layer:
    """Transposed convolution of kernel 4, stride 2, padding 1 with the bilinear kernel and no
    bias: (batch, H, W, C) -> (batch, 2H, 2W, C), the book's image-doubling demo (D2L 13.11.2)."""
    return L.conv2d_transpose(channels, 4, 2, 1, w_init=bilinear_init(), use_bias=False)


def fcn(cfg, num_classes: int) -> L.Layer:
    """The FCN of D2L 13.11 for `cfg` (a `core.config.segmentation.FCNModel`): body, 1x1 conv to
    `num_classes` (`conv1`), transposed conv of kernel 2f, stride f, padding f/2 (`convT0`):
    (batch, H, W, 3) -> (batch, H, W, num_classes) for H and W multiples of f."""
    p = Parts(cfg)
    kernel, stride, padding = cfg.upsampling()
    w_init = bilinear_init() if cfg.upsample_init == "bilinear" else p.w_init
    head = [p.conv(num_classes, 1), L.conv2d_transpose(num_classes, kernel, stride, padding, w_init=w_init)]
    return serial(*resnet_body(cfg), *head)


def fcn_model(cfg, spec: BatchSpec) -> Model:
    """The FCN for images of `spec.input_shape` (height, width, channels), one output channel
    per class of the data (`spec.num_classes`).

    Raises:
        ValueError: inputs that are not images, or whose sides are not multiples of f.
    """
    in_shape = spec.input_shape
    if len(in_shape) != 3 or spec.num_classes is None:
        raise ValueError(f"model.name: fcn labels the pixels of images (height, width, channels) with classes; "
                         f"the data's examples have shape {tuple(in_shape)}")
    f = cfg.downsampling()
    if in_shape[0] % f or in_shape[1] % f:
        raise ValueError(f"model.name: fcn's body shrinks its input {f}-fold (stem {cfg.stem}, {len(cfg.stages)} stages), "
                         f"so the image's sides must be multiples of {f}; they are {in_shape[0]} x {in_shape[1]} "
                         "(data.crop)")
    return from_layer(fcn(cfg, spec.num_classes), tuple(in_shape))


# model.name -> build(cfg, spec) -> Model
SEGMENTERS: dict = {"fcn": fcn_model}
