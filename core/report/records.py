"""A run's tracking.json: its MLflow ids (so that a resumed run continues its MLflow run) and,
for a sweep trial, its HParams values and the sweep's target metric."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import disk
from .status import read_json

TRACKING = "tracking.json"
ARTIFACT_SKIP = {".lock", TRACKING, "status.json"}  # status.json changes after the upload


def read_record(run_dir: Path) -> dict[str, Any]:
    """The run's tracking.json: its MLflow ids, and a sweep trial's HParams values ({} if none)."""
    return read_json(Path(run_dir) / TRACKING)


def update_record(run_dir: Path, **fields: Any) -> None:
    disk.write_json(Path(run_dir) / TRACKING, read_record(run_dir) | fields)
