"""A run's pictures: loss curves, the learning-rate schedule, predictions and attention
heatmaps, each a matplotlib figure (no pyplot, no global state) written as a PNG atomically."""

from __future__ import annotations

import io
import math
import sys
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..disk import write_atomic


def _import_plotting() -> None:
    import matplotlib.backends.backend_agg  # noqa: F401
    import matplotlib.figure  # noqa: F401
    import matplotlib.ticker  # noqa: F401


def preload_plotting() -> threading.Thread | None:
    """Import matplotlib in a background thread while a run starts and trains (the import
    takes about 0.6 s, a sixth of a short run's wall time; the thread runs while the main
    thread waits on XLA); the run's plots then find it loaded, or wait for the import to end."""
    if "matplotlib.figure" in sys.modules:
        return None
    thread = threading.Thread(target=_import_plotting, name="dlrun-import-matplotlib", daemon=True)
    thread.start()
    return thread


def plot_schedule(path: str | Path, lrs, steps_per_epoch: int, title: str = "") -> None:
    """The learning rate at every optimizer update, with epochs marked on a second axis (D2L 11.11)."""
    import numpy as np
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 3.5))
    fig.subplots_adjust(left=0.14, right=0.97, bottom=0.14, top=0.85)
    ax = fig.subplots()
    ax.plot(np.arange(len(lrs)), lrs)
    ax.set_xlabel("optimizer update")
    ax.set_ylabel("learning rate")
    ax.grid(alpha=0.3)
    top = ax.secondary_xaxis("top", functions=(lambda s: s / steps_per_epoch, lambda e: e * steps_per_epoch))
    top.set_xlabel("epoch")
    if title:
        ax.set_title(title, fontsize=9, pad=28)
    write_figure(path, fig)


def plot_curves(path: str | Path, rows: Sequence[dict[str, Any]], title: str = "") -> None:
    """Loss (and accuracy, or a language model's perplexity) against epoch, train and val, as the book's
    ProgressBoard draws them. Regression losses span decades, so their axis is logarithmic."""
    from matplotlib.figure import (
        Figure,  # no pyplot: no global state, no display needed
    )
    from matplotlib.ticker import MaxNLocator

    keys = list(dict.fromkeys(k for row in rows for k in row))
    df = {k: [row.get(k, math.nan) for row in rows] for k in keys}  # columns, NaN where a row lacks one
    second = "ppl" if "val/ppl" in df else "acc" if "val/acc" in df else None  # a language model shows perplexity
    has_acc = second is not None
    fig = Figure(figsize=(10 if has_acc else 5.5, 4))
    # fixed margins: a layout engine doubles the time to draw, and a sweep draws one per trial
    fig.subplots_adjust(left=0.08 if has_acc else 0.14, right=0.98, bottom=0.13, top=0.9 if title else 0.96, wspace=0.25)
    axes = fig.subplots(1, 2 if has_acc else 1, squeeze=False)[0]
    panels = [("loss", axes[0])] + ([(second, axes[1])] if has_acc else [])
    for metric, ax in panels:
        for split, style in (("train", "-"), ("val", "--")):
            # the metric itself, and its parts (a GAN's loss_D and loss_G)
            for col in [k for k in df if k == f"{split}/{metric}" or k.startswith(f"{split}/{metric}_")]:
                ax.plot(df["epoch"], df[col], style, marker="o", markersize=3, label=col)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    if not has_acc and all(v > 0 for k in df if "/loss" in k for v in df[k]):
        axes[0].set_yscale("log")
    if title:
        fig.suptitle(title)
    write_figure(path, fig)


def write_figure(path: str | Path, fig) -> None:
    """A matplotlib figure as a PNG, written atomically (`write_atomic`)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    write_atomic(path, buf.getvalue())


def plot_predictions(path: str | Path, images, labels: Sequence[str], preds: Sequence[str], title: str = "") -> None:
    """A grid of images, each titled with its true and predicted label, a wrong prediction in
    red (the book's `predict_ch3`)."""
    from matplotlib.figure import Figure

    n = len(images)
    cols = min(8, n)
    rows = -(-n // cols)
    fig = Figure(figsize=(1.5 * cols, 1.7 * rows + (0.4 if title else 0)))
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            image = images[i]
            ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray")
            ax.set_title(f"true: {labels[i]}\npred: {preds[i]}", fontsize=7, color="black" if labels[i] == preds[i] else "red")
    if title:
        fig.suptitle(title, fontsize=9)
    write_figure(path, fig)


def plot_heatmaps(path: str | Path, rows: Sequence[Sequence[tuple[str, Any, Sequence[str], Sequence[str]]]],
                  title: str = "") -> None:
    """A grid of attention heatmaps (the book's `show_heatmaps`): `rows` of panels, each
    (title, weights (queries, keys), query labels, key labels)."""
    from matplotlib.figure import Figure

    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig = Figure(figsize=(2.6 * n_cols + 0.8, 2.4 * n_rows + (0.4 if title else 0)), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    image = None
    for r, panels in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r, c]
            if c >= len(panels):
                ax.axis("off")
                continue
            name, weights, queries, keys = panels[c]
            image = ax.imshow(weights, cmap="Reds", vmin=0.0, vmax=1.0, aspect="auto")
            ax.set_xticks(range(len(keys)), keys, rotation=90, fontsize=6)
            ax.set_yticks(range(len(queries)), queries, fontsize=6)
            ax.set_title(name, fontsize=8)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.6)
    if title:
        fig.suptitle(title, fontsize=9)
    write_figure(path, fig)


def chosen_epochs(samples: Sequence[tuple[int, Any]], most: int = 8) -> list[tuple[int, Any]]:
    """At most `most` of the epochs' samples, evenly spaced, the first and the last always in."""
    if len(samples) <= most:
        return list(samples)
    picks = sorted({round(i * (len(samples) - 1) / (most - 1)) for i in range(most)})
    return [samples[i] for i in picks]


def plot_samples(path: str | Path, samples: Sequence[tuple[int, Any]], real=None, title: str = "") -> None:
    """What a generator made of the same noise after each epoch: for 2-d data a scatter per epoch
    over the real examples (D2L 17.1's picture), for images a row of them per epoch (17.2's grid,
    from tanh's [-1, 1])."""
    from matplotlib.figure import Figure

    shown = chosen_epochs(samples)
    if shown[0][1].ndim == 2:
        fig = Figure(figsize=(2.4 * len(shown), 2.6 + (0.4 if title else 0)), layout="constrained")
        for ax, (epoch, points) in zip(fig.subplots(1, len(shown), squeeze=False).flat, shown):
            if real is not None:
                ax.scatter(real[:, 0], real[:, 1], s=4, c="tab:blue", label="real")
            ax.scatter(points[:, 0], points[:, 1], s=4, c="tab:orange", label="generated")
            ax.set_title(f"epoch {epoch}", fontsize=8)
            ax.tick_params(labelsize=6)
        fig.axes[0].legend(fontsize=6)
    else:
        cols = min(8, len(shown[0][1]))
        fig = Figure(figsize=(1.1 * cols + 0.8, 1.1 * len(shown) + (0.4 if title else 0)), layout="constrained")
        axes = fig.subplots(len(shown), cols, squeeze=False)
        for row, (epoch, images) in zip(axes, shown):
            for j, ax in enumerate(row):
                ax.set_xticks([]), ax.set_yticks([])
                image = np.clip((np.asarray(images[j], np.float32) + 1) / 2, 0, 1)
                ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1)
            row[0].set_ylabel(f"epoch {epoch}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    write_figure(path, fig)
