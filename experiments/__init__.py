"""Experiment families that need more than the generic training loop, and the one place that
decides which procedure runs a config.

A config selects an experiment with `experiment: {name: ..., <options>}`; its module's
`run(cfg, run_dir, source) -> summary` validates its own options
(`core.config.validate_options`), prepares data, trains every model it needs through
`core.training.train` (the one loop) and adds its own report and pictures. `experiment.name:
train` (the default) is the generic loop itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, NamedTuple

from dlrun.core.config import Config, Section, validate_options
from dlrun.core.errors import ConfigError

from . import (
    attention,
    augmentation,
    bert_nli,
    bert_shapes,
    bpe,
    conv_kernel,
    corpus_stats,
    data_preprocessing,
    distribution_shift,
    fine_tuning,
    geometry,
    image_folders,
    initialization,
    kaggle_house,
    optimization,
    polynomial,
    sequence,
    style_transfer,
    text_cnn,
    word2vec_data,
    word_analogy,
)


class Experiment(NamedTuple):
    run: Callable[[Config, Path, str], dict[str, Any]]
    options: type[Section]  # the keys beside `experiment.name`, validated before anything is written
    metrics: tuple[str, ...] = ()  # summary.json's numbers that a config's `book.metric` may name


EXPERIMENTS: dict[str, Experiment] = {
    "data_preprocessing": Experiment(data_preprocessing.run, data_preprocessing.DataPreprocessingOptions, ("max_difference",)),
    "polynomial_degrees": Experiment(polynomial.run, polynomial.DegreeOptions),
    "initialization": Experiment(initialization.run, initialization.InitOptions),
    "distribution_shift": Experiment(distribution_shift.run, distribution_shift.DistributionShiftOptions),
    "kaggle_house": Experiment(kaggle_house.run, kaggle_house.KaggleHouseOptions, ("val/log_rmse", "train/log_rmse")),
    "conv_kernel": Experiment(conv_kernel.run, conv_kernel.ConvKernelOptions, ("loss", "max_abs_error")),
    "sine": Experiment(sequence.run, sequence.SequenceOptions, ("train/loss", "val/loss")),
    "corpus_stats": Experiment(corpus_stats.run, corpus_stats.CorpusStatsOptions),
    "nadaraya_watson": Experiment(attention.run_nadaraya_watson, attention.NadarayaWatsonOptions, ("loss", "w")),
    "positional_encoding": Experiment(attention.run_positional_encoding, attention.PositionalEncodingOptions),
    "optimization_toys": Experiment(optimization.run, optimization.OptimizationToysOptions, ("max_difference",)),
    # chapters 13-15: each module's own table of name -> (run, options, metrics)
    **{name: Experiment(*entry) for module in (augmentation, bert_nli, bert_shapes, bpe, fine_tuning, geometry, image_folders,
                                                  style_transfer, text_cnn, word2vec_data, word_analogy)
       for name, entry in module.EXPERIMENTS.items()},
}


def experiment_for(cfg: Config, source: str = "config") -> Experiment | None:
    """The experiment module's `run` for `experiment.name`, or None for the generic loop.

    Raises:
        ConfigError: an unknown experiment name (the message lists the valid ones).
    """
    name = cfg.experiment.name
    if name == "train":
        return None
    if name not in EXPERIMENTS:
        valid = ", ".join(["train", *sorted(EXPERIMENTS)])
        raise ConfigError(f"{source}: experiment.name: unknown experiment '{name}'; expected one of: {valid}")
    experiment = EXPERIMENTS[name]
    validate_options(experiment.options, cfg, source)
    if cfg.book is not None and cfg.book.metric not in experiment.metrics:
        reports = ", ".join(experiment.metrics) or "no number a book result could name"
        raise ConfigError(f"{source}: book.metric: experiment '{name}' never reports {cfg.book.metric!r}; it reports {reports}")
    return experiment


def run_config(cfg: Config, run_dir: str | Path, *, resume: bool = False, source: str = "config",
               stop_epoch: int | None = None, plot: bool = True, reporter=None, track: bool = True) -> dict[str, Any]:
    """Run a config as it asks (the generic loop or its experiment) into `run_dir`; the summary.
    With `track`, the run keeps its status.json current (`core.report.runs`: what `dlrun runs`
    lists); a sweep's trials keep the sweep's own instead.

    Raises:
        ConfigError: an unknown experiment, or resuming or stopping early an experiment (which
            runs whole); and whatever `train` raises.
    """
    from dlrun.core import disk

    experiment = experiment_for(cfg, source)
    if experiment is not None and (resume or stop_epoch is not None):
        raise ConfigError(f"{source}: experiment '{cfg.experiment.name}' runs whole; it cannot be resumed or stopped at an epoch")
    from dlrun.core.training.devices import is_primary

    run_dir = Path(run_dir)
    if not is_primary():  # another process of a run over several machines: process 0 writes run_dir
        if experiment is not None:
            raise ConfigError(f"{source}: experiment '{cfg.experiment.name}' runs in one process; start it without --coordinator")
        return _run(cfg, run_dir, experiment, resume, source, stop_epoch, plot, reporter)
    run_dir.mkdir(parents=True, exist_ok=True)
    with disk.RunLock(run_dir):
        if not track:
            return _run(cfg, run_dir, experiment, resume, source, stop_epoch, plot, reporter)
        from dlrun.core.errors import TrainingDiverged, TrainingInterrupted
        from dlrun.core.report import status

        status.mark_started(run_dir, cfg.trainer.epochs, resume)
        try:
            summary = _run(cfg, run_dir, experiment, resume, source, stop_epoch, plot, reporter)
        except TrainingInterrupted as err:
            status.write_status(run_dir, "interrupted", error=str(err))
            raise
        except TrainingDiverged as err:
            status.write_status(run_dir, "diverged", error=str(err))
            raise
        except BaseException as err:
            status.write_status(run_dir, "interrupted" if isinstance(err, KeyboardInterrupt) else "failed",
                      error=f"{type(err).__name__}: {err}"[:500])
            raise
        stopped = stop_epoch is not None and stop_epoch < cfg.trainer.epochs
        status.write_status(run_dir, "stopped" if stopped else "done", epochs=summary.get("epochs"))
        return summary


def _run(cfg, run_dir: Path, experiment, resume, source, stop_epoch, plot, reporter) -> dict[str, Any]:
    if experiment is None:
        from dlrun.core.training.train import train

        return train(cfg, run_dir, resume=resume, stop_epoch=stop_epoch, plot=plot, reporter=reporter).summary
    from dlrun.core import disk
    from dlrun.core.config import to_yaml

    disk.write_atomic(run_dir / "config.yaml", to_yaml(cfg))
    return experiment.run(cfg, run_dir, source)


def run_trial(cfg: Config, run_dir: Path, stop_epoch: int | None, plot: bool = False) -> dict[str, Any]:
    """A sweep trial that is not vectorised: resumes from its checkpoint if it has one."""
    from dlrun.core.report.progress import make_reporter

    experiment = experiment_for(cfg)
    return run_config(cfg, run_dir, resume=experiment is None, stop_epoch=stop_epoch, plot=plot,
                      reporter=make_reporter("none", 0, cfg.name), source=str(run_dir / "config.yaml"), track=False)


class ReproductionTask(NamedTuple):
    """One config of `dlrun reproduce` (picklable: it travels to worker processes and Ray).
    `resume`: its directory holds an unfinished run (a report stopped or killed), which is
    resumed from its checkpoint when it can be, else cleared and run again."""

    config: str
    run_dir: str
    overrides: tuple[str, ...]
    resume: bool = False


def _clear(run_dir: Path) -> None:
    """Empty an unfinished run directory of a report, so that its config runs afresh."""
    import shutil

    if run_dir.is_dir():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)


def run_reproduction(task: ReproductionTask) -> dict[str, Any]:
    """Run one config of a reproduction into its directory. A failure is recorded in the result,
    so that the other configs go on; an interruption (Ctrl-C) stops the whole report."""
    import time

    from dlrun.core.config import load_config
    from dlrun.core.errors import ConfigError, RunDirError, TrainingInterrupted
    from dlrun.core.report.progress import make_reporter

    t0 = time.perf_counter()
    try:
        cfg = load_config(task.config, list(task.overrides))
        reporter = make_reporter("none", cfg.trainer.epochs, cfg.name)
        resume = task.resume and cfg.experiment.name == "train"  # an experiment runs whole: it is run again
        if task.resume and not resume:
            _clear(Path(task.run_dir))
        try:
            summary = run_config(cfg, task.run_dir, resume=resume, source=task.config, plot=True, reporter=reporter)
        except (ConfigError, RunDirError):
            if not resume:
                raise
            _clear(Path(task.run_dir))  # its checkpoints are of another config (--quick, an edited file): start over
            summary = run_config(cfg, task.run_dir, source=task.config, plot=True, reporter=reporter)
        numbers = {k: v for k, v in summary.items() if isinstance(v, (int, float, str, bool)) or v is None}
        return {"status": "done", "summary": numbers, "seconds": time.perf_counter() - t0, "error": ""}
    except TrainingInterrupted:
        raise
    except Exception as err:  # noqa: BLE001 - one config's failure must not stop the others
        return {"status": "failed", "summary": {}, "seconds": time.perf_counter() - t0,
                "error": f"{type(err).__name__}: {err}".strip()[:2000]}
