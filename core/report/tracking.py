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

from .records import ARTIFACT_SKIP, TRACKING, read_record, update_record  # noqa: F401 - TRACKING: the file's name
from .sinks import MLFLOW_STATUS, MLflowSink, TensorBoardSink, mlflow_client, mlflow_experiment

SINKS = ("tensorboard", "mlflow")


def warn(message: str) -> None:
    """A warning on stderr, flushed at once (a run's progress goes to stdout)."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


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
                 lrs: Callable[[], np.ndarray] | None = None, warn: Callable[[str], None] = warn):
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


# ----------------------------------------------------------------------------- opening


def open_tracking(cfg, run_dir: Path, lrs: Callable[[], np.ndarray] | None = None,
                  warn: Callable[[str], None] = warn) -> Tracking:
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
                  metric: str, warn: Callable[[str], None] = warn) -> None:
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


def finish_sweep(sweep_dir: Path, best: dict[str, float], status: str = "done", warn: Callable[[str], None] = warn) -> None:
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
