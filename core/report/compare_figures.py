"""The plots of a comparison (`core.report.compare`): every run's curve of the target metric,
the metric against each parameter, a heatmap over two, and progress against examples and time."""

from __future__ import annotations

import json
import math
from typing import Any, Sequence

import numpy as np
import pandas as pd


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v)


def canonical(value: Any) -> str:
    """A config value as one string, the same for equal values: JSON with sorted keys where the
    keys can be sorted (a hand-edited config may mix their types, or hold dates)."""
    for sort_keys in (True, False):
        try:
            return json.dumps(value, sort_keys=sort_keys, default=str)
        except (TypeError, ValueError):
            continue
    return repr(value)


def _setting(run: Any) -> str:
    return canonical({k: v for k, v in run.config.items() if k not in ("seed", "name")})


def _axis(df: pd.DataFrame, *params: str) -> pd.DataFrame:
    """`df` with each of `params` that is not numeric as text, so that values of mixed types
    (a number in one run's config, a string or a list in another's) can be sorted and grouped."""
    return df.assign(**{p: df[p].map(_fmt) for p in params if not numeric(df[p])})


def figure(size=(6, 4)):
    from matplotlib.figure import (
        Figure,  # no pyplot: no global state, no display needed
    )

    return Figure(figsize=size, layout="constrained")


def curves_figure(runs: Sequence[Any], metric: str, title: str):
    fig = figure((7, 4.5))
    ax = fig.subplots()
    shown = [r for r in runs if metric in r.metrics]
    if not shown:
        return None
    from matplotlib import colormaps
    from matplotlib.ticker import MaxNLocator

    # one colour per setting: the seeds of one setting share it
    settings = {}
    for run in shown:
        settings.setdefault(_setting(run), len(settings))
    cmap = colormaps["viridis"]
    for run in shown:
        k = settings[_setting(run)]
        style = "-" if run.status == "done" else ":"
        ax.plot(run.metrics["epoch"], run.metrics[metric], style, color=cmap(k / max(len(settings) - 1, 1)),
                label=run.name if len(shown) <= 12 else None, linewidth=1.2)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(f"{title}: {metric} of every trial" + (" (dotted: pruned or failed)" if any(r.status != "done" for r in shown) else ""), fontsize=9)
    ax.grid(alpha=0.3)
    if len(shown) <= 12:
        ax.legend(fontsize=6)
    if metric.endswith("loss") and all((r.metrics[metric] > 0).all() for r in shown):
        ax.set_yscale("log")
    return fig


def progress_figure(runs: Sequence[Any], metric: str, title: str):
    """The metric against examples trained on and against cumulative training seconds: which
    batch size makes progress fastest per example and per second (D2L 11.5)."""
    shown = [r for r in runs if {metric, "examples", "seconds"} <= set(r.metrics.columns)]
    if not shown:
        return None
    fig = figure((10, 4))
    by_examples, by_time = fig.subplots(1, 2)
    for run in shown:
        batch = run.config.get("data.batch_size", "?")
        by_examples.plot(run.metrics["examples"], run.metrics[metric], marker="o", markersize=2, label=f"batch {batch}")
        by_time.plot(run.metrics["seconds"].cumsum(), run.metrics[metric], marker="o", markersize=2, label=f"batch {batch}")
    from matplotlib.ticker import NullFormatter

    for ax, xlabel in ((by_examples, "examples seen"), (by_time, "training seconds")):
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(xlabel)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{title}: {metric} against examples and time", fontsize=9)
    return fig


def numeric(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def param_figure(df: pd.DataFrame, param: str, metric: str):
    col = f"final {metric}"
    done = df[df["status"] == "done"]
    if col not in done or done.empty:
        return None
    done = _axis(done, param)
    fig = figure()
    ax = fig.subplots()
    stats = done.groupby(param, sort=True)[col].agg(["mean", "std"]).reset_index()
    if numeric(done[param]):
        x = stats[param].to_numpy(float)
        ax.scatter(done[param], done[col], s=12, alpha=0.4, label="trials")
        ax.errorbar(x, stats["mean"], yerr=stats["std"].fillna(0), marker="o", capsize=3, label="mean +- std over seeds")
        finite = x[np.isfinite(x)]
        if len(finite) and (finite > 0).all() and finite.max() / finite.min() >= 10:
            ax.set_xscale("log")
    else:
        labels = [str(v) for v in stats[param]]
        ax.errorbar(range(len(labels)), stats["mean"], yerr=stats["std"].fillna(0), marker="o", capsize=3, linestyle="none")
        ax.set_xticks(range(len(labels)), labels)
    ax.set_xlabel(param)
    ax.set_ylabel(f"final {metric}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7) if numeric(done[param]) else None
    return fig


def heatmap_figure(df: pd.DataFrame, params: Sequence[str], metric: str):
    col = f"final {metric}"
    done = df[df["status"] == "done"]
    if col not in done or done.empty:
        return None
    px, py = params
    done = _axis(done, px, py)
    fig = figure((6.5, 5))
    ax = fig.subplots()
    if done[px].nunique() <= 12 and done[py].nunique() <= 12:
        grid = done.pivot_table(index=py, columns=px, values=col, aggfunc="mean")
        if grid.empty:  # no done run has a value for both
            return None
        image = ax.imshow(grid.to_numpy(float), cmap="viridis", aspect="auto", origin="lower")
        ax.set_xticks(range(grid.shape[1]), [_fmt(v) for v in grid.columns])
        ax.set_yticks(range(grid.shape[0]), [_fmt(v) for v in grid.index])
        for (i, j), v in np.ndenumerate(grid.to_numpy(float)):
            if math.isfinite(v):
                ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=8, color="w")
    else:  # continuous values from a random search: a scatter coloured by the metric
        image = ax.scatter(done[px], done[py], c=done[col], cmap="viridis")
    fig.colorbar(image, ax=ax, label=f"final {metric} (mean over seeds)")
    ax.set_xlabel(px)
    ax.set_ylabel(py)
    return fig
