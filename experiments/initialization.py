"""Numerical stability and initialization (D2L 4.8).

Four views of one lesson: the sigmoid's gradient vanishes away from 0; a product of many random
matrices explodes; in a deep MLP the per-layer gradient norms at initialisation depend on the
activation and the initialisation (normal(0, 0.01), Xavier, He); and that decides which nets learn.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from pydantic import Field

from dlrun.core import disk
from dlrun.core.config import (
    Config,
    MLPModel,
    Section,
    derive,
    validate_options,
)
from dlrun.core.data import load_dataset
from dlrun.core.data.spec import BatchSpec
from dlrun.core.nn.losses import LOSSES
from dlrun.core.nn.models import build_model
from dlrun.core.nn.params import weights
from dlrun.core.report import outputs, plots, progress
from dlrun.core.training.train import train


class InitOptions(Section):
    name: str = "initialization"
    depth: int = Field(8, gt=0, description="hidden layers of the deep MLP")
    width: int = Field(128, gt=0)
    inits: tuple[Literal["normal", "xavier", "he"], ...] = ("normal", "xavier", "he")
    activations: tuple[Literal["sigmoid", "relu", "tanh"], ...] = ("sigmoid", "relu")
    grad_batch: int = Field(256, gt=0, description="examples for the gradient norms at initialisation")
    matrices: int = Field(100, gt=0, description="how many 4x4 Gaussian matrices to multiply")
    train: bool = True


def run(cfg: Config, run_dir: Path, source: str = "config") -> dict[str, Any]:
    opts = validate_options(InitOptions, cfg, source)
    key = jax.random.PRNGKey(cfg.seed)
    summary: dict[str, Any] = {}

    _save(run_dir / "sigmoid.png", _plot_sigmoid())
    norms = matrix_product_norms(cfg.seed, opts.matrices)
    summary["matrix_product/final_norm"] = float(norms[-1])
    _save(run_dir / "matrix_product.png", _plot_matrix_norms(norms))

    data = load_dataset(cfg.data, cfg.seed)
    x = jnp.asarray(data.x_train[: opts.grad_batch])
    y = jnp.asarray(data.y_train[: opts.grad_batch])
    combos = list(itertools.product(opts.activations, opts.inits))
    grad_rows, curves, notes = [], {}, progress.notes(cfg.trainer.progress)
    for activation, init in combos:
        variant = _variant(cfg, opts, activation, init)
        per_layer = layer_grad_norms(variant, data, x, y, key)
        grad_rows += [{"activation": activation, "init": init, "layer": i + 1, "grad_norm": g} for i, g in enumerate(per_layer)]
        summary[f"grad_norm_first_layer/{activation}/{init}"] = per_layer[0]
        if opts.train:
            result = train(variant, run_dir / f"{activation}_{init}", data=data)
            curves[(activation, init)] = result.rows
            summary[f"val/acc/{activation}/{init}"] = result.summary.get("val/acc", float("nan"))
            notes.note(f"{activation:8s} {init:7s} first-layer grad norm {per_layer[0]:.3e}  "
                       f"val/acc {summary[f'val/acc/{activation}/{init}']:.3f}")
    outputs.write_metrics(run_dir / "grad_norms.csv", grad_rows)
    _save(run_dir / "grad_norms.png", _plot_grad_norms(grad_rows, opts))
    if curves:
        _save(run_dir / "training.png", _plot_training(curves))
    disk.write_json(run_dir / "summary.json", summary)
    return summary


def _variant(cfg: Config, opts: InitOptions, activation: str, init: str) -> Config:
    model = MLPModel(hidden=(opts.width,) * opts.depth, activation=activation, init=init)
    return derive(cfg, {"name": f"{cfg.name}-{activation}-{init}", "model": model, "trainer.progress": "none"})


def matrix_product_norms(seed: int, n: int) -> np.ndarray:
    """Frobenius norm of M_1 M_2 ... M_k for k = 1..n, M_i ~ N(0, 1)^{4x4} (D2L 4.8.1.2).

    In float64 on the host: the norm passes float32's 3e38 within about 100 products.
    """
    rng = np.random.default_rng([seed, 4_8])
    prod = np.eye(4)
    norms = []
    for _ in range(n):
        prod = prod @ rng.standard_normal((4, 4))
        norms.append(np.linalg.norm(prod))
    return np.asarray(norms)


def layer_grad_norms(cfg: Config, data, x: jax.Array, y: jax.Array, key: jax.Array) -> list[float]:
    """||dL/dW_l|| for every dense layer l at initialisation, input layer first."""
    model = build_model(cfg.model, BatchSpec(data.input_shape, data.output_dim))
    params, model_state = model.init(key)
    loss_fn = LOSSES[cfg.loss.name].fn

    def loss(p):
        out, _ = model.apply(p, model_state, x, train=False)
        return jnp.mean(loss_fn(out, y))

    by_layer = dict(weights(jax.grad(loss)(params)))  # {"dense0/w": ..., "dense1/w": ...}
    return [float(jnp.linalg.norm(by_layer[f"dense{i}/w"])) for i in range(len(by_layer))]


def _axes(size=(5.5, 3.5)):
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.subplots()


def _finish(fig, ax, legend: bool = True, **labels):
    ax.set(**labels)
    ax.grid(alpha=0.3)
    if legend:
        ax.legend()
    return fig


def _plot_sigmoid():
    z = np.linspace(-8, 8, 400)
    s = 1 / (1 + np.exp(-z))
    fig, ax = _axes()
    ax.plot(z, s, label="sigmoid")
    ax.plot(z, s * (1 - s), "--", label="gradient")
    return _finish(fig, ax, xlabel="x", title="The sigmoid's gradient vanishes for large |x| (D2L 4.8.1.1)")


def _plot_matrix_norms(norms):
    fig, ax = _axes()
    ax.plot(np.arange(1, len(norms) + 1), norms)
    return _finish(fig, ax, legend=False, xlabel="matrices multiplied", ylabel="Frobenius norm", yscale="log",
                   title="Product of 4x4 Gaussian matrices explodes")  # fmt: skip


def _plot_grad_norms(rows, opts: InitOptions):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5 * len(opts.activations), 3.8), layout="constrained")
    axes = fig.subplots(1, len(opts.activations), squeeze=False)[0]
    for ax, activation in zip(axes, opts.activations):
        for init in opts.inits:
            sel = [r for r in rows if r["activation"] == activation and r["init"] == init]
            ax.plot([r["layer"] for r in sel], [max(r["grad_norm"], 1e-30) for r in sel], "-o", label=init)
        ax.set(xlabel="layer (1 = input)", ylabel="||dL/dW|| at init", yscale="log", title=f"{activation}, {opts.depth} hidden layers")
        ax.grid(alpha=0.3)
        ax.legend()
    return fig


def _plot_training(curves):
    fig, ax = _axes((6, 4))
    for (activation, init), rows in curves.items():
        ax.plot([r["epoch"] for r in rows], [r.get("val/acc", np.nan) for r in rows], "-o", markersize=3, label=f"{activation}, {init}")
    return _finish(fig, ax, xlabel="epoch", ylabel="val/acc", title="Which initialisations learn")


def _save(path: Path, fig) -> None:
    plots.write_figure(path, fig)
