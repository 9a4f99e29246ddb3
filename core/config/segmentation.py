"""The data and model sections of semantic segmentation (D2L 13.9-13.11): VOC and FCN.

`data: {name: voc}` reads Pascal VOC 2012 (`source: voc2012`), or a generated set written in
VOC's layout (`source: generated`: shapes of a few classes on a textured canvas), through the
same reader. `model: {name: fcn}` is the book's fully convolutional network.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from .section import Init, Section

Pair = tuple[Annotated[int, Field(gt=0)], Annotated[int, Field(gt=0)]]


class GeneratedVOC(Section):
    """A stand-in for VOC (`core.data.segmentation.write_generated_voc`): each image a canvas of
    smooth noise with 1 to `max_objects` shapes composited on it, each shape's class fixing its
    form (rectangle, ellipse, triangle) and its colour (with jitter); the labels are the classes
    of the pixels each shape covers, drawn in VOC's colour map. Sizes are drawn per image from
    [min_size, max_size], so that images smaller than the crop are left out as VOC's are."""

    num_train: int = Field(512, gt=0, description="images listed in train.txt")
    num_val: int = Field(128, gt=0, description="images listed in val.txt")
    num_classes: int = Field(6, ge=2, le=21, description="classes, the background (0) included: VOC's first ones")
    min_size: Pair = Field((60, 92), description="(height, width) an image has at least")
    max_size: Pair = Field((80, 120), description="(height, width) an image has at most")
    max_objects: int = Field(3, gt=0, description="shapes on an image at most")
    seed: int = Field(0, ge=0, description="the draw of the images: fixed, so that every run reads the same set")

    @model_validator(mode="after")
    def _sizes(self) -> GeneratedVOC:
        if any(lo > hi for lo, hi in zip(self.min_size, self.max_size)):
            raise ValueError(f"min_size {list(self.min_size)} exceeds max_size {list(self.max_size)}")
        return self


class VOCData(Section):
    """Semantic segmentation data in Pascal VOC 2012's layout (D2L 13.9): each image of the
    train and val lists at least `crop` (height, width) in size, cut with its labels at one
    random window drawn with the run's seed (the book draws a new window each time an image is
    read); smaller images are left out (the book's filter: 1,114 train and 1,078 val images of
    VOC at 320 x 480). Images are RGB in [0, 1] (the book also standardises them with ImageNet's
    mean and std); labels are per-pixel classes, VOC colours outside the colour map (the object
    borders) counting as background as in the book."""

    task: ClassVar[str] = "supervised"  # `core.config.metrics`: the loss decides the metrics
    reports: ClassVar[tuple[str, ...]] = ()
    name: Literal["voc"] = "voc"
    source: Literal["voc2012", "generated"] = Field("voc2012", description="the real VOC 2012, or a generated set in its layout")
    generated: GeneratedVOC = GeneratedVOC()
    crop: Pair = Field((320, 480), description="(height, width) of the window cut from each image")
    dir: str | None = Field(None, description="a directory holding VOCdevkit/VOC2012, or d2l's archive of it "
                            "(VOCtrainval_11-May-2012.tar)")
    num_train: int | None = Field(None, gt=0, description="use the first N training images that fit the crop")
    num_val: int | None = Field(None, gt=0, description="use the first N validation images that fit the crop")
    batch_size: int = Field(32, gt=0)

    @model_validator(mode="after")
    def _crop_fits(self) -> VOCData:
        if self.source == "generated" and any(c > m for c, m in zip(self.crop, self.generated.max_size)):
            raise ValueError(f"crop {list(self.crop)} is larger than every generated image "
                             f"(generated.max_size {list(self.generated.max_size)})")
        return self


class FCNModel(Section):
    """A fully convolutional network (D2L 13.11): a ResNet body (`core.nn.cnn`'s stem and
    residual blocks; no global pooling, no dense layer), a 1x1 convolution to one channel per
    class, and a transposed convolution back to the input's size. The body shrinks its input by
    f = (4 for the imagenet stem, 2 small_pooled, 1 small) x 2^(stages - 1); the transposed
    convolution has kernel 2f, stride f, padding f/2 (the book's ResNet-18: f = 32, kernel 64,
    stride 32, padding 16), initialised by bilinear interpolation (the book's bilinear_kernel).
    Input sides must be multiples of f for the output to match the input's size.

    The body's parameter paths are a `resnet` model's (`conv0`, `bn0`, `resblock0`...), so a
    trained ResNet's body can be copied in: `init_from: {run: <its run>, exclude: [conv1/*, convT0/*]}`."""

    name: Literal["fcn"] = "fcn"
    stages: tuple[Pair, ...] = Field(((64, 2), (128, 2), (256, 2), (512, 2)), min_length=1,
                                     description="(channels, blocks) per stage of the body (ResNet-18's)")
    stem: Literal["imagenet", "small", "small_pooled"] = Field(
        "imagenet", description="imagenet: conv 7x7/2 p3, BN, ReLU, max-pool 3/2 p1 (the book's); small: conv 3x3 p1, BN, "
        "ReLU; small_pooled: small, then max-pool 2/2")
    batch_norm: Literal["scratch", "concise", "fused"] = Field("fused", description="the body's batch norm (core/nn/layers.py)")
    upsample_init: Literal["bilinear", "xavier"] = Field("bilinear", description="the transposed convolution's initial kernel")
    init: Init = "xavier"
    init_scale: float = Field(0.01, ge=0, description="stddev of the 'normal' initialisation")
    conv_impl: Literal["auto", "xla", "cpu", "onednn"] = Field(
        "auto", description="convolution formulation (core/nn/conv.py); auto: the fastest measured for the backend")

    def downsampling(self) -> int:
        """f: how many input pixels one of the body's output pixels spans along each axis."""
        return {"imagenet": 4, "small_pooled": 2, "small": 1}[self.stem] * 2 ** (len(self.stages) - 1)

    def upsampling(self) -> tuple[int, int, int]:
        """The transposed convolution's (kernel, stride, padding): (2f, f, f/2); for a body
        that keeps the size (f = 1), a 3x3 one of stride 1 and padding 1."""
        f = self.downsampling()
        return (2 * f, f, f // 2) if f > 1 else (3, 1, 1)


SEGMENTATION_DATA: tuple = (VOCData,)

SEGMENTATION_MODELS: tuple = (FCNModel,)
