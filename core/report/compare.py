"""Compare runs: one table (results.csv, results.md) and plots, from run directories on disk.

Used by `dlrun sweep` at the end of a sweep and by `dlrun compare` for any list of run
directories. Everything is read back from the files a run writes (config.yaml, metrics.csv,
summary.json and, in a sweep, status.json), so a comparison never needs the process that ran them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import pandas as pd
import yaml

from .. import disk
from ..config import flatten
from ..errors import CompareError
from . import compare_figures, plots
from .compare_figures import _fmt
from .status import read_json


class Run(NamedTuple):
    name: str
    path: Path
    config: dict[str, Any]  # flattened: {"optimizer.lr": 0.1, ...}
    metrics: pd.DataFrame  # metrics.csv, empty if the run wrote none
    status: str  # done, failed, pruned, stopped, running, missing
    error: str
    seconds: float



def load_run(path: str | Path, name: str | None = None) -> Run:
    """Read one run directory. A run with a summary and no status file is done.

    Raises:
        CompareError: no config.yaml, or a config.yaml or metrics.csv that cannot be read.
    """
    path = Path(path)
    if not (path / "config.yaml").is_file():
        raise CompareError(f"{path}: not a run directory (no config.yaml)")
    try:
        raw = yaml.safe_load((path / "config.yaml").read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise CompareError(f"{path}/config.yaml: cannot be read ({' '.join(str(err).split())[:200]})") from None
    if not isinstance(raw, dict):
        raise CompareError(f"{path}/config.yaml: expected a mapping of config keys, found {type(raw).__name__}")
    config = flatten(raw)
    try:
        metrics = pd.read_csv(path / "metrics.csv") if (path / "metrics.csv").is_file() else pd.DataFrame()
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise CompareError(f"{path}/metrics.csv: cannot be read ({' '.join(str(err).split())[:200]})") from None
    if len(metrics) and "epoch" not in metrics:
        raise CompareError(f"{path}/metrics.csv: has no epoch column; not a run's metrics")
    status = read_json(path / "status.json")
    summary = read_json(path / "summary.json")
    state = status.get("status") or ("done" if summary else ("running" if len(metrics) else "missing"))
    seconds = status.get("seconds", summary.get("wall_seconds", float("nan")))
    return Run(name or path.name, path, config, metrics, state, status.get("error", ""), float(seconds))


def load_runs(paths: Sequence[Path], names: Sequence[str], warn) -> list[Run]:
    """The runs that can be read; `warn(message)` hears of each that cannot, which is left out.

    Raises:
        CompareError: none of them can be read.
    """
    runs, problems = [], []
    for path, name in zip(paths, names):
        try:
            runs.append(load_run(path, name=name))
        except CompareError as err:
            problems.append(str(err))
            warn(f"{err}; left out")
    if not runs:
        raise CompareError("nothing to compare: " + "; ".join(problems))
    return runs


def differing_keys(runs: Sequence[Run]) -> list[str]:
    """The config keys whose values differ between runs: what a comparison is about."""
    keys = sorted({k for r in runs for k in r.config} - {"name", "trainer.progress"})
    return [k for k in keys if len({json.dumps(r.config.get(k), sort_keys=True) for r in runs}) > 1]


def results_table(runs: Sequence[Run], params: Sequence[str], metric: str, mode: str) -> pd.DataFrame:
    """One row per run: its parameters, final and best metrics, epochs, seconds and status."""
    rows = []
    for run in runs:
        row: dict[str, Any] = {"trial": run.name}
        row |= {p: _cell(run.config.get(p)) for p in params}
        row["seed"] = run.config.get("seed")
        row["status"] = run.status
        m = run.metrics
        if len(m):
            row |= {f"final {c}": float(m[c].iloc[-1]) for c in m if "/" in c}
            if metric in m and m[metric].notna().any():
                best = m[metric].idxmax() if mode == "max" else m[metric].idxmin()
                row[f"best {metric}"] = float(m[metric][best])
                row["best epoch"] = int(m["epoch"][best])
            row["epochs"] = int(m["epoch"].iloc[-1])
        row["seconds"] = run.seconds
        row["error"] = run.error
        rows.append(row)
    return pd.DataFrame(rows)


def _cell(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def by_setting(df: pd.DataFrame, params: Sequence[str], metric: str, mode: str) -> pd.DataFrame:
    """Mean and std of the final target metric over seeds, per setting, best first."""
    col = f"final {metric}"
    done = df[df["status"] == "done"] if "status" in df else df
    if col not in done or done.empty:
        return pd.DataFrame()
    keys = list(params) or ["trial"]
    grouped = done.groupby(keys, dropna=False, sort=False)[col]
    table = grouped.agg(["mean", "std", "count"]).reset_index()
    table["std"] = table["std"].fillna(0.0)
    seconds = done.groupby(keys, dropna=False, sort=False)["seconds"].mean().reset_index(drop=True)
    table["seconds"] = seconds.to_numpy()
    return table.sort_values("mean", ascending=(mode == "min"), kind="stable").reset_index(drop=True)


def markdown(df: pd.DataFrame, params: Sequence[str], metric: str, mode: str, title: str) -> str:
    """results.md: settings sorted by the target metric (mean +- std over seeds), then every trial."""
    lines = [f"# {title}", ""]
    table = by_setting(df, params, metric, mode)
    if not table.empty:
        best = table.iloc[0]
        lines += [f"Target: {metric} ({'higher' if mode == 'max' else 'lower'} is better), final epoch, "
                  f"mean +- std over seeds.", ""]
        header = [*(params or ["trial"]), metric, "seeds", "seconds"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for _, r in table.iterrows():
            cells = [_fmt(r[p]) for p in (params or ["trial"])]
            cells += [f"{r['mean']:.4f} +- {r['std']:.4f}", str(int(r["count"])), f"{r['seconds']:.1f}"]
            lines.append("| " + " | ".join(cells) + " |")
        shown = ", ".join(f"{p}={_fmt(best[p])}" for p in (params or ["trial"]))
        lines += ["", f"Best: {shown}: {metric} {best['mean']:.4f} +- {best['std']:.4f}", ""]
    failed = df[df["status"].isin(["failed"])] if "status" in df else df.iloc[:0]
    if len(failed):
        lines += ["## Failed trials", ""] + [f"- {r['trial']}: {r['error']}" for _, r in failed.iterrows()] + [""]
    lines += ["## All trials", "", *_md_table(df.drop(columns=["error"], errors="ignore")), ""]
    return "\n".join(lines)


def _md_table(df: pd.DataFrame) -> list[str]:
    rows = [[_fmt(v) if not (isinstance(v, float) and math.isnan(v)) else "" for v in r] for r in df.itertuples(index=False)]
    return ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)] + [
        "| " + " | ".join(r) + " |" for r in rows
    ]


def write_report(out_dir: Path, runs: Sequence[Run], params: Sequence[str], metric: str, mode: str, title: str) -> pd.DataFrame:
    """results.csv, results.md, curves.png, and per parameter <metric>_vs_<param>.png, with
    heatmap.png when exactly two parameters were varied, and progress.png (the metric against
    examples seen and against training seconds, D2L 11.5's figure) when the batch size was."""
    df = results_table(runs, params, metric, mode)
    disk.write_atomic(out_dir / "results.csv", df.to_csv(index=False, float_format="%.8g"))
    disk.write_atomic(out_dir / "results.md", markdown(df, params, metric, mode, title))
    _save(out_dir / "curves.png", compare_figures.curves_figure(runs, metric, title))
    for p in params:
        _save(out_dir / f"{_safe(metric)}_vs_{_safe(p)}.png", compare_figures.param_figure(df, p, metric))
    if len(params) == 2:
        _save(out_dir / "heatmap.png", compare_figures.heatmap_figure(df, params, metric))
    if "data.batch_size" in params:
        _save(out_dir / "progress.png", compare_figures.progress_figure(runs, metric, title))
    return df


def _safe(name: str) -> str:
    return name.replace("/", "_").replace(".", "_")


def _save(path: Path, fig) -> None:
    if fig is None:
        return
    plots.write_figure(path, fig)
