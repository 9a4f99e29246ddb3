"""The geometry of object detection, exact (D2L 13.3-13.5, 13.8, 13.10): boxes, anchors, IoU,
labelling, NMS, RoI pooling, transposed convolution.

Each experiment runs the book's own example through the project's functions, compares the result
with what the book prints, and reports the largest difference as `max_difference` (0 when exact;
within half a unit of the last printed digit when it agrees with everything printed), the named
checks beside it, and pictures. `geometry_anchors` holds 13.3-13.5, `geometry_pooling` 13.8 and
13.10, `geometry_book` the comparison and drawing they share.
"""

from __future__ import annotations

from . import geometry_anchors as anchors
from . import geometry_pooling as pooling

# experiment.name -> (run(cfg, run_dir, source) -> summary, options Section, summary numbers a book result may name)
EXPERIMENTS: dict = {
    "bounding_boxes": (anchors.run_bounding_boxes, anchors.GeometryImageOptions,
                       ("max_difference", "difference/centers", "difference/round_trip")),
    "anchor_boxes": (anchors.run_anchor_boxes, anchors.GeometryImageOptions,
                     ("max_difference", "difference/anchor_count", "difference/anchor_250_250", "difference/labels",
                      "difference/mask", "difference/offsets", "difference/nms")),
    "multiscale_anchors": (anchors.run_multiscale_anchors, anchors.GeometryImageOptions, ("max_difference",)),
    "roi_pooling": (pooling.run_roi_pooling, pooling.NoOptions, ("max_difference", "difference/output")),
    "transposed_conv": (pooling.run_transposed_conv, pooling.NoOptions,
                        ("max_difference", "difference/trans_conv", "difference/padding_1", "difference/stride_2",
                         "difference/kernel2matrix", "difference/matmul_conv", "difference/matmul_trans_conv")),
}
