"""The data and model sections of object detection (D2L 13.6-13.7): the banana set and TinySSD."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from .augment import AugmentConfig
from .section import Init, Section

# the book's anchor sizes and ratios at each of TinySSD's five scales (D2L 13.7.1)
BOOK_SIZES = ((0.2, 0.272), (0.37, 0.447), (0.54, 0.619), (0.71, 0.79), (0.88, 0.961))
BOOK_RATIOS = ((1.0, 2.0, 0.5),) * 5

Positive = Annotated[float, Field(gt=0)]
Width = Annotated[int, Field(gt=0)]


class BananasData(Section):
    """The banana detection set (D2L 13.6): 256x256 images, one banana each, its box as corner
    fractions. `source: real` reads d2l's banana-detection.zip (1,000 training and 100
    validation images, rendered by the book's authors); `source: generated` writes a set in
    the same format, once, into the data cache: a drawn banana pasted at a random position and
    scale onto crops of photos that ship with matplotlib (`core.data.bananas`). Images are
    resized to `size` x `size` on load; boxes are fractions, so they do not change."""

    task: ClassVar[str] = "detection"  # `core.config.metrics`
    reports: ClassVar[tuple[str, ...]] = ()
    name: Literal["bananas"] = "bananas"
    source: Literal["real", "generated"] = Field("real", description="d2l's banana-detection.zip, or a set drawn in its format")
    size: int = Field(256, gt=0, description="side of the square images the model sees (the book's 256)")
    num_train: int = Field(1000, gt=0, description="generated: training images (the real set's 1,000)")
    num_val: int = Field(100, gt=0, description="generated: validation images (the real set's 100)")
    generator_seed: int = Field(0, ge=0, description="generated: the draw of the set (fixed, so runs share one copy)")
    augment: AugmentConfig = AugmentConfig()
    dir: str | None = Field(None, description="a folder holding banana-detection/ or banana-detection.zip")
    batch_size: int = Field(32, gt=0)


class TinySSDModel(Section):
    """TinySSD (D2L 13.7.1): a base network of down-sampling blocks (two conv 3x3 + batch norm +
    ReLU, then max-pool 2) of `base_widths`, one down-sampling block per width in `widths`,
    then a global max pool; at each of these scales a 3x3 convolution predicts every anchor's
    class logits (num_classes + 1, background first) and another its four box offsets. The
    anchors of scale i have `sizes[i]` and `ratios[i]` (`core.nn.boxes.multibox_prior`)."""

    name: Literal["tiny_ssd"] = "tiny_ssd"
    num_classes: int = Field(1, gt=0, description="object classes, background not counted")
    base_widths: tuple[Width, ...] = Field((16, 32, 64), min_length=1, description="the base network's blocks")
    widths: tuple[Width, ...] = Field((128, 128, 128), description="the down-sampling blocks after the base network")
    sizes: tuple[tuple[Positive, ...], ...] = BOOK_SIZES
    ratios: tuple[tuple[Positive, ...], ...] = BOOK_RATIOS
    batch_norm: Literal["scratch", "concise", "fused"] = Field("fused", description="the batch norm's formulation (core/nn/layers.py)")
    init: Init = "xavier"
    init_scale: float = Field(0.01, ge=0, description="stddev of the 'normal' initialisation")
    conv_impl: Literal["auto", "xla", "cpu", "onednn"] = Field(
        "auto", description="convolution formulation (core/nn/conv.py); auto: the fastest measured for the backend")

    @model_validator(mode="after")
    def _one_anchor_set_per_scale(self) -> TinySSDModel:
        scales = len(self.widths) + 2  # the base network's output, each block's, the global pool's
        for key, value in (("sizes", self.sizes), ("ratios", self.ratios)):
            if len(value) != scales:
                raise ValueError(f"{key}: {len(value)} lists for {scales} scales (the base network, "
                                 f"{len(self.widths)} blocks and the global max pool); give one per scale")
            if any(not v for v in value):
                raise ValueError(f"{key}: each scale needs at least one value")
        return self


DETECTION_DATA: tuple = (BananasData,)

DETECTION_MODELS: tuple = (TinySSDModel,)
