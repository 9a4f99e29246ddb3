"""The data and model sections of semantic segmentation (D2L 13.9-13.11): VOC and FCN."""

from __future__ import annotations

SEGMENTATION_DATA: tuple = ()

SEGMENTATION_MODELS: tuple = ()
