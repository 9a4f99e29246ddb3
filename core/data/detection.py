"""Loaders of object detection data (D2L 13.6): the banana set, generated or the book's zip."""

from __future__ import annotations

# data.name -> (load(cfg, seed) -> Dataset, whether the data depends on the seed)
DETECTION_SOURCES: dict = {}
