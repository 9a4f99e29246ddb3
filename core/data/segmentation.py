"""Loaders of semantic segmentation data (D2L 13.9): Pascal VOC 2012, or a generated set."""

from __future__ import annotations

# data.name -> (load(cfg, seed) -> Dataset, whether the data depends on the seed)
SEGMENTATION_SOURCES: dict = {}
