"""Attention pictures (D2L 11.2 and 11.6; 0.16 edition 10.2 and 10.6).

`nadaraya_watson`: attention pooling as kernel regression. The 0.16 edition's data: 50
training points x ~ U(0, 5), sorted, y = 2 sin(x) + x^0.8 + N(0, 0.5^2), and 50 test points
0, 0.1, ..., 4.9. Three estimators of f at the test points: the mean of y (average pooling),
Gaussian-kernel attention softmax(-(x - x_i)^2 / 2) over the training y (non-parametric), and the
same with a learned bandwidth w, softmax(-((x - x_i) w)^2 / 2), fitted by plain gradient descent
(lr 0.5, full batch, the 1/2 squared error summed over the points) with each training point
attending to the other 49 (leave-one-out). Writes predictions.png and attention.png (test x
against training x, both kernels), metrics.csv (loss per epoch) and summary.json. The
bandwidth is fitted by a hand loop (`fit_bandwidth`), not the training loop: one scalar, the
whole data set as its only batch and no evaluation split, as the book writes it.

`positional_encoding`: the sinusoidal encoding's columns 6-9 for d = 32 over 60 positions, as
the book draws it (positional_encoding.png), and the whole matrix as a heatmap.
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
from dlrun.core.nn.attention import positional_encoding
from dlrun.core.report import outputs, plots, progress

BOOK = {"loss_first_epoch": {"MX16": 25.5, "PT16": 24.7}, "loss_epoch_5": {"MX16": 7.88, "PT16": 6.19}}


class NadarayaWatsonOptions(Section):
    name: str = "nadaraya_watson"
    n_train: int = Field(50, gt=1)
    noise: float = Field(0.5, ge=0)
    epochs: int = Field(5, gt=0)
    lr: float = Field(0.5, gt=0)


class PositionalEncodingOptions(Section):
    name: str = "positional_encoding"
    dim: int = Field(32, gt=1)
    positions: int = Field(60, gt=1)
    columns: tuple[int, ...] = Field((6, 7, 8, 9), min_length=1)


def truth(x):
    return 2 * np.sin(x) + x**0.8


def kernel_data(n_train: int, noise: float, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([seed, 11_2])
    x_train = np.sort(rng.uniform(0, 5, n_train)).astype(np.float32)
    y_train = (truth(x_train) + noise * rng.standard_normal(n_train)).astype(np.float32)
    x_test = np.arange(0, 5, 0.1, dtype=np.float32)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_truth": truth(x_test).astype(np.float32)}


def kernel_weights(queries: jax.Array, keys: jax.Array, w: jax.Array | float = 1.0, leave_one_out: bool = False) -> jax.Array:
    """softmax(-((q - k) w)^2 / 2) over the keys: (Q, K); `leave_one_out` (Q = K) drops key i for query i."""
    scores = -(((queries[:, None] - keys[None, :]) * w) ** 2) / 2
    if leave_one_out:
        scores = jnp.where(jnp.eye(len(keys), dtype=bool), -jnp.inf, scores)
    return jax.nn.softmax(scores, axis=-1)


def fit_bandwidth(x: jax.Array, y: jax.Array, w0: float, lr: float, epochs: int) -> tuple[float, list[float]]:
    """Gradient descent on w of sum_i 1/2 (y_i - sum_j a_ij(w) y_j)^2, leave-one-out; each
    epoch's loss as the book logs it, computed in its step, before the update."""

    def loss(w):
        return 0.5 * jnp.sum((kernel_weights(x, x, w, leave_one_out=True) @ y - y) ** 2)

    step = jax.jit(lambda w: (w - lr * jax.grad(loss)(w), loss(w)))
    w, losses = jnp.float32(w0), []
    for _ in range(epochs):
        w, value = step(w)
        losses.append(float(value))
    return float(w), losses


def run_nadaraya_watson(cfg: Config, run_dir: Path, source: str = "config") -> dict[str, Any]:
    opts = validate_options(NadarayaWatsonOptions, cfg, source)
    notes = progress.notes(cfg.trainer.progress)
    d = kernel_data(opts.n_train, opts.noise, cfg.seed)
    x, y, xt = (jnp.asarray(d[k]) for k in ("x_train", "y_train", "x_test"))
    w0 = float(jax.random.uniform(jax.random.PRNGKey(cfg.seed), ()))  # the book's torch.rand((1,))
    w, losses = fit_bandwidth(x, y, w0, opts.lr, opts.epochs)
    for epoch, value in enumerate(losses, start=1):
        notes.note(f"epoch {epoch}, loss {value:.3f}")
    attention = {"non-parametric": np.asarray(kernel_weights(xt, x)), "learned w": np.asarray(kernel_weights(xt, x, w))}
    preds = {"average pooling": np.full_like(d["x_test"], float(np.mean(d["y_train"])))}
    preds |= {f"{name} kernel": a @ d["y_train"] for name, a in attention.items()}
    mse = {name: float(np.mean((p - d["y_truth"]) ** 2)) for name, p in preds.items()}
    outputs.write_metrics(run_dir / "metrics.csv", [{"epoch": i + 1, "loss": v} for i, v in enumerate(losses)])
    summary = {"loss": losses[-1], "w": w, "w_initial": w0, "losses": losses, "test_mse": mse, "book": BOOK}
    disk.write_json(run_dir / "summary.json", summary)
    notes.note(f"learned w {w:.3f}; test MSE against f: " + ", ".join(f"{k} {v:.3f}" for k, v in mse.items()))
    _plot_predictions(run_dir / "predictions.png", d, preds)
    plots.plot_heatmaps(run_dir / "attention.png",
                          [[(f"{name} (w = {1.0 if name == 'non-parametric' else w:.2f})", a, [], []) for name, a in attention.items()]],
                          "attention weights: test x (rows) against sorted training x (columns)")
    return summary


def _plot_predictions(path: Path, d: dict[str, np.ndarray], preds: dict[str, np.ndarray]) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    ax.plot(d["x_test"], d["y_truth"], "k-", label="truth")
    for name, p in preds.items():
        ax.plot(d["x_test"], p, "--" if "average" in name else "-", label=name)
    ax.plot(d["x_train"], d["y_train"], "o", alpha=0.5, markersize=4, label="training data")
    ax.set(xlabel="x", ylabel="y", title="Nadaraya-Watson attention pooling (D2L 11.2)", xlim=(0, 5))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    plots.write_figure(path, fig)


def run_positional_encoding(cfg: Config, run_dir: Path, source: str = "config") -> dict[str, Any]:
    from matplotlib.figure import Figure

    opts = validate_options(PositionalEncodingOptions, cfg, source)
    p = positional_encoding(opts.positions, opts.dim)
    fig = Figure(figsize=(11, 3.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    for c in opts.columns:
        left.plot(np.arange(opts.positions), p[:, c], label=f"col {c}")
    left.set(xlabel="row (position)", title=f"columns of the positional encoding, d = {opts.dim}")
    left.legend(fontsize=8)
    image = right.imshow(p, cmap="Blues", aspect="auto")
    right.set(xlabel="column (encoding dimension)", ylabel="row (position)", title="the whole encoding")
    fig.colorbar(image, ax=right)
    plots.write_figure(run_dir / "positional_encoding.png", fig)
    last = {f"position {opts.positions - 1}, col {c}": float(p[-1, c]) for c in opts.columns}
    disk.write_json(run_dir / "summary.json", {"values": last})
    return {"values": last}
