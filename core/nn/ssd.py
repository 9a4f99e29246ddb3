"""TinySSD (D2L 13.7): multiscale anchors, class and box predictions.

Five scales: the base network's feature map, each down-sampling block's, and the global max
pool's 1x1 map. At each, a 3x3 convolution predicts, for every pixel and each of its anchors,
num_classes + 1 class logits (background first) and another four box offsets. The book's
`flatten_pred` moves channels last before flattening, so its predictions run pixel by pixel
(row-major), each pixel's anchors consecutive, each anchor's classes consecutive; here the
maps are channels-last already, so a reshape of (B, h, w, A * k) to (B, h * w * A, k) gives the
same order, the order of `multibox_prior`'s anchors. For the book's 256x256 input: 32x32,
16x16, 8x8, 4x4 and 1x1 maps with 4 anchors a pixel, 5,444 anchors.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from . import layers as L
from .boxes import multibox_detection, multibox_prior
from .cnn import Parts
from .combinators import composite, serial
from .model import Model, from_layer


def anchors_per_pixel(sizes, ratios) -> int:
    return len(sizes) + len(ratios) - 1


def down_sample_blk(p: Parts, channels: int) -> L.Layer:
    """Two (conv 3x3 p1, batch norm, ReLU), then max-pool 2: halves height and width (D2L 13.7.1)."""
    return serial(p.conv(channels, 3, 1), p.bn(), p.relu(), p.conv(channels, 3, 1), p.bn(), p.relu(),
                  L.pool2d("max", 2), kind="down_sample")


def global_max_pool() -> L.Layer:
    """(batch, H, W, C) -> (batch, 1, 1, C), the maximum over all positions (PyTorch's
    `AdaptiveMaxPool2d((1, 1))`)."""
    return L.stateless("global_max_pool", lambda key, s: ((1, 1, s[-1]), {}),
                       lambda params, x: jnp.max(x, axis=(1, 2), keepdims=True))


def tiny_ssd_layer(cfg) -> L.Layer:
    """TinySSD as one layer: images (batch, H, W, C) -> {"cls": (batch, N, num_classes + 1)
    logits, "bbox": (batch, N, 4) offsets, "anchors": (batch, N, 4) corners} (D2L 13.7.1). The
    anchors are the same for every image; they carry the batch axis, as every output does."""
    p, classes = Parts(cfg), cfg.num_classes + 1
    blocks = [serial(*(down_sample_blk(p, w) for w in cfg.base_widths), kind="base_net"),
              *(down_sample_blk(p, w) for w in cfg.widths), global_max_pool()]
    children: dict[str, L.Layer] = {}
    for i, (blk, sizes, ratios) in enumerate(zip(blocks, cfg.sizes, cfg.ratios)):
        a = anchors_per_pixel(sizes, ratios)
        children |= {f"blk{i}": blk, f"cls{i}": p.conv(a * classes, 3, 1), f"bbox{i}": p.conv(a * 4, 3, 1)}
    scales = list(zip(cfg.sizes, cfg.ratios))

    def forward(run, x, shape_mode):
        cls, bbox, anchors = [], [], []
        for i, (sizes, ratios) in enumerate(scales):
            x = run(f"blk{i}", x)
            c, b = run(f"cls{i}", x), run(f"bbox{i}", x)
            h, w = (x[0], x[1]) if shape_mode else x.shape[1:3]
            n = h * w * anchors_per_pixel(sizes, ratios)
            if shape_mode:
                cls.append(n)
                continue
            cls.append(c.reshape(c.shape[0], n, classes))
            bbox.append(b.reshape(b.shape[0], n, 4))
            anchors.append(multibox_prior(h, w, sizes, ratios))
        if shape_mode:
            return {"cls": (sum(cls), classes), "bbox": (sum(cls), 4), "anchors": (sum(cls), 4)}
        cls, bbox = jnp.concatenate(cls, axis=1), jnp.concatenate(bbox, axis=1)
        return {"cls": cls, "bbox": bbox, "anchors": jnp.broadcast_to(jnp.concatenate(anchors), bbox.shape)}

    return composite("tiny_ssd", children, forward)


def tiny_ssd(cfg, spec) -> Model:
    """The `tiny_ssd` model for images of `spec.input_shape` (H, W, C).

    Raises:
        ValueError: inputs that are not images, or a data set of another number of classes.
    """
    in_shape = spec.input_shape
    if isinstance(in_shape, dict) or len(in_shape) != 3:
        raise ValueError(f"model.name: tiny_ssd takes images (H, W, C); the data's examples have shape {in_shape}")
    if spec.num_classes is not None and spec.num_classes != cfg.num_classes:
        raise ValueError(f"model.num_classes: {cfg.num_classes}, but the data has {spec.num_classes} object classes")
    smallest = 2 ** (len(cfg.base_widths) + len(cfg.widths))
    if min(in_shape[:2]) < smallest:
        raise ValueError(f"model.tiny_ssd: images of {in_shape[0]}x{in_shape[1]} are smaller than the {smallest} pixels "
                         f"its {len(cfg.base_widths) + len(cfg.widths)} halvings need (data.size)")
    return from_layer(tiny_ssd_layer(cfg), tuple(in_shape))


def detect(out: dict[str, Any], nms_threshold: float = 0.5, pos_threshold: float = 0.009) -> jax.Array:
    """A batch's detections (D2L 13.7.3): the softmax of the class logits, then
    `multibox_detection`. Returns (B, N, 6) rows [class id or -1, score, x1, y1, x2, y2], the
    kept boxes first by descending score. Jittable."""
    probs = jnp.transpose(jax.nn.softmax(out["cls"], axis=-1), (0, 2, 1))
    return multibox_detection(probs, out["bbox"], out["anchors"][0], nms_threshold, pos_threshold)


DETECTORS: dict = {"tiny_ssd": tiny_ssd}  # model.name -> build(cfg, spec) -> Model
