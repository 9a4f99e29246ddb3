"""`augment:`: the random changes an image data set's training batches get on the device (D2L 13.1)."""

from __future__ import annotations

from pydantic import Field

from .section import Section


class AugmentConfig(Section):
    """Random changes to each training image, drawn on the device per step from the run's key
    (D2L 14.1); evaluation sees the images unchanged. Applied after `resize`."""

    flip: bool = Field(False, description="mirror left-right with probability 1/2")
    crop_padding: int = Field(0, ge=0, description="pad with zeros by this many pixels, crop back at a random offset")
    brightness: float = Field(0.0, ge=0, lt=1, description="multiply by a factor drawn from [1 - b, 1 + b], clip to [0, 1]")

    def active(self) -> bool:
        return self.flip or self.crop_padding > 0 or self.brightness > 0
