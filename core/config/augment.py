"""`augment:`: the random changes an image data set's training batches get on the device (D2L 13.1)."""

from __future__ import annotations

from pydantic import Field, model_validator

from .section import Section


class AugmentConfig(Section):
    """Random changes to each training image, drawn on the device per step from the run's key
    (D2L 13.1); evaluation sees the images unchanged. Applied after `resize`, in this order: the
    random resized crop, the padded crop, the flips, then the colour changes (torchvision's
    `ColorJitter`: the switched-on changes in an order drawn per image). Boxes and masks move
    with their images (`core.data.pipeline`)."""

    flip: bool = Field(False, description="mirror left-right with probability 1/2")
    vertical_flip: bool = Field(False, description="mirror top-bottom with probability 1/2")
    crop_padding: int = Field(0, ge=0, description="pad with zeros by this many pixels, crop back at a random offset")
    resized_crop: bool = Field(False, description="crop a random window (crop_scale, crop_ratio) and resize it back to "
                               "the image's size, bilinear (torchvision's RandomResizedCrop)")
    crop_scale: tuple[float, float] = Field((0.1, 1.0), description="resized_crop: range of the window's area, as a "
                                            "fraction of the image's (the book's (0.1, 1); torchvision's default (0.08, 1))")
    crop_ratio: tuple[float, float] = Field((0.5, 2.0), description="resized_crop: range of the window's width / height, "
                                            "drawn uniformly in log ratio (the book's (0.5, 2); torchvision's (3/4, 4/3))")
    brightness: float = Field(0.0, ge=0, description="multiply by a factor drawn from [max(0, 1 - b), 1 + b], clip to [0, 1]")
    contrast: float = Field(0.0, ge=0, description="blend with the image's mean grey level by a factor drawn from "
                            "[max(0, 1 - c), 1 + c], clip to [0, 1]")
    saturation: float = Field(0.0, ge=0, description="blend with the image's grey version by a factor drawn from "
                              "[max(0, 1 - s), 1 + s], clip to [0, 1] (grey images: no change)")
    hue: float = Field(0.0, ge=0, le=0.5, description="turn every hue by a shift drawn from [-h, h] of the hue circle "
                       "(grey images: no change)")

    @model_validator(mode="after")
    def _ranges(self) -> AugmentConfig:
        for name in ("crop_scale", "crop_ratio"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"{name} must be (low, high) with 0 < low <= high, found ({low}, {high})")
        if self.crop_scale[1] > 1:
            raise ValueError(f"crop_scale's high end is a fraction of the image's area: at most 1, found {self.crop_scale[1]}")
        return self

    def active(self) -> bool:
        return (self.flip or self.vertical_flip or self.crop_padding > 0 or self.resized_crop
                or self.brightness > 0 or self.contrast > 0 or self.saturation > 0 or self.hue > 0)

    def jitters_colour(self) -> bool:
        """Whether a colour change other than brightness alone is on (`core.data.colour`)."""
        return self.contrast > 0 or self.saturation > 0 or self.hue > 0
