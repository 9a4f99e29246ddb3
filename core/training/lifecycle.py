"""One run's lifecycle, from its lock to summary.json, for one config or a vectorised group.

`run_trials` is the only place that takes runs through their life: lock each run directory and
write its config.yaml (first, so that a run killed during start-up stays resumable), load the
data, build each run (`core.training.setup`), start each trial fresh or from its checkpoint,
open its tracking, compile the program, run the one epoch loop (`core.training.loop`), then
close each trial the same way: metrics.csv, params.npz, what its model family adds (a language model's
sample, a translation model's BLEU and attention panels), the pictures (through the `Figures`
hook) and summary.json. What differs between one config (`core.training.train`) and a
vectorised group (`core.training.vectorised`) is only the `Compile` function: the program it
builds and how the state sits on the device.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import jax

from .. import disk
from ..config import Config, to_yaml
from ..data import Dataset
from ..data.vocab_file import save_vocab
from ..nn.losses import Metric
from ..report.figures import Figures, Pictures, Schedule
from ..report.progress import Reporter
from . import compile_cache
from .checkpoint import list_checkpoints
from .inference import after_training
from .loop import run_epochs
from .optimizers import learning_rates
from .predictions import image_predictions
from .program import Program
from .setup import Setup, build_setup
from .signals import StopFlag
from .summary import make_summary
from .transfer import save_params
from .trial import Trial, start_trial

# compile(setups, trials, datasets) -> (program, device state): one program for all `trials`
Compile = Callable[[list[Setup], list[Trial], list[Dataset]], tuple[Program, Any]]


class TrialOutcome(NamedTuple):
    status: str  # "done", "stopped" (at stop_epoch, resumable) or "failed"
    summary: dict[str, Any] | None
    error: str | None


class Finished(NamedTuple):
    outcomes: list[TrialOutcome]  # one per config, in order
    trials: list[Trial]
    setups: list[Setup]
    state: Any  # the program's final device state


def run_trials(
    cfgs: Sequence[Config],
    run_dirs: Sequence[str | Path],
    load_data: Callable[[], list[Dataset]],
    compile: Compile,
    *,
    resume: bool,
    stop_epoch: int | None = None,
    figures: Figures | None = None,
    reporter: Reporter,
    keys: Sequence[jax.Array | None] | None = None,
    eval_metrics: dict[str, Metric] | None = None,
    regroup: bool = False,
    on_event: Callable[[int, str, str], None] | None = None,
) -> Finished:
    """Train `cfgs` into `run_dirs` as one program, each trial ending with a full run directory.

    Args:
        load_data: the data set of each config, loaded once the configs are on disk.
        compile: builds the program and its device state (one run, or a group).
        resume: continue each trial from its newest checkpoint, if it has one.
        stop_epoch: stop after this epoch with a checkpoint (successive halving's rungs).
        figures: draws each trial's pictures (None: no pictures).
        keys: each run's root key (default `PRNGKey(cfg.seed)`).
        eval_metrics: what evaluation reports (default: the loss, and accuracy for classifiers).
        regroup: a trial that diverges is failed and the others go on (compiled again without
            it); otherwise divergence ends the run with `TrainingDiverged`.
        on_event: `(index, status, message)` for each trial's end, as it happens.

    Raises:
        TrainingDiverged: a non-finite loss or gradient (without `regroup`).
        TrainingInterrupted: SIGINT or SIGTERM; a checkpoint was written first.
    """
    t_start = time.perf_counter()
    compile_cache.enable()
    run_dirs = [Path(d) for d in run_dirs]
    keys = list(keys) if keys is not None else [None] * len(cfgs)
    # the command that trains installed its flag before importing JAX; a run started otherwise installs its own
    with contextlib.ExitStack() as stack:
        stop = stack.enter_context(StopFlag().installed())
        for cfg, run_dir in zip(cfgs, run_dirs):
            run_dir.mkdir(parents=True, exist_ok=True)
            stack.enter_context(disk.RunLock(run_dir, reentrant=True))  # `dlrun train` holds it already
            disk.write_atomic(run_dir / "config.yaml", to_yaml(cfg))  # first: a killed run stays resumable
        datasets = load_data()
        stop.check(f"during start-up, {_kept(run_dirs[0])}")
        setups = [build_setup(cfg, data, eval_metrics) for cfg, data in zip(cfgs, datasets)]
        trials = [start_trial(cfg, d, s, k if k is not None else jax.random.PRNGKey(cfg.seed), resume)
                  for cfg, d, s, k in zip(cfgs, run_dirs, setups, keys)]
        stop.check(f"during start-up, {_kept(run_dirs[0])}")
        for trial in trials:  # each closed once its summary.json is written, or with how the run stopped
            stack.enter_context(trial.tracking)
        index = {id(t): i for i, t in enumerate(trials)}
        active = list(range(len(trials)))
        program, state = compile(setups, trials, list(datasets))
        compile_seconds = [program.compile_seconds]
        stop.check(f"during start-up, {_kept(run_dirs[0])}")  # a signal during compilation waits for it to end

        def rebuild(survivors: list[int], states) -> tuple[Program, Any]:
            nonlocal active
            active = [active[i] for i in survivors]
            program, state = compile([setups[i] for i in active], [trials[i] for i in active], [datasets[i] for i in active])
            compile_seconds.append(program.compile_seconds)
            return program, state

        def on_fail(trial: Trial) -> None:
            if on_event:
                on_event(index[id(trial)], "failed", trial.error)

        last_epoch = min(stop_epoch or cfgs[0].trainer.epochs, cfgs[0].trainer.epochs)
        if figures is not None:  # matplotlib loads in another thread while this one waits on XLA
            figures.preload()
        done: list[Trial] = []
        try:
            state, done = run_epochs(program, state, trials, last_epoch, stop, reporter,
                                     rebuild if regroup else None, on_fail if regroup else None)
        finally:
            reporter.close()
            for trial in trials:  # however the run ends, its metrics and curves are on disk
                if trial.error is None:
                    trial.finish(figures)
        # a stop asked for after the last epoch lets the run finish its files: it is complete
        outcomes = {index[id(t)]: TrialOutcome("failed", None, t.error) for t in trials if t.error}
        for trial in done:
            i = index[id(trial)]
            summary = close_trial(trial, setups[i], datasets[i], figures, wall_seconds=time.perf_counter() - t_start,
                                  compile_seconds=sum(compile_seconds), loop=program.label, group_size=len(cfgs))
            status = "done" if len(trial.rows) >= trial.cfg.trainer.epochs else "stopped"
            outcomes[i] = TrialOutcome(status, summary, None)
            if on_event:
                on_event(i, status, "")
        return Finished([outcomes[i] for i in range(len(cfgs))], trials, setups, state)


def close_trial(trial: Trial, setup: Setup, data: Dataset, figures: Figures | None, **timings: Any) -> dict[str, Any]:
    """A trained trial's last files, the same for a run alone and a trial of a group: what its
    model family adds after training, its schedule and attention pictures, summary.json."""
    cfg = trial.cfg
    extra, attention = after_training(setup, trial.state, data, pictures=figures is not None, rows=trial.rows)
    if figures is not None:
        schedule = None
        if cfg.optimizer.schedule.name != "constant":
            schedule = Schedule(learning_rates(cfg, setup.steps_per_epoch), setup.steps_per_epoch, cfg.optimizer.schedule.name)
        samples = trial.snapshots()  # a generator's, after each epoch
        real = data.x_train[:100] if samples and samples[0][1].ndim == 2 else None
        predictions = image_predictions(setup, trial.state, data)  # a detector's boxes, a segmenter's masks
        if schedule is not None or attention or samples or predictions is not None:
            figures.draw(trial.run_dir, cfg.name, Pictures(schedule=schedule, attention=attention, samples=samples, real=real,
                                                           predictions=predictions))
    save_params(trial.run_dir, trial.state)  # by name, for a run that starts from this one (init_from)
    if "vocab" in data.meta:  # and the tokens its ids stand for, for one that reads text as this one did
        save_vocab(trial.run_dir, data.meta["vocab"])
    summary = make_summary(trial.rows, trial.state.params, data, **timings, **extra)
    disk.write_json(trial.run_dir / "summary.json", summary)
    return summary


def _kept(run_dir: Path) -> str:
    """What a stop during start-up leaves: the checkpoint it would have resumed from, or nothing."""
    found = list_checkpoints(run_dir / "checkpoints")
    return f"before training on from {found[-1].name} (kept)" if found else "before the first epoch (nothing was trained)"
