"""Compare runs: one table (results.csv, results.md) and plots, from run directories on disk.

Used by `dlrun sweep` at the end of a sweep and by `dlrun compare` for any list of run
directories. Everything is read back from the files a run writes (config.yaml, metrics.csv,
summary.json and, in a sweep, status.json), so a comparison never needs the process that ran them.
A run with a damaged file (a FIFO or a directory in its place, a cell that is not a number, a
field of the wrong type, a config that is not a mapping) is left out, with a message naming the file.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np
import pandas as pd

from .. import disk
from ..config import flatten
from ..errors import CompareError
from . import compare_figures, plots
from .compare_figures import _fmt, canonical
from .runs import MAX_METRICS_BYTES, read_config
from .status import STATUS_FILE, SUMMARY_FIELDS, DamagedFile, checked_fields, checked_status, read_bytes, read_object


class Run(NamedTuple):
    name: str
    path: Path
    config: dict[str, Any]  # flattened: {"optimizer.lr": 0.1, ...}
    metrics: pd.DataFrame  # metrics.csv (numbers only), empty if the run wrote none
    status: str  # done, failed, pruned, stopped, running, missing
    error: str
    seconds: float


def load_run(path: str | Path, name: str | None = None) -> Run:
    """Read one run directory. A run with a summary and no status file is done.

    Raises:
        CompareError: no config.yaml, or a config.yaml, metrics.csv, status.json or summary.json
            that is damaged (a special file, unreadable, or not what it should hold); the message
            names the file and what is wrong with it.
    """
    path = Path(path)
    if not os.path.lexists(path / "config.yaml"):
        raise CompareError(f"{path}: not a run directory (no config.yaml)")
    try:
        config = {_printable(k): v for k, v in flatten(read_config(path)).items()}
    except DamagedFile as err:
        reason = str(err).removeprefix(f"{path / 'config.yaml'}: ")
        raise CompareError(f"{path / 'config.yaml'}: cannot be read ({reason})") from None
    metrics = _read_metrics(path / "metrics.csv")
    status, wrong = checked_status(path)
    if wrong:
        raise CompareError(_each_field(path / STATUS_FILE, wrong))
    try:
        summary, wrong = checked_fields(read_object(path / "summary.json") or {}, SUMMARY_FIELDS, path / "summary.json")
    except DamagedFile as err:
        raise CompareError(str(err)) from None
    if wrong:
        raise CompareError(_each_field(path / "summary.json", wrong))
    state = status.get("status") or ("done" if summary else ("running" if len(metrics) else "missing"))
    seconds = status.get("seconds", summary.get("wall_seconds", float("nan")))
    return Run(name or path.name, path, config, metrics, state, status.get("error", ""), seconds)


def _each_field(path: Path, wrong: dict[Any, str]) -> str:
    """What is wrong with one file, named once: `.../status.json: seconds: ...; pid: ...`."""
    return f"{path}: " + "; ".join(m.removeprefix(f"{path}: ") for m in wrong.values())


def _read_metrics(path: Path) -> pd.DataFrame:
    """metrics.csv with every cell a number (or empty); an empty frame when there is none."""
    try:
        data = read_bytes(path, MAX_METRICS_BYTES)
    except DamagedFile as err:
        raise CompareError(str(err)) from None
    if data is None:
        return pd.DataFrame()
    try:
        metrics = pd.read_csv(io.BytesIO(data))
    except ValueError as err:  # not UTF-8, not CSV, empty (pandas' errors are ValueErrors)
        raise CompareError(f"{path}: cannot be read ({' '.join(str(err).split())[:200]})") from None
    if len(metrics) and "epoch" not in metrics:
        raise CompareError(f"{path}: has no epoch column; not a run's metrics")
    for column in metrics.columns:
        values = metrics[column]
        numbers = values if compare_figures.numeric(values) else pd.to_numeric(values, errors="coerce")
        bad = (values.notna() if pd.api.types.is_bool_dtype(numbers) else numbers.isna() & values.notna()).to_numpy()
        if bad.any():
            row = int(bad.argmax())
            raise CompareError(f"{path}: row {row + 1}, column {column}: {values.iloc[row]!r} is not a number")
        metrics[column] = numbers
    if len(metrics) and not np.isfinite(metrics["epoch"].to_numpy(float)).all():
        row = int((~np.isfinite(metrics["epoch"].to_numpy(float))).argmax())
        raise CompareError(f"{path}: row {row + 1}: epoch is {metrics['epoch'].iloc[row]}; expected the epoch's number")
    return metrics


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
    return [k for k in keys if len({canonical(r.config.get(k)) for r in runs}) > 1]


def results_table(runs: Sequence[Run], params: Sequence[str], metric: str, mode: str) -> pd.DataFrame:
    """One row per run: its parameters, final and best metrics, epochs, seconds and status."""
    rows = []
    for run in runs:
        row: dict[str, Any] = {"trial": run.name}
        row |= {p: _cell(run.config.get(p)) for p in params}
        row["seed"] = _cell(run.config.get("seed"))
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
    """A config value as a table holds it: a number, printable string or empty as it is, else as JSON."""
    if isinstance(value, str):
        return _printable(value)
    return value if value is None or isinstance(value, (int, float)) else canonical(value)


def _printable(text: str) -> str:
    """`text`, or as JSON when it holds a control character (a carriage return would split a
    row of results.csv: pandas does not quote it)."""
    return text if text.isprintable() else json.dumps(text)


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
    """A metric or config key as part of a file name: val/acc -> val_acc, optimizer.lr -> optimizer_lr."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)[:100]


def _save(path: Path, fig) -> None:
    if fig is None:
        return
    plots.write_figure(path, fig)
