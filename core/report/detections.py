"""A detector's boxes as a picture (D2L 13.7.3's `display`): each image with its detections
scored above a threshold, labelled by score, and its true boxes."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .plots import write_figure

PREDICTED, TRUE = "white", "lime"


def shown_detections(detections: np.ndarray, threshold: float) -> np.ndarray:
    """The rows of one image's detections (N, 6) [class, score, x1, y1, x2, y2] that are kept
    (class not -1) and score at least `threshold`, as the book's `display` picks them."""
    detections = np.asarray(detections)
    return detections[(detections[:, 0] >= 0) & (detections[:, 1] >= threshold)]


def _draw_box(ax, box, w: int, h: int, colour: str, label: str | None = None) -> None:
    from matplotlib.patches import Rectangle

    x1, y1, x2, y2 = box[0] * w, box[1] * h, box[2] * w, box[3] * h
    ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=1.5))
    if label:
        ax.text(x1, y1, label, fontsize=6, color="black", va="bottom", bbox={"facecolor": colour, "pad": 1, "lw": 0})


def plot_detections(path: str | Path, images, detections, boxes, classes, threshold: float, title: str = "") -> None:
    """A grid of images (n, H, W, 3) in [0, 1], each with its detections (n, N, 6) scored at
    least `threshold` (white, labelled by score) and its true boxes (n, M, 4) corner fractions
    whose class (n, M) is not -1 (green); written as a PNG atomically.

    Raises:
        ValueError: arrays that disagree on the number of images.
    """
    from matplotlib.figure import Figure

    images, detections, boxes, classes = (np.asarray(a) for a in (images, detections, boxes, classes))
    n = len(images)
    if not (len(detections) == len(boxes) == len(classes) == n):
        raise ValueError(f"{n} images, {len(detections)} detection sets, {len(boxes)} box sets, {len(classes)} class sets")
    cols = min(4, max(n, 1))
    rows = max(1, math.ceil(n / cols))
    fig = Figure(figsize=(2.4 * cols, 2.4 * rows + (0.4 if title else 0.1)))
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= n:
            ax.axis("off")
            continue
        h, w = images.shape[1:3]
        ax.imshow(np.clip(images[i], 0, 1))
        for box, cls in zip(boxes[i], classes[i]):
            if cls >= 0:
                _draw_box(ax, box, w, h, TRUE)
        shown = shown_detections(detections[i], threshold)
        for row in shown:
            _draw_box(ax, row[2:6], w, h, PREDICTED, f"{row[1]:.2f}")
        ax.set_title(f"{len(shown)} above {threshold:g}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    write_figure(path, fig)
