"""Options that several commands share: where a run's metrics are tracked besides its directory."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

LogToOpt = Annotated[Optional[list[str]], typer.Option(
    "--log-to", rich_help_panel="Tracking",
    help="Also track the run in 'tensorboard' (event files in RUN/tb) or 'mlflow' (repeatable); "
         "sets trainer.log_to.")]
MlflowUriOpt = Annotated[Optional[str], typer.Option(
    "--mlflow-uri", rich_help_panel="Tracking",
    help="MLflow tracking URI, e.g. http://127.0.0.1:5000 or sqlite:///mlflow.db "
         "(default: $MLFLOW_TRACKING_URI, else a SQLite store in ./mlruns); sets trainer.mlflow_uri.")]


def tracking_overrides(log_to: list[str] | None, mlflow_uri: str | None) -> list[str]:
    """--log-to and --mlflow-uri as --set overrides (validated with the rest of the config)."""
    sets = []
    if log_to:
        sets.append(f"trainer.log_to={json.dumps(list(log_to))}")
    if mlflow_uri is not None:
        sets.append(f"trainer.mlflow_uri={json.dumps(mlflow_uri)}")
    return sets
