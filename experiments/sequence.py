"""Sequence models on the noisy sine (D2L 9.1, 0.16 edition 8.1): a model of the previous tau
values predicts the next; its one-step predictions track the series, but predictions fed back
as inputs drift, and the error grows with the number of steps predicted ahead.

The model trains through the one loop (`core.training.train`, into `model/`); this module then
predicts on the whole series:
- k-step-ahead (1.0): the value at time t from the observations up to t - k, the k - 1 values
  between predicted in turn. Each k's predictions are drawn at the times they predict (the
  book's plot draws every k at the times of the largest k);
- multistep (0.16): from the end of the training range on, every input a prediction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np
from pydantic import Field

from dlrun.core import disk
from dlrun.core.config import Config, Section, validate_options
from dlrun.core.data import load_dataset
from dlrun.core.report import outputs, plots, progress
from dlrun.core.training.train import train

Predict = Callable[[np.ndarray], np.ndarray]  # (n, tau) lagged values -> (n,) next values


class SequenceOptions(Section):
    name: str = "sine"
    steps: tuple[int, ...] = Field((1, 4, 16, 64), min_length=1, description="the k of the k-step-ahead predictions")


def k_step_predictions(predict: Predict, x: np.ndarray, tau: int, k_max: int) -> np.ndarray:
    """(k_max, n) with n = T - tau - k_max + 1: row k - 1, column j predicts x[j + tau + k - 1]
    from the observations x[j .. j + tau - 1] and k - 1 predictions after them (D2L 9.1.4)."""
    n = len(x) - tau - k_max + 1
    columns = [x[i : i + n] for i in range(tau)]
    for i in range(k_max):
        columns.append(np.asarray(predict(np.stack(columns[i : i + tau], axis=1))).reshape(-1))
    return np.stack(columns[tau:])


def multistep_predictions(predict: Predict, x: np.ndarray, tau: int, start: int) -> np.ndarray:
    """x[:start] observed, then every value predicted from the tau before it, observed or not
    (D2L 8.1.2, 0.16 edition)."""
    out = x.astype(np.float32).copy()
    for t in range(start, len(x)):
        out[t] = float(np.asarray(predict(out[None, t - tau : t])).reshape(-1)[0])
    return out


def run(cfg: Config, run_dir: Path, source: str = "config") -> dict[str, Any]:
    """Train the model; write kstep.csv (error per k), predictions.png and summary.json."""
    opts = validate_options(SequenceOptions, cfg, source)
    notes = progress.notes(cfg.trainer.progress)
    data = load_dataset(cfg.data, cfg.seed)
    result = train(cfg, run_dir / "model", data=data)
    apply = jax.jit(lambda f: result.setup.model.apply(result.state.params, result.state.model_state, f, train=False)[0])

    def predict(features: np.ndarray) -> np.ndarray:
        return np.asarray(apply(np.asarray(features, np.float32))).reshape(-1)

    x, tau = np.asarray(data.meta["series"], np.float32), cfg.data.tau
    k_max = max(opts.steps)
    preds = k_step_predictions(predict, x, tau, k_max)
    rows = []
    for k in opts.steps:
        target = x[tau + k - 1 : tau + k - 1 + preds.shape[1]]
        rows.append({"k": k, "mse": float(np.mean((preds[k - 1] - target) ** 2))})
        notes.note(f"{k}-step-ahead predictions: mean squared error {rows[-1]['mse']:.4f}")
    start = tau + cfg.data.num_train
    multi = multistep_predictions(predict, x, tau, start)
    outputs.write_metrics(run_dir / "kstep.csv", rows)
    summary = {k: v for k, v in result.summary.items() if k.startswith(("train/", "val/"))} | {
        "kstep_mse": {str(r["k"]): r["mse"] for r in rows},
        "multistep_mse": float(np.mean((multi[start:] - x[start:]) ** 2)),
        "multistep_from": start + 1,  # the book's time axis counts from 1
        "noise_variance": cfg.data.noise**2,
    }
    disk.write_json(run_dir / "summary.json", summary)
    one_step = predict(np.stack([x[i : len(x) - tau + i] for i in range(tau)], axis=1))
    _plot(run_dir / "predictions.png", x, tau, one_step, preds, opts.steps, multi, start)
    return summary


def _plot(path: Path, x: np.ndarray, tau: int, one_step: np.ndarray, preds: np.ndarray, steps, multi: np.ndarray,
          start: int) -> None:
    from matplotlib.figure import Figure

    time = np.arange(1, len(x) + 1)
    fig = Figure(figsize=(11, 4), layout="constrained")
    left, right = fig.subplots(1, 2)
    left.plot(time, x, color="0.7", label="data")
    left.plot(time[tau:], one_step, label="1-step preds")
    left.plot(time[start:], multi[start:], label=f"multistep preds (from t = {start + 1})")
    left.set(xlabel="time", ylabel="x", title="one-step vs. fed-back predictions (D2L 8.1)")
    right.plot(time, x, color="0.85", label="data")
    for k in steps:
        right.plot(time[tau + k - 1 : tau + k - 1 + preds.shape[1]], preds[k - 1], label=f"{k}-step preds")
    right.set(xlabel="time", title="k-step-ahead predictions (D2L 9.1.4)", ylim=(-1.8, 1.8))
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    plots.write_figure(path, fig)

