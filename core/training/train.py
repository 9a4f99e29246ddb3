"""`train(cfg, run_dir)`: one run, from a config to a finished run directory.

The run's lifecycle (lock, config.yaml, set-up, checkpoint, tracking, the epoch loop, what the
model family adds, pictures, summary.json) is `core.training.lifecycle.run_trials`; this module
gives it one run's program (`single_program`, on one device or data parallel over several) and
handles the processes of a run over several machines. Experiment modules call it for each model
they train, with their own data, root key and evaluation metrics.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import jax

from ..config import Config, load_config
from ..config.changes import require_resumable
from ..data import Dataset, load_dataset
from ..errors import ConfigError
from ..nn.losses import Metric
from ..report.figures import Figures, RunFigures
from ..report.progress import Reporter, make_reporter
from .devices import is_primary
from .lifecycle import run_trials
from .program import single_program
from .setup import Setup, eval_splits, train_arrays
from .state import Arrays, TrainState


class Result(NamedTuple):
    state: TrainState
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    setup: Setup


def train(
    cfg: Config,
    run_dir: str | Path,
    *,
    data: Dataset | None = None,
    resume: bool = False,
    stop_epoch: int | None = None,
    plot: bool = True,
    figures: Figures | None = None,
    reporter: Reporter | None = None,
    key: jax.Array | None = None,
    eval_metrics: dict[str, Metric] | None = None,
    splits: dict[str, Arrays] | None = None,
    primary: bool | None = None,
) -> Result:
    """Train as `cfg` says, writing config.yaml, metrics.csv (every few seconds), checkpoints
    (every `trainer.checkpoint_every` epochs), summary.json and the pictures into `run_dir`.

    Args:
        data: the data set (default: loaded as `cfg.data` says).
        resume: continue from the newest checkpoint in `run_dir`; the result is the same, bit
            for bit, as a run that was never stopped.
        stop_epoch: stop after this epoch with a checkpoint (successive halving trains a trial
            rung by rung this way).
        plot: draw the run's pictures (a sweep draws all its trials in one picture instead).
        figures: what draws them (default: `RunFigures`, PNG files in the run directory).
        key: the run's root key (default `PRNGKey(cfg.seed)`).
        eval_metrics, splits: what is evaluated after each epoch, on which splits (default:
            the loss, and accuracy for classifiers, on `val`).
        primary: whether this process writes `run_dir` (default: it is process 0). The other
            processes of a run over several machines train in a scratch directory, removed after.

    Raises:
        TrainingDiverged: a non-finite loss or gradient.
        TrainingInterrupted: SIGINT or SIGTERM; a checkpoint was written first.
        ConfigError: a batch larger than the training set.
    """
    run_dir = Path(run_dir)
    if not (primary if primary is not None else is_primary()):  # another process of a run over several: train alike, keep nothing
        with tempfile.TemporaryDirectory(prefix="dlrun-process-") as scratch:
            if resume and (run_dir / "checkpoints").is_dir():  # process 0's, on a shared file system
                shutil.copytree(run_dir / "checkpoints", Path(scratch) / "checkpoints")
            quiet = cfg.model_copy(update={"trainer": cfg.trainer.model_copy(update={"log_to": ()})})  # process 0 tracks
            return train(quiet, Path(scratch) / "run", data=data, resume=resume, stop_epoch=stop_epoch, plot=False,
                         reporter=make_reporter("none", cfg.trainer.epochs, cfg.name), key=key,
                         eval_metrics=eval_metrics, splits=splits, primary=True)

    def compile(setups, trials, datasets):
        setup, trial = setups[0], trials[0]
        state = setup.devices.put(trial.state) if setup.devices else jax.device_put(trial.state)
        return single_program(setup, state, trial.keys, train_arrays(datasets[0]), eval_splits(datasets[0], splits)), state

    done = run_trials(
        [cfg], [run_dir], lambda: [data if data is not None else load_dataset(cfg.data, cfg.seed)], compile,
        resume=resume, stop_epoch=stop_epoch, figures=(figures or RunFigures()) if plot else None,
        reporter=reporter or make_reporter(cfg.trainer.progress, cfg.trainer.epochs, cfg.name), keys=[key],
        eval_metrics=eval_metrics)
    return Result(done.state, done.trials[0].rows, done.outcomes[0].summary, done.setups[0])


def resume_config(run_dir: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """The config to resume `run_dir` with: its saved config plus `overrides`, which may only
    raise trainer.epochs (or change how progress is shown).

    Raises:
        ConfigError: the run directory has no config, or an override changes what was trained.
    """
    run_dir = Path(run_dir)
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        raise ConfigError(f"{run_dir}: not a run directory (no config.yaml)")
    saved = load_config(saved_path)
    cfg = load_config(saved_path, overrides)
    require_resumable(saved, cfg, f"{saved_path}: resuming with a changed config is refused for", "Start a new run instead.")
    return cfg
