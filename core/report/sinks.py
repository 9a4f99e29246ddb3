"""The tracking sinks `core.report.tracking` opens: TensorBoard event files and MLflow runs.

Each sink has `epoch(epoch, values, steps, first_step)`, `close(status)` and `abandon()` (drop
what is pending after a failure); `Tracking` calls them and drops a sink that raises.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from .records import ARTIFACT_SKIP, update_record

MLFLOW_FLUSH_SECONDS = 5.0  # metrics are sent in batches at most this often (and at the end)
# MLflow's HTTP client retries a dead server for minutes by default; a user's settings win
MLFLOW_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                        "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
# MLflow's terminal statuses for how a run ended (core.report.runs' words)
MLFLOW_STATUS = {"done": "FINISHED", "stopped": "FINISHED", "interrupted": "KILLED", "diverged": "FAILED",
                 "failed": "FAILED"}


# ----------------------------------------------------------------------------- TensorBoard


class TensorBoardSink:
    name = "tensorboard"

    def __init__(self, run_dir: Path, config_yaml: str, record: dict[str, Any]):
        from tensorboardX import SummaryWriter
        from tensorboardX.summary import hparams

        # a file of its own for each start (a resume in the same second would otherwise reuse the name)
        self.writer = SummaryWriter(str(run_dir / "tb"), flush_secs=10, filename_suffix=f".{os.getpid()}.{time.time_ns()}")
        self.writer.add_text("config", "```yaml\n" + config_yaml + "\n```", 0)
        hp = record.get("hparams")
        self._end = None
        if hp:  # a sweep trial: its HParams session, so that TensorBoard compares the trials
            experiment, start, end = hparams(dict(hp), {m: 0.0 for m in record.get("metrics", [])})
            for summary in (experiment, start):
                self.writer.file_writer.add_summary(summary)
            self._end = end

    def epoch(self, epoch: int, values: dict[str, float], steps: dict[str, np.ndarray], first_step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, epoch)
        for name, series in steps.items():
            for j, value in enumerate(series):
                self.writer.add_scalar(f"step/{name}", float(value), first_step + j)

    def close(self, status: str) -> None:
        if self._end is not None and status in ("done", "stopped"):
            self.writer.file_writer.add_summary(self._end)
        self.writer.close()

    def abandon(self) -> None:
        self.writer.close()


# ----------------------------------------------------------------------------- MLflow


def mlflow_client(uri: str):
    for key, value in MLFLOW_HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def mlflow_experiment(client, name: str, uri: str) -> str:
    """The id of the MLflow experiment `name`, created if needed. In the default SQLite store,
    artifacts go next to the database (`mlruns/artifacts/<name>`), wherever the run starts."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri[len("sqlite:///"):]).parent / "artifacts" / name).resolve().as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:  # noqa: BLE001 - another process created it first
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def flat_params(config: dict[str, Any]) -> dict[str, str]:
    """The flattened config as MLflow params (strings, at most 6000 characters each)."""
    from ..config import flatten

    return {k: json.dumps(v) if isinstance(v, (list, dict)) else str(v) for k, v in flatten(config).items()}


class MLflowSink:
    name = "mlflow"

    def __init__(self, run_dir: Path, name: str, config: dict[str, Any], uri: str, record: dict[str, Any]):
        from mlflow.entities import Param

        mine = dict(record.get("mlflow") or {})
        uri = mine.get("uri") or uri
        self.client = mlflow_client(uri)
        self.run_dir = run_dir
        run_id = mine.get("run_id")
        logged: dict[str, str] = {}
        if run_id:  # resuming: the same MLflow run goes on
            run = self.client.get_run(run_id)
            logged = dict(run.data.params)
            self.client.update_run(run_id, status="RUNNING")
        else:
            experiment = mine.get("experiment_id") or mlflow_experiment(self.client, name, uri)
            tags = {"dlrun.run_dir": str(run_dir.resolve())}
            if mine.get("parent_run_id"):
                tags["mlflow.parentRunId"] = mine["parent_run_id"]
            run_id = self.client.create_run(experiment, run_name=run_dir.name, tags=tags).info.run_id
            mine |= {"uri": uri, "experiment_id": experiment, "run_id": run_id}
            update_record(run_dir, mlflow=mine)
        self.run_id = run_id
        params = [Param(k, v[:6000]) for k, v in flat_params(config).items() if k not in logged]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(run_id, params=params[i: i + 100])
        self.pending: list = []
        self.last_flush = time.monotonic()

    def epoch(self, epoch: int, values: dict[str, float], steps: dict[str, np.ndarray], first_step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.pending += [Metric(k, v, now, epoch) for k, v in values.items()]
        if time.monotonic() - self.last_flush > MLFLOW_FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        for i in range(0, len(pending), 1000):  # MLflow takes at most 1000 metrics per batch
            self.client.log_batch(self.run_id, metrics=pending[i: i + 1000])
        self.last_flush = time.monotonic()

    def close(self, status: str) -> None:
        self.flush()
        for path in sorted(self.run_dir.iterdir()):
            if path.is_file() and path.name not in ARTIFACT_SKIP and not path.name.startswith("."):
                self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, MLFLOW_STATUS.get(status, "FAILED"))

    def abandon(self) -> None:
        self.pending = []
