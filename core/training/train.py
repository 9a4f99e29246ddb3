"""`train(cfg, run_dir)`: one run, from a config to a finished run directory.

It writes config.yaml first (so that a run killed during start-up can be resumed), takes the
run directory's lock, builds the run (`core.training.setup`), restores the newest checkpoint
when resuming, compiles the program, runs the one epoch loop (`core.training.loop`) and
writes summary.json. Experiment modules call it for each model they train, with their own data,
root key and evaluation metrics.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax

from ..config import Config, load_config, to_yaml
from ..config.changes import unsafe_changes
from ..data import Dataset, load_dataset
from ..errors import ConfigError
from ..nn.losses import Metric
from ..report import outputs, plots
from ..report.progress import Reporter, make_reporter
from . import compile_cache
from .checkpoint import list_checkpoints
from .devices import is_primary
from .inference import after_training
from .loop import run_epochs, start_trial
from .optimizers import learning_rates
from .program import single_program
from .setup import Setup, build_setup, eval_splits, train_arrays
from .signals import StopFlag
from .state import Arrays, TrainState
from .summary import make_summary


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
    reporter: Reporter | None = None,
    key: jax.Array | None = None,
    eval_metrics: dict[str, Metric] | None = None,
    splits: dict[str, Arrays] | None = None,
    primary: bool | None = None,
) -> Result:
    """Train as `cfg` says, writing config.yaml, metrics.csv (every few seconds), checkpoints
    (every `trainer.checkpoint_every` epochs), summary.json and curves.png into `run_dir`.

    Args:
        data: the data set (default: loaded as `cfg.data` says).
        resume: continue from the newest checkpoint in `run_dir`; the result is the same, bit
            for bit, as a run that was never stopped.
        stop_epoch: stop after this epoch with a checkpoint (successive halving trains a trial
            rung by rung this way).
        plot: write curves.png (a sweep draws all its trials in one picture instead).
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
    compile_cache.enable()
    run_dir = Path(run_dir)
    if not (primary if primary is not None else is_primary()):  # another process of a run over several: train alike, keep nothing
        with tempfile.TemporaryDirectory(prefix="dlrun-process-") as scratch:
            if resume and (run_dir / "checkpoints").is_dir():  # process 0's, on a shared file system
                shutil.copytree(run_dir / "checkpoints", Path(scratch) / "checkpoints")
            quiet = cfg.model_copy(update={"trainer": cfg.trainer.model_copy(update={"log_to": ()})})  # process 0 tracks
            return train(quiet, Path(scratch) / "run", data=data, resume=resume, stop_epoch=stop_epoch, plot=False,
                         reporter=make_reporter("none", cfg.trainer.epochs, cfg.name), key=key,
                         eval_metrics=eval_metrics, splits=splits, primary=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    loading = None
    # the command that trains installed its flag before importing JAX; a run started otherwise installs its own
    with outputs.RunLock(run_dir, reentrant=True), StopFlag().installed() as stop:  # `dlrun train` holds the lock
        t_start = time.perf_counter()
        outputs.write_atomic(run_dir / "config.yaml", to_yaml(cfg))  # first: a killed run stays resumable
        data = data if data is not None else load_dataset(cfg.data, cfg.seed)
        stop.check(f"during start-up, {_kept(run_dir)}")
        setup = build_setup(cfg, data, eval_metrics)
        key = key if key is not None else jax.random.PRNGKey(cfg.seed)
        trial = start_trial(cfg, run_dir, setup, key, resume)
        stop.check(f"during start-up, {_kept(run_dir)}")
        with trial.tracking:  # closed once summary.json is written, or with how the run stopped
            state = setup.devices.put(trial.state) if setup.devices else jax.device_put(trial.state)
            program = single_program(setup, state, trial.keys, train_arrays(data), eval_splits(data, splits))
            stop.check(f"during start-up, {_kept(run_dir)}")  # a signal during compilation waits for it to end
            reporter = reporter or make_reporter(cfg.trainer.progress, cfg.trainer.epochs, cfg.name)
            last_epoch = min(stop_epoch or cfg.trainer.epochs, cfg.trainer.epochs)
            if plot:  # matplotlib loads in another thread while this one waits on XLA
                loading = plots.preload_plotting()
            try:
                state, _ = run_epochs(program, state, [trial], last_epoch, stop, reporter)
            finally:
                reporter.close()
                if loading is not None:
                    loading.join()  # an import still under way in another thread must end first
                trial.finish(plot)
            # a stop asked for after the last epoch lets the run finish its files: it is complete
            if plot and cfg.optimizer.schedule.name != "constant":
                plots.plot_schedule(run_dir / "schedule.png", learning_rates(cfg, setup.steps_per_epoch),
                                      setup.steps_per_epoch, title=f"{cfg.name}: {cfg.optimizer.schedule.name} schedule")
            extra = after_training(setup, state, data, run_dir if plot else None)
            summary = make_summary(trial.rows, state.params, data, wall_seconds=time.perf_counter() - t_start,
                                   compile_seconds=program.compile_seconds, loop=program.label, **extra)
            outputs.write_json(run_dir / "summary.json", summary)
        return Result(state, trial.rows, summary, setup)


def _kept(run_dir: Path) -> str:
    """What a stop during start-up leaves: the checkpoint it would have resumed from, or nothing."""
    found = list_checkpoints(run_dir / "checkpoints")
    return f"before training on from {found[-1].name} (kept)" if found else "before the first epoch (nothing was trained)"


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
    unsafe = unsafe_changes(saved, cfg)
    if unsafe:
        raise ConfigError(
            f"{saved_path}: resuming with a changed config is refused for: {', '.join(unsafe)}; "
            "only trainer.epochs may grow (and trainer.progress, log_to and mlflow_uri change). Start a new run instead."
        )
    return cfg
