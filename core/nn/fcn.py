"""The fully convolutional network (D2L 13.11)."""

from __future__ import annotations

# model.name -> build(cfg, spec) -> Model
SEGMENTERS: dict = {}
