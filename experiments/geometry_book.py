"""What the geometry experiments share (D2L 13.3-13.5, 13.8, 13.10): comparing our numbers with
the book's printed ones, the photo the boxes are drawn on, and drawing boxes.

A check compares an array of ours with the book's printed array. The book prints with
`torch.set_printoptions(2)`: two decimals, or, when a tensor's values span several orders of
magnitude, two decimals of a mantissa (4.17e-06). A check's difference is therefore measured in
units of each printed value's own magnitude (|ours - book| / 10^e for a value printed as
m.mm e+e, plain |ours - book| otherwise), so that one bound, half a unit of the last printed
digit (0.005), says "agrees with everything the book printed".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dlrun.core.data.images import read_photo
from dlrun.core.report import plots

BOOK_IMAGE_SIZE = (728, 561)  # the book's catdog.jpg, width x height in pixels
COLORS = ("b", "g", "r", "m", "c")  # the book's show_bboxes colours, in its order


def difference(ours: Any, book: Any, scientific: bool = False) -> float:
    """The largest difference between our values and the book's printed ones; with
    `scientific`, each in units of its printed value's power of ten (see the module's docstring)."""
    ours, book = np.asarray(ours, np.float64), np.asarray(book, np.float64)
    if ours.shape != book.shape:
        return float("inf")
    gap = np.abs(ours - book)
    if scientific:
        scale = np.where(book == 0, 1.0, 10.0 ** np.floor(np.log10(np.abs(np.where(book == 0, 1.0, book)))))
        gap = gap / scale
    return float(np.max(gap)) if gap.size else 0.0


def summarise(checks: dict[str, float], values: dict[str, Any], book: dict[str, Any]) -> dict[str, Any]:
    """summary.json's content: `max_difference` over the named checks, each check as
    `difference/<name>`, our values and the book's."""
    summary: dict[str, Any] = {"max_difference": max(checks.values())}
    summary |= {f"difference/{name}": value for name, value in checks.items()}
    summary |= {"ours": values, "book": book}
    return summary


def photo(image: str | None, size: tuple[int, int] | None = BOOK_IMAGE_SIZE) -> tuple[np.ndarray, str]:
    """(H, W, 3) uint8 RGB pixels and where they came from: `image`, or matplotlib's
    grace_hopper.jpg standing in for the book's catdog.jpg, resized to `size` (width, height;
    default the book's 728 x 561) unless None."""
    return read_photo(image, size)


def show_boxes(ax, boxes: np.ndarray, labels: Sequence[str] | None = None, colors: Sequence[str] = COLORS) -> None:
    """Draw corner boxes (pixels) on `ax` as the book's show_bboxes: outlines cycling through
    `colors`, each label in a box of its colour at the upper-left corner."""
    from matplotlib.patches import Rectangle

    for i, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, np.float64)):
        color = colors[i % len(colors)]
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, linewidth=2))
        if labels is not None and i < len(labels):
            ax.text(x1, y1, labels[i], va="center", ha="center", fontsize=8, color="k" if color == "w" else "w",
                    bbox={"facecolor": color, "lw": 0})


def draw(path: Path, pixels: np.ndarray, panels: Sequence[tuple[str, np.ndarray, Sequence[str] | None, Sequence[str]]]) -> None:
    """One picture of `pixels` per panel (title, boxes in pixels, labels, colours), side by side, as a PNG."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

    fig = Figure(figsize=(4.2 * len(panels), 3.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (title, boxes, labels, colors) in zip(axes, panels):
        ax.imshow(pixels)
        show_boxes(ax, boxes, labels, colors)
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    plots.write_figure(path, fig)
