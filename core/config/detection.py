"""The data and model sections of object detection (D2L 13.6-13.7): the banana set and TinySSD."""

from __future__ import annotations

DETECTION_DATA: tuple = ()

DETECTION_MODELS: tuple = ()
