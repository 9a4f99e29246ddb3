"""Region-of-interest pooling and transposed convolution, exact (D2L 13.8.4, 13.10): the book's
printed examples run through `core.nn.roi.roi_pool` and `core.nn.layers.conv2d_transpose`,
compared with what the book prints and with plain numpy loops of the book's code.

Each `run` writes summary.json (`max_difference` over its named checks; see `geometry_book`) and
a PNG of the example's grids. The book prints integers here (as `5.`), so half a unit is 0.5.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dlrun.core import disk
from dlrun.core.config import Config, Section, validate_options
from dlrun.core.nn import layers as L
from dlrun.core.nn.roi import roi_pool
from dlrun.core.report import plots

from .conv_kernel import corr2d
from .geometry_book import difference, summarise

# the book's examples and printed outputs; X and K as the book builds them
BOOK: dict[str, dict[str, Any]] = {
    "13.8": {
        "X": np.arange(16, dtype=np.float32).reshape(4, 4).tolist(),
        "rois": [[0, 0, 0, 20, 20], [0, 0, 10, 30, 30]], "output_size": [2, 2], "spatial_scale": 0.1,
        "output": [[[5, 6], [9, 10]], [[9, 11], [13, 15]]],  # printed: torchvision.ops.roi_pool(X, rois, (2, 2), 0.1)
    },
    "13.10": {
        "X": [[0, 1], [2, 3]], "K": [[0, 1], [2, 3]],
        "trans_conv": [[0, 0, 1], [0, 4, 6], [4, 12, 9]],  # printed: trans_conv(X, K) and tconv(X)
        "padding_1": [[4]],  # printed: ConvTranspose2d(padding=1)
        "stride_2": [[0, 0, 0, 1], [0, 0, 2, 3], [0, 2, 0, 3], [4, 6, 6, 9]],  # printed: ConvTranspose2d(stride=2)
        "multichannel_shape_equal": True,  # printed: tconv(conv(X)).shape == X.shape, X (1, 10, 16, 16)
        "matrix_K": [[1, 2], [3, 4]],
        "W": [[1, 2, 0, 3, 4, 0, 0, 0, 0], [0, 1, 2, 0, 3, 4, 0, 0, 0],
              [0, 0, 0, 1, 2, 0, 3, 4, 0], [0, 0, 0, 0, 1, 2, 0, 3, 4]],  # printed: kernel2matrix(K)
        "matmul_equal": True,  # printed: Y == W @ X.reshape(-1) and Z == W.T @ Y.reshape(-1)
    },
}


class NoOptions(Section):
    """`experiment.name: roi_pooling | transposed_conv` takes no other keys: the book's example is fixed."""


