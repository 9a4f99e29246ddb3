"""What a run reports: one metrics row per epoch, and summary.json at the end."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from ..data import Dataset
from ..nn.params import weight_norm, weights


def epoch_row(epoch: int, batch_metrics: dict[str, np.ndarray], eval_metrics: dict[str, Any], seconds: float,
              examples: int) -> dict[str, Any]:
    """One line of metrics.csv: train metrics averaged over the epoch's batches (and, for a
    language model, the perplexity), then each evaluated split's metrics (`val/loss`, ...),
    the examples trained on so far, and the epoch's training seconds."""
    row: dict[str, Any] = {"epoch": epoch}
    named = [k for k in ("loss", "acc") if k in batch_metrics] + sorted(set(batch_metrics) - {"loss", "acc", "finite"})
    row |= {f"train/{k}": float(np.mean(batch_metrics[k])) for k in named}
    if any(k.endswith("/ppl") for k in eval_metrics) and "train/loss" in row:
        row["train/ppl"] = float(np.exp(row["train/loss"]))  # exp of the epoch's mean cross-entropy per token
    row |= {k: float(v) for k, v in eval_metrics.items()}
    row["examples"] = examples
    row["seconds"] = seconds
    return row


def make_summary(rows: list[dict[str, Any]], params: Any, data: Dataset, **extra: Any) -> dict[str, Any]:
    """summary.json: the last epoch's metrics, timings, where it ran, and the parameter report."""
    summary = {k: v for k, v in rows[-1].items() if "/" in k}
    summary |= {
        "epochs": len(rows),
        "train_seconds": sum(r["seconds"] for r in rows),
        "seconds_per_epoch": float(np.median([r["seconds"] for r in rows])),
    }
    summary |= extra
    return summary | runtime() | parameter_report(params, data)


def runtime() -> dict[str, str]:
    """Where a run ran, for its summary: the jax version, the device kind and the backend."""
    return {"jax_version": jax.__version__, "device": str(jax.devices()[0].device_kind), "backend": jax.default_backend()}


def parameter_report(params: Any, data: Dataset) -> dict[str, Any]:
    """||w|| over all weights (D2L 4.5); for data made from known weights (D2L 3.2.4) and a
    model with one weight matrix, how far the learned weights and bias are from them."""
    report: dict[str, Any] = {"w_norm": weight_norm(params)}
    found = weights(params)
    leaves = jax.tree_util.tree_leaves(params)
    if "true_w" not in data.meta or len(found) != 1 or len(leaves) > 2:
        return report
    w = np.asarray(found[0][1]).reshape(-1)
    biases = [np.asarray(leaf).reshape(-1) for leaf in leaves if leaf is not found[0][1]]
    b = float(biases[0][0]) if biases else 0.0
    true_w = np.asarray(data.meta["true_w"])
    report |= {"w_error": float(np.max(np.abs(w - true_w))), "b_error": abs(b - data.meta["true_b"])}
    if w.size <= 32:
        report |= {"learned_w": w.tolist(), "learned_b": b}
    return report
