"""Model selection by polynomial degree (D2L 4.4, exercise 4.4.2): final train and test loss
against the number of polynomial features, one run of the generic loop per degree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from dlrun.core import disk
from dlrun.core.config import (
    Config,
    PolynomialData,
    Section,
    derive,
    validate_options,
)
from dlrun.core.report import outputs, plots, progress
from dlrun.core.training.train import train


class DegreeOptions(Section):
    name: str = "polynomial_degrees"
    num_features: tuple[int, ...] = Field(tuple(range(1, 21)), min_length=1, description="1 = a constant ... 20 = degree 19")


def run(cfg: Config, run_dir: Path, source: str = "config") -> dict[str, Any]:
    """Train the config once per `num_features` value; write degrees.csv, degrees.png, summary.json."""
    opts = validate_options(DegreeOptions, cfg, source)
    if not isinstance(cfg.data, PolynomialData):
        from dlrun.core.config import ConfigError

        raise ConfigError(f"{source}: data.name: the polynomial_degrees experiment needs data 'polynomial', found '{cfg.data.name}'")
    rows, notes = [], progress.notes(cfg.trainer.progress)
    for k in opts.num_features:
        trial = derive(cfg, {"data.num_features": k, "trainer.progress": "none"}, source)
        result = train(trial, run_dir / f"features_{k:02d}")
        row = {"num_features": k, "degree": k - 1, "train/loss": result.summary["train/loss"], "val/loss": result.summary["val/loss"]}
        rows.append(row)
        outputs.write_metrics(run_dir / "degrees.csv", rows)
        notes.note(f"num_features {k:2d}  train/loss {row['train/loss']:.4g}  val/loss {row['val/loss']:.4g}")
    best = min(rows, key=lambda r: r["val/loss"])
    summary = {"best/num_features": best["num_features"], "best/val/loss": best["val/loss"], "runs": rows}
    disk.write_json(run_dir / "summary.json", summary)
    _plot(run_dir / "degrees.png", rows)
    return summary


def _plot(path: Path, rows: list[dict[str, Any]]) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    for split, style in (("train", "-o"), ("val", "--s")):
        ax.plot([r["degree"] for r in rows], [r[f"{split}/loss"] for r in rows], style, label=f"{split}/loss")
    ax.set(xlabel="polynomial degree (features - 1)", ylabel="final loss", yscale="log", title="Model selection by degree (D2L 4.4)")
    ax.grid(alpha=0.3)
    ax.legend()
    plots.write_figure(path, fig)
