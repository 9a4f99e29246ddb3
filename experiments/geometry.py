"""The geometry of object detection, exact (D2L 13.3-13.5, 13.8, 13.10): boxes, anchors, IoU, labelling, NMS, RoI pooling, transposed convolution."""

from __future__ import annotations

# experiment.name -> (run(cfg, run_dir, source) -> summary, options Section, summary numbers a book result may name)
EXPERIMENTS: dict = {}
