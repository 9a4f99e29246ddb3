"""The `image_folder` data section (D2L 13.13-13.14): labelled images in class folders."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from .augment import AugmentConfig
from .section import Section


class ImageFolderData(Section):
    """Images sorted into one folder per class, as torchvision's `ImageFolder` reads them
    (D2L 13.13-13.14): `dir/<train>/<class>/*` trains and `dir/<valid>/<class>/*` validates.
    The classes are the sorted folder names of the training folder; each image (PNG, JPEG, any
    size and mode) is converted to grey or RGB and resized to `resize` x `resize` on load
    (Pillow's bilinear filter). A file that is not an image is named and left out.

    Without `dir`, `make: fashion_mnist` writes such a folder once into the data cache from
    Fashion-MNIST's IDX files (the first `make_train` training and `make_valid` test images of
    each class) and reads it; with `dir` given, nothing is made."""

    task: ClassVar[str] = "supervised"  # `core.config.metrics`
    reports: ClassVar[tuple[str, ...]] = ()  # summary keys its runs add
    name: Literal["image_folder"] = "image_folder"
    dir: str | None = Field(None, description="the folder holding the train and valid folders")
    train: str = Field("train", min_length=1, description="the training folder inside dir")
    valid: str | None = Field("valid", min_length=1, description="the validation folder inside dir (null: none)")
    make: Literal["fashion_mnist"] | None = Field(None, description="without dir: write a folder of PNGs from this data set")
    make_train: int = Field(100, gt=0, description="make: training images per class")
    make_valid: int = Field(20, gt=0, description="make: validation images per class")
    resize: int = Field(32, gt=0, description="side of the square images, resized on load (bilinear)")
    channels: Literal[1, 3] = Field(1, description="1: grey, 3: RGB (every image is converted)")
    mean: tuple[float, ...] | None = Field(None, description="per channel: subtract after scaling to [0, 1] (D2L 13.13's Normalize)")
    std: tuple[float, ...] | None = Field(None, description="per channel: then divide by this")
    augment: AugmentConfig = AugmentConfig()
    batch_size: int = Field(64, gt=0)

    @model_validator(mode="after")
    def _normalisation(self) -> ImageFolderData:
        if (self.mean is None) != (self.std is None):
            raise ValueError("mean and std go together: give both or neither")
        for key in ("mean", "std"):
            values = getattr(self, key)
            if values is not None and len(values) != self.channels:
                raise ValueError(f"{key}: expected {self.channels} value(s), one per channel, found {len(values)}")
        if self.std is not None and any(s <= 0 for s in self.std):
            raise ValueError(f"std: every value must be above 0, found {list(self.std)}")
        clipping = [k for k in ("brightness", "contrast", "saturation", "hue") if getattr(self.augment, k, 0)]
        if self.mean is not None and clipping:
            raise ValueError(f"augment.{clipping[0]} works on images in [0, 1], which normalised images (mean, std) "
                             "leave; use one or the other")
        return self


IMAGE_FOLDER_DATA: tuple = (ImageFolderData,)
