"""Loaders of labelled images in class folders (D2L 13.13-13.14)."""

from __future__ import annotations

# data.name -> (load(cfg, seed) -> Dataset, whether the data depends on the seed)
IMAGE_FOLDER_SOURCES: dict = {}
