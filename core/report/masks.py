"""Per-pixel labels as pictures: each class drawn in its colour-map colour (D2L 13.11.5's
label2image), beside the image and the true labels."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .plots import write_figure


def label_to_image(labels, colormap: Sequence[Sequence[int]]) -> np.ndarray:
    """Labels (..., H, W) int -> their colours (..., H, W, 3) uint8: `colormap[label]`.

    Raises:
        ValueError: a label with no colour in `colormap`.
    """
    labels = np.asarray(labels)
    palette = np.asarray(colormap, np.uint8).reshape(-1, 3)
    if labels.size and (labels.min() < 0 or labels.max() >= len(palette)):
        raise ValueError(f"labels range over [{labels.min()}, {labels.max()}], but the colour map has {len(palette)} colours")
    return palette[labels.astype(np.int64)]


def plot_masks(path: str | Path, images, true_masks, predicted_masks, colormap: Sequence[Sequence[int]], title: str = "") -> None:
    """Rows of images (n, H, W, 3) in [0, 1], their predicted labels and their true labels
    (n, H, W), the labels in `colormap`'s colours (the book's figure after prediction), with
    each image's pixel accuracy; written as a PNG atomically."""
    from matplotlib.figure import Figure

    images, true_masks, predicted_masks = np.asarray(images), np.asarray(true_masks), np.asarray(predicted_masks)
    n = len(images)
    if not (len(true_masks) == len(predicted_masks) == n):
        raise ValueError(f"{n} images, {len(true_masks)} true masks and {len(predicted_masks)} predicted masks")
    h, w = images.shape[1:3]
    scale = 2.0 / max(h, w) * max(1.0, 4 / max(n, 1))
    fig = Figure(figsize=(max(n, 1) * w * scale + 0.8, 3 * h * scale + (0.5 if title else 0.2)))
    axes = fig.subplots(3, max(n, 1), squeeze=False)
    rows = (("image", images), ("predicted", label_to_image(predicted_masks, colormap)),
            ("true", label_to_image(true_masks, colormap)))
    for r, (name, pictures) in enumerate(rows):
        for i in range(axes.shape[1]):
            ax = axes[r, i]
            ax.set_xticks([])
            ax.set_yticks([])
            if i >= n:
                ax.axis("off")
                continue
            ax.imshow(np.clip(pictures[i], 0, 1) if name == "image" else pictures[i], interpolation="nearest")
            if i == 0:
                ax.set_ylabel(name, fontsize=8)
            if name == "predicted":
                ax.set_title(f"pixel acc {np.mean(predicted_masks[i] == true_masks[i]):.3f}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    write_figure(path, fig)
