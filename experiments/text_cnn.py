"""TextCNN's one-dimensional convolutions (D2L 15.3): the book's demos, exact.

`corr1d` of X = [0, ..., 6] with the kernel K = [1, 2] (D2L 15.3.1, Fig. 15.3.2) gives
[2, 5, 8, 11, 14, 17]; the three-input-channel example (`corr1d_multi_in`, Fig. 15.3.3) gives
[2, 8, 14, 20, 26, 32]. Both are computed by `core.nn.textcnn.corr1d`, the function textCNN's
convolutions call, with channels last. The figure of the model (Fig. 15.3.5: 11 tokens of 6
channels, kernels of widths 2 and 4 with 4 and 5 output channels) is checked for its widths,
10 and 8, and the 9 numbers max-over-time pooling concatenates. `max_difference` is the
largest absolute difference from the book's values (0: all match). Nothing is trained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dlrun.core import disk
from dlrun.core.config import Config, Section, validate_options
from dlrun.core.nn.textcnn import corr1d
from dlrun.core.report import progress

# what D2L 15.3.1 prints, and the sizes Fig. 15.3.5 draws
BOOK = {"corr1d": [2.0, 5.0, 8.0, 11.0, 14.0, 17.0], "corr1d_multi_in": [2.0, 8.0, 14.0, 20.0, 26.0, 32.0],
        "figure_widths": [10, 8], "figure_pooled": 9}
MULTI_X = [[0, 1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6, 7], [2, 3, 4, 5, 6, 7, 8]]  # (channels, steps), as the book's
MULTI_K = [[1, 2], [3, 4], [-1, -3]]  # (channels, width)


class TextCNNDemoOptions(Section):
    name: str = "text_cnn_demo"


def book_corr1d(X: Any, K: Any) -> list[float]:
    """The book's corr1d / corr1d_multi_in arguments, (channels, steps) and (channels, width) or
    one channel's vectors, through `corr1d`'s (batch, steps, channels) and (width, in, out)."""
    X, K = np.atleast_2d(np.asarray(X, np.float32)), np.atleast_2d(np.asarray(K, np.float32))
    y = corr1d(jnp.asarray(X.T[None]), jnp.asarray(K.T[:, :, None]))
    return [float(v) for v in np.asarray(y)[0, :, 0]]


def figure_shapes() -> tuple[list[int], int]:
    """Fig. 15.3.5 through `corr1d`: the widths the two kernels give an 11-token, 6-channel input
    and the length of the pooled, concatenated vector."""
    x = jnp.zeros((1, 11, 6))
    outs = [corr1d(x, jnp.zeros((w, 6, c))) for w, c in ((2, 4), (4, 5))]
    pooled = jnp.concatenate([jnp.max(o, axis=1) for o in outs], axis=-1)
    return [int(o.shape[1]) for o in outs], int(pooled.shape[-1])


def run(cfg: Config, run_dir: Path, source: str = "config") -> dict[str, Any]:
    """Write summary.json: our values beside the book's, the differences and `max_difference`."""
    validate_options(TextCNNDemoOptions, cfg, source)
    widths, pooled = figure_shapes()
    ours = {"corr1d": book_corr1d([0, 1, 2, 3, 4, 5, 6], [1, 2]), "corr1d_multi_in": book_corr1d(MULTI_X, MULTI_K),
            "figure_widths": widths, "figure_pooled": pooled}
    diffs = {k: float(np.max(np.abs(np.subtract(ours[k], BOOK[k])))) if np.shape(ours[k]) == np.shape(BOOK[k])
             else float("inf") for k in BOOK}
    summary = {"ours": ours, "book": BOOK, "differences": diffs, "max_difference": max(diffs.values()),
               "device": jax.default_backend()}
    notes = progress.notes(cfg.trainer.progress)
    notes.note(f"corr1d {ours['corr1d']}; corr1d_multi_in {ours['corr1d_multi_in']}; "
               f"max_difference {summary['max_difference']:g}")
    disk.write_json(run_dir / "summary.json", summary)
    return summary


# experiment.name -> (run(cfg, run_dir, source) -> summary, options Section, summary numbers a book result may name)
EXPERIMENTS: dict = {"text_cnn_demo": (run, TextCNNDemoOptions, ("max_difference",))}
