"""Tracking in the tools users already have: TensorBoard event files and MLflow runs.

`trainer.log_to: [tensorboard, mlflow]` opens one `Tracking` per run (or per sweep trial) in
`core.training.loop.start_trial`; the one epoch loop hands it each epoch's metrics row and the
per-step metrics it already holds on the host (no extra device sync), and the run closes it
once summary.json is written, with how it ended.

- TensorBoard (`tensorboardX` writes, TensorBoard reads): `<run>/tb/`, every metric per epoch
  (step = epoch), the per-step loss and learning rate (`step/...`, step = optimizer update),
  the epoch's learning rate (`train/lr`) and the resolved config as text. A sweep trial also
  writes its HParams session (its swept values), so TensorBoard's HParams tab compares trials.
- MLflow (`MlflowClient`, explicit run ids, no global active run): params are the flattened
  config, metrics per epoch (batched, sent every few seconds), the run directory's files
  (not its checkpoints) as artifacts at the end; a sweep is a parent run with one nested run
  per trial. The run id is kept in `<run>/tracking.json`, so a resumed run continues its run.

A sink that fails (server down, disk full, library missing) warns once and is dropped: the
training goes on, and the run directory is complete whatever happens to the tracking.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import outputs

TRACKING = "tracking.json"
SINKS = ("tensorboard", "mlflow")
MLFLOW_FLUSH_SECONDS = 5.0  # metrics are sent in batches at most this often (and at the end)
# MLflow's HTTP client retries a dead server for minutes by default; a user's settings win
MLFLOW_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                        "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
# MLflow's terminal statuses for how a run ended (core.report.runs' words)
MLFLOW_STATUS = {"done": "FINISHED", "stopped": "FINISHED", "interrupted": "KILLED", "diverged": "FAILED",
                 "failed": "FAILED"}
ARTIFACT_SKIP = {".lock", TRACKING, "status.json"}  # status.json changes after the upload


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def read_record(run_dir: Path) -> dict[str, Any]:
    """The run's tracking.json: its MLflow ids, and a sweep trial's HParams values."""
    try:
        value = json.loads((Path(run_dir) / TRACKING).read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def update_record(run_dir: Path, **fields: Any) -> None:
    outputs.write_json(Path(run_dir) / TRACKING, read_record(run_dir) | fields)


def default_mlflow_uri() -> str:
    """$MLFLOW_TRACKING_URI, else a SQLite store in ./mlruns (MLflow's file store is deprecated)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{(Path.cwd() / 'mlruns' / 'mlflow.db').resolve()}"


def _status_of(exc: BaseException | None) -> str:
    from ..errors import TrainingDiverged, TrainingInterrupted

    if exc is None:
        return "done"
    if isinstance(exc, (TrainingInterrupted, KeyboardInterrupt)):
        return "interrupted"
    return "diverged" if isinstance(exc, TrainingDiverged) else "failed"


class Tracking:
    """A run's tracking sinks. Each call reaches every sink; a sink that raises is reported once
    (naming it and the error) and dropped, and the training goes on without it.

    Used as a context manager around a run: leaving it closes the sinks with how the run ended
    (done; interrupted, diverged or failed from the exception).
    """

    def __init__(self, sinks: Sequence[Any] = (), run_dir: Path | None = None,
                 lrs: Callable[[], np.ndarray] | None = None, warn: Callable[[str], None] = _warn):
        self.sinks = list(sinks)
        self.run_dir = run_dir
        self.warn = warn
        self._lrs_fn, self._lrs = lrs, None
        self.closed = False

    def __bool__(self) -> bool:
        return bool(self.sinks)

    def _each(self, what: str, call: Callable[[Any], None]) -> None:
        for sink in list(self.sinks):
            try:
                call(sink)
            except Exception as err:  # noqa: BLE001 - tracking must never stop the training
                self.sinks.remove(sink)
                where = f" for {self.run_dir}" if self.run_dir else ""
                self.warn(f"{sink.name} tracking failed while {what}{where} ({type(err).__name__}: {str(err)[:300]}); "
                          f"training goes on without it, and the run directory has every result")
                try:
                    sink.abandon()
                except Exception:  # noqa: BLE001
                    pass

    def _learning_rates(self) -> np.ndarray | None:
        if self._lrs is None and self._lrs_fn is not None:
            self._lrs = np.asarray(self._lrs_fn())
        return self._lrs

    def epoch(self, row: dict[str, Any], step_metrics: dict[str, np.ndarray], steps_per_epoch: int) -> None:
        """One finished epoch: its metrics row, and its per-step metrics (host arrays, one value
        per optimizer update of the epoch)."""
        if not self.sinks:
            return
        epoch = int(row["epoch"])
        first = (epoch - 1) * steps_per_epoch
        steps = {k: np.asarray(v, dtype=np.float64) for k, v in step_metrics.items() if k in ("loss", "acc")}
        lrs = None
        try:
            all_lrs = self._learning_rates()
            if all_lrs is not None and all_lrs.size >= first + steps_per_epoch:
                lrs = all_lrs[first: first + steps_per_epoch]
        except Exception as err:  # noqa: BLE001 - a schedule the tracker cannot evaluate
            self.warn(f"the learning rate is not tracked ({type(err).__name__}: {err})")
            self._lrs_fn = None
        if lrs is not None:
            steps["lr"] = np.asarray(lrs, dtype=np.float64)
        values = {k: float(v) for k, v in row.items() if k != "epoch" and isinstance(v, (int, float))}
        if lrs is not None:
            values["train/lr"] = float(lrs[0])
        self._each(f"logging epoch {epoch}", lambda s: s.epoch(epoch, values, steps, first + 1))

    def close(self, status: str) -> None:
        """Flush and close every sink, saying how the run ended; a second call does nothing."""
        if self.closed:
            return
        self.closed = True
        self._each("closing the run", lambda s: s.close(status))
        self.sinks = []

    def __enter__(self) -> Tracking:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(_status_of(exc))


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


# ----------------------------------------------------------------------------- opening


def open_tracking(cfg, run_dir: Path, lrs: Callable[[], np.ndarray] | None = None,
                  warn: Callable[[str], None] = _warn) -> Tracking:
    """The sinks `cfg.trainer.log_to` asks for, opened for `run_dir` (an empty `Tracking` when
    there are none). A sink that cannot open warns and is left out."""
    wanted = tuple(cfg.trainer.log_to)
    if not wanted:
        return Tracking()
    from ..config import to_yaml

    record = read_record(run_dir)
    tracking = Tracking([], run_dir, lrs, warn)
    openers = {
        "tensorboard": lambda: TensorBoardSink(run_dir, to_yaml(cfg), record),
        "mlflow": lambda: MLflowSink(run_dir, cfg.name, cfg.model_dump(mode="json"),
                                     cfg.trainer.mlflow_uri or default_mlflow_uri(), record),
    }
    for name in wanted:
        try:
            tracking.sinks.append(openers[name]())
        except ImportError as err:
            warn(f"{name} tracking is not installed ({err.name} is missing): pip install 'dlrun[{name}]'; "
                 "training goes on without it")
        except Exception as err:  # noqa: BLE001 - tracking must never stop the training
            warn(f"{name} tracking could not start for {run_dir} ({type(err).__name__}: {str(err)[:300]}); "
                 "training goes on without it, and the run directory has every result")
    return tracking


# ----------------------------------------------------------------------------- sweeps


def prepare_sweep(cfg, sweep_dir: Path, name: str, trial_dirs: Sequence[Path], trial_values: Sequence[dict[str, Any]],
                  metric: str, warn: Callable[[str], None] = _warn) -> None:
    """Before a sweep's trials run: each trial's tracking.json gets its HParams values and
    target metric (TensorBoard), and, with MLflow, the sweep's parent run, which its trials
    nest under. A resumed sweep keeps its parent run."""
    wanted = tuple(cfg.trainer.log_to)
    if not wanted:
        return
    metrics = list(dict.fromkeys([metric, "train/loss", "val/loss"]))
    for d, values in zip(trial_dirs, trial_values):
        update_record(d, hparams={k: v if isinstance(v, (int, float, str, bool)) else json.dumps(v) for k, v in values.items()},
                      metrics=metrics)
    if "mlflow" not in wanted:
        return
    try:
        record = read_record(sweep_dir).get("mlflow") or {}
        uri = record.get("uri") or cfg.trainer.mlflow_uri or default_mlflow_uri()
        client = mlflow_client(uri)
        if record.get("run_id"):
            client.update_run(record["run_id"], status="RUNNING")
        else:
            experiment = mlflow_experiment(client, name, uri)
            run = client.create_run(experiment, run_name=sweep_dir.name, tags={"dlrun.run_dir": str(sweep_dir.resolve())})
            record = {"uri": uri, "experiment_id": experiment, "run_id": run.info.run_id}
            update_record(sweep_dir, mlflow=record)
        for d in trial_dirs:
            mine = read_record(d).get("mlflow") or {}
            if not mine.get("run_id"):
                update_record(d, mlflow={"uri": uri, "experiment_id": record["experiment_id"],
                                         "parent_run_id": record["run_id"]})
    except Exception as err:  # noqa: BLE001 - tracking must never stop the sweep
        warn(f"mlflow tracking could not start for the sweep {sweep_dir} ({type(err).__name__}: {str(err)[:300]}); "
             "its trials are tracked as separate runs")


def finish_sweep(sweep_dir: Path, best: dict[str, float], status: str = "done", warn: Callable[[str], None] = _warn) -> None:
    """After a sweep: its parent MLflow run gets the best trial's metrics and the sweep's
    tables and plots as artifacts, and ends."""
    record = read_record(sweep_dir).get("mlflow") or {}
    if not record.get("run_id"):
        return
    try:
        from mlflow.entities import Metric

        client = mlflow_client(record["uri"])
        now = int(time.time() * 1000)
        metrics = [Metric(f"best/{k}", float(v), now, 0) for k, v in best.items() if isinstance(v, (int, float))]
        if metrics:
            client.log_batch(record["run_id"], metrics=metrics)
        for path in sorted(sweep_dir.iterdir()):
            if path.is_file() and path.name not in ARTIFACT_SKIP and not path.name.startswith("."):
                client.log_artifact(record["run_id"], str(path))
        client.set_terminated(record["run_id"], MLFLOW_STATUS.get(status, "FAILED"))
    except Exception as err:  # noqa: BLE001
        warn(f"mlflow tracking failed while closing the sweep {sweep_dir} ({type(err).__name__}: {str(err)[:300]})")


def forget_run(run_dir: Path) -> None:
    """A trial that starts over: its event files go, and it gets a new MLflow run (nested under
    the same parent)."""
    import shutil

    shutil.rmtree(Path(run_dir) / "tb", ignore_errors=True)
    record = read_record(run_dir)
    mine = record.get("mlflow")
    if isinstance(mine, dict) and "run_id" in mine:
        update_record(run_dir, mlflow={k: v for k, v in mine.items() if k != "run_id"})
