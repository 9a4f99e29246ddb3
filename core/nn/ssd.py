"""TinySSD (D2L 13.7): multiscale anchors, class and box predictions."""

from __future__ import annotations

# model.name -> build(cfg, spec) -> Model
DETECTORS: dict = {}
