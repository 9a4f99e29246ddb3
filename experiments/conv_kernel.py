"""Learning a kernel (D2L 7.2.4; 0.16 edition 6.2.4): recover the edge detector K = [[1, -1]]
from an image X and its edges Y = corr2d(X, K) by gradient descent on one 1x2 convolution.

The book initialises with its framework's default; here the kernel is drawn from
U(-1/sqrt(fan_in), 1/sqrt(fan_in)) = U(-0.707, 0.707) (PyTorch's Conv2d default, fan_in = 2)
with `jax.random.PRNGKey(seed)`. As in the book, iteration i logs the loss computed in its step,
before its update.

The ten updates are a hand loop, not the training loop (`core.training.lifecycle`), on purpose:
the lesson is the update w <- w - lr * dL/dw itself, on one image with no data set, batches,
evaluation split or checkpoint, and the loop shows it in four lines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from pydantic import Field

from dlrun.core import disk
from dlrun.core.config import Config, Section, validate_options
from dlrun.core.errors import TrainingDiverged
from dlrun.core.nn import layers as L
from dlrun.core.report import outputs, plots, progress

TRUE_KERNEL = np.array([[1.0, -1.0]], np.float32)
# the book's printed losses at iterations 2, 4, 6, 8, 10 and learned kernel, for comparison
BOOK = {
    "mxnet_0.16": {"iterations": [2, 4, 6, 8, 10], "loss": [4.949, 0.831, 0.140, 0.024, 0.004], "kernel": [0.9895, -0.9874]},
    "pytorch_0.16": {"iterations": [2, 4, 6, 8, 10], "loss": [7.276, 1.521, 0.378, 0.114, 0.040], "kernel": [0.9679, -1.0065]},
}
# PyTorch's kaiming_uniform(a=sqrt(5)) for Conv2d weights: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
KERNEL_INIT = jax.nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")


class ConvKernelOptions(Section):
    name: str = "conv_kernel"
    iterations: int = Field(10, gt=0, description="gradient-descent steps on the whole image")
    lr: float = Field(0.03, gt=0, description="step size; this loss diverges for lr above 1/30")
    log_every: int = Field(2, gt=0, description="print the loss every this many iterations")


def corr2d(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """2-D cross-correlation, valid padding (D2L 7.2.1): (h, w), (kh, kw) -> (h-kh+1, w-kw+1)."""
    kh, kw = k.shape
    out = np.zeros((x.shape[0] - kh + 1, x.shape[1] - kw + 1), np.float32)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = (x[i : i + kh, j : j + kw] * k).sum()
    return out


def edge_image() -> tuple[np.ndarray, np.ndarray]:
    """The book's X (6x8 ones, columns 2-5 zero) and Y = corr2d(X, [[1, -1]]), as NHWC (1, h, w, 1)."""
    x = np.ones((6, 8), np.float32)
    x[:, 2:6] = 0
    return x[None, :, :, None], corr2d(x, TRUE_KERNEL)[None, :, :, None]


def make_step(layer: L.Layer, lr: float):
    """`step(params, x, y) -> (params, loss)`: one plain gradient-descent step w <- w - lr * dL/dw
    on the sum of squared errors L = sum((conv(x) - y)^2)."""

    def sse(params, x, y):
        y_hat, _ = layer.apply(params, {}, x)
        return jnp.sum((y_hat - y) ** 2)

    @jax.jit
    def step(params, x, y):
        loss, grads = jax.value_and_grad(sse)(params, x, y)
        return jax.tree.map(lambda p, g: p - lr * g, params, grads), loss

    return step


def run(cfg: Config, run_dir: Path, source: str = "config") -> dict[str, Any]:
    """Learn the kernel; write metrics.csv (iteration, loss), summary.json and loss.png."""
    opts = validate_options(ConvKernelOptions, cfg, source)
    x, y = edge_image()
    layer = L.conv2d(1, (1, 2), use_bias=False, w_init=KERNEL_INIT)  # one channel in and out
    _, params, _ = layer.init(jax.random.PRNGKey(cfg.seed), x.shape[1:])
    initial = np.asarray(params["w"]).reshape(-1)
    step, rows, notes = make_step(layer, opts.lr), [], progress.notes(cfg.trainer.progress)
    for i in range(1, opts.iterations + 1):
        params, loss = step(params, x, y)
        rows.append({"iteration": i, "loss": float(loss)})
        if not np.isfinite(rows[-1]["loss"]):
            outputs.write_metrics(run_dir / "metrics.csv", rows)
            raise TrainingDiverged(f"{source}: the loss became non-finite at iteration {i}; lower experiment.lr ({opts.lr})")
        if i % opts.log_every == 0 or i == opts.iterations:
            notes.note(f"iteration {i}, loss {rows[-1]['loss']:.3f}")
    outputs.write_metrics(run_dir / "metrics.csv", rows)
    kernel = np.asarray(params["w"]).reshape(-1)
    learned_loss = float(np.sum((corr2d(x[0, :, :, 0], kernel.reshape(1, 2)) - y[0, :, :, 0]) ** 2))
    summary = {
        "loss": rows[-1]["loss"],
        "loss/learned_kernel": learned_loss,
        "kernel/0": float(kernel[0]),
        "kernel/1": float(kernel[1]),
        "max_abs_error": float(np.max(np.abs(kernel - TRUE_KERNEL.reshape(-1)))),
        "iterations": opts.iterations,
        "learned_kernel": kernel.tolist(),
        "true_kernel": TRUE_KERNEL.reshape(-1).tolist(),
        "initial_kernel": initial.tolist(),
        "init": "uniform(-1/sqrt(2), 1/sqrt(2)) (PyTorch's Conv2d default)",
        "book": BOOK,
    }
    disk.write_json(run_dir / "summary.json", summary)
    notes.note(f"learned kernel [{kernel[0]:.4f}, {kernel[1]:.4f}]  (true [1, -1])")
    _plot(run_dir / "loss.png", rows)
    return summary


def _plot(path: Path, rows: list[dict[str, Any]]) -> None:
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

    fig = Figure(figsize=(5.5, 4), layout="constrained")
    ax = fig.subplots()
    ax.plot([r["iteration"] for r in rows], [r["loss"] for r in rows], "-o", markersize=3, label="dlrun")
    for (name, ref), marker in zip(BOOK.items(), "sx"):
        ax.plot(ref["iterations"], ref["loss"], marker, linestyle="none", label=f"book, {name}")
    ax.set(xlabel="iteration", ylabel="sum of squared errors", yscale="log", title="Learning the kernel [1, -1] (D2L 7.2.4)")
    ax.grid(alpha=0.3)
    ax.legend()
    plots.write_figure(path, fig)