def trans_conv(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """The book's transposed convolution loop (D2L 13.10.1): (h, w), (kh, kw) -> (h+kh-1, w+kw-1);
    each input value times the kernel is added into the output at its position."""
    kh, kw = k.shape
    y = np.zeros((x.shape[0] + kh - 1, x.shape[1] + kw - 1), np.float32)
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            y[i : i + kh, j : j + kw] += x[i, j] * k
    return y


def kernel2matrix(k: np.ndarray) -> np.ndarray:
    """The book's sparse weight matrix of a 2x2 kernel on a 3x3 input (D2L 13.10.3): (4, 9), so
    that W @ x.reshape(-1) is the convolution and W.T @ y.reshape(-1) the transposed one."""
    row = np.zeros(5, np.float32)
    row[:2], row[3:5] = k[0], k[1]
    w = np.zeros((4, 9), np.float32)
    w[0, :5], w[1, 1:6], w[2, 3:8], w[3, 4:] = row, row, row, row
    return w


def tconv(x: np.ndarray, k: np.ndarray, stride: int = 1, padding: int = 0) -> np.ndarray:
    """One-channel `conv2d_transpose` with kernel `k` (PyTorch's weight (1, 1, kh, kw)), no bias: (h, w) -> (h', w')."""
    layer = L.conv2d_transpose(1, k.shape, stride=stride, padding=padding, use_bias=False)
    y, _ = layer.apply({"w": jnp.asarray(k, jnp.float32)[:, :, None, None]}, {}, jnp.asarray(x, jnp.float32)[None, :, :, None])
    return np.asarray(y)[0, :, :, 0]


def run_roi_pooling(cfg: Config, run_dir: Path, source: str = "config") -> dict[str, Any]:
    """D2L 13.8.4: the book's 4 x 4 map and two regions pooled to 2 x 2; roi_pooling.png."""
    validate_options(NoOptions, cfg, source)
    book = BOOK["13.8"]
    x = np.asarray(book["X"], np.float32)
    pool = jax.jit(roi_pool, static_argnums=(2, 3))
    out = np.asarray(pool(x[None, :, :, None], jnp.asarray(book["rois"], jnp.float32), tuple(book["output_size"]), book["spatial_scale"]))[..., 0]
    checks = {"output": difference(out, book["output"])}
    regions = [np.round(np.asarray(r[1:]) * book["spatial_scale"]) for r in book["rois"]]
    _grids(run_dir / "roi_pooling.png", [("X, regions rounded to cells", x, regions), ("region 0 pooled", out[0], []),
                                          ("region 1 pooled", out[1], [])])
    summary = summarise(checks, {"output": out.tolist()}, book)
    disk.write_json(run_dir / "summary.json", summary)
    return summary


def run_transposed_conv(cfg: Config, run_dir: Path, source: str = "config") -> dict[str, Any]:
    """D2L 13.10: the book's transposed convolutions (plain, padding 1, stride 2), the shape
    check over channels, and the matrix form; transposed_conv.png."""
    validate_options(NoOptions, cfg, source)
    book = BOOK["13.10"]
    x, k = np.asarray(book["X"], np.float32), np.asarray(book["K"], np.float32)
    plain, loop = tconv(x, k), trans_conv(x, k)
    padded, strided = tconv(x, k, padding=1), tconv(x, k, stride=2)
    # channels: a strided convolution and the transposed one with the same hyperparameters restore the shape
    rng = np.random.default_rng(cfg.seed)  # host draws: only the shape is checked, as in the book
    conv, up = L.conv2d(20, 5, padding=2, stride=3), L.conv2d_transpose(10, 5, stride=3, padding=2)
    images = jnp.asarray(rng.uniform(size=(1, 16, 16, 10)), jnp.float32)
    conv_params = {"w": jnp.asarray(rng.normal(0, 0.1, (5, 5, 10, 20)), jnp.float32), "b": jnp.zeros(20)}
    up_params = {"w": jnp.asarray(rng.normal(0, 0.1, (5, 5, 20, 10)), jnp.float32), "b": jnp.zeros(10)}
    restored = up.apply(up_params, {}, conv.apply(conv_params, {}, images)[0])[0]
    same_shape = restored.shape == images.shape
    # the matrix form on a 3 x 3 input
    km, x9 = np.asarray(book["matrix_K"], np.float32), np.arange(9, dtype=np.float32).reshape(3, 3)
    w = kernel2matrix(km)
    y = corr2d(x9, km)
    conv1, _ = L.conv2d(1, 2, use_bias=False).apply({"w": jnp.asarray(km)[:, :, None, None]}, {}, jnp.asarray(x9)[None, :, :, None])
    z = trans_conv(y, km)
    checks = {
        "trans_conv": max(difference(plain, book["trans_conv"]), difference(loop, book["trans_conv"])),
        "padding_1": difference(padded, book["padding_1"]),
        "stride_2": difference(strided, book["stride_2"]),
        "multichannel_shape": 0.0 if same_shape == book["multichannel_shape_equal"] else float("inf"),
        "kernel2matrix": difference(w, book["W"]),
        "matmul_conv": max(difference((w @ x9.reshape(-1)).reshape(2, 2), y), difference(np.asarray(conv1)[0, :, :, 0], y))
        if book["matmul_equal"] else float("inf"),
        "matmul_trans_conv": max(difference((w.T @ y.reshape(-1)).reshape(3, 3), z), difference(tconv(y, km), z))
        if book["matmul_equal"] else float("inf"),
    }
    values = {"trans_conv": plain.tolist(), "padding_1": padded.tolist(), "stride_2": strided.tolist(),
              "multichannel_shape": list(restored.shape), "W": w.tolist(), "conv_as_matmul": (w @ x9.reshape(-1)).tolist(),
              "trans_conv_as_matmul": (w.T @ y.reshape(-1)).tolist()}
    _grids(run_dir / "transposed_conv.png", [("X", x, []), ("K", k, []), ("X transposed-conv K", plain, []),
                                             ("stride 2", strided, []), ("padding 1", padded, [])])
    summary = summarise(checks, values, {k_: v for k_, v in book.items()})
    disk.write_json(run_dir / "summary.json", summary)
    return summary


def _grids(path: Path, panels: Sequence[tuple[str, np.ndarray, Sequence[np.ndarray]]]) -> None:
    """Small matrices side by side, each cell labelled with its value; `rects` are cell-corner
    boxes (x1, y1, x2, y2, inclusive) outlined on their panel."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed
    from matplotlib.patches import Rectangle

    fig = Figure(figsize=(2.4 * len(panels), 2.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (title, grid, rects) in zip(axes, panels):
        grid = np.atleast_2d(grid)
        ax.imshow(grid, cmap="Blues")
        for (i, j), value in np.ndenumerate(grid):
            ax.text(j, i, f"{value:g}", ha="center", va="center", fontsize=8)
        for (x1, y1, x2, y2), color in zip(rects, "rm"):
            ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1 + 1, y2 - y1 + 1, fill=False, edgecolor=color, linewidth=2))
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    plots.write_figure(path, fig)
