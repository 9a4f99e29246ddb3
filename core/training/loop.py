"""The one epoch loop.

`run_epochs` drives a `Program` (one run, or a vectorised group of trials) epoch by epoch:
train, check every trial's loss and gradients are finite, evaluate, append each trial's metrics
row, checkpoint when due, rewrite metrics.csv every few seconds, report, and stop cleanly on
SIGINT/SIGTERM. Divergence, interruption, checkpoints and metrics writing exist only here; the
run around it (from the lock to summary.json) is `core.training.lifecycle`.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np

from ..errors import TrainingDiverged, TrainingInterrupted
from ..report.progress import Reporter
from . import checkpoint
from .program import HostMetrics, Program
from .signals import StopFlag
from .state import TrainState
from .summary import epoch_row
from .trial import Trial

# metrics.csv is rewritten (atomically) at most this often, and always when the run ends:
# rewriting it after each of 1500 one-millisecond epochs would cost more than the training
METRICS_WRITE_INTERVAL = 2.0


def divergence_message(trial: Trial, epoch: int, batch: int, steps_per_epoch: int) -> str:
    step = (epoch - 1) * steps_per_epoch + batch
    kept = (f"epochs 1-{len(trial.rows)} and the last checkpoint are kept in {trial.run_dir}" if trial.rows
            else f"nothing was trained yet in {trial.run_dir}")
    return (f"the loss or a gradient became non-finite at step {step} (epoch {epoch}, batch {batch}); {kept}. "
            "Start a new run with a lower optimizer.lr or with gradient clipping (--set optimizer.clip_norm=1.0); "
            "resuming keeps the config, so it would diverge again.")


def _first_bad_batch(metrics: HostMetrics) -> int | None:
    finite = np.asarray(metrics.get("finite", np.ones(0, bool)), bool)
    return None if finite.all() else int(np.argmin(finite))


Rebuild = Callable[[list[int], list[TrainState]], tuple[Program, Any]]


def run_epochs(
    program: Program,
    state: Any,
    trials: list[Trial],
    last_epoch: int,
    stop: StopFlag,
    reporter: Reporter,
    rebuild: Rebuild | None = None,
    on_fail: Callable[[Trial], None] | None = None,
) -> tuple[Any, list[Trial]]:
    """Train `trials` (all at the same position) from there to `last_epoch`.

    A trial whose loss or gradient stops being finite ends the run with `TrainingDiverged`
    when there is no `rebuild`; in a group, it is recorded as failed (`on_fail` hears of it)
    and `rebuild(survivors, their host states)` compiles the group again without it.
    Returns the final device state and the trials still training.

    Raises:
        TrainingDiverged: a non-finite loss or gradient, without `rebuild`.
        TrainingInterrupted: SIGINT or SIGTERM; a checkpoint was written first.
    """
    start = trials[0].position
    last_write = -math.inf
    for epoch in range(start.epoch + 1, last_epoch + 1):
        first = start.batch if epoch == start.epoch + 1 else 0
        t_epoch = time.perf_counter()
        state, batch_metrics, done = program.epoch(state, epoch, first, stop)
        if first:  # resumed inside this epoch (one run, per step): the batches before count too
            partial = {k: np.asarray([m[k] for m in trials[0].partial]) for k in batch_metrics[0]}
            batch_metrics = [{k: np.concatenate([partial[k].astype(v.dtype), v]) for k, v in batch_metrics[0].items()}]
        failed = {i: bad for i, m in enumerate(batch_metrics) if (bad := _first_bad_batch(m)) is not None}
        if failed and rebuild is None:
            raise TrainingDiverged(divergence_message(trials[0], epoch, failed[0] + 1, program.steps_per_epoch))
        if done < program.steps_per_epoch:  # stopped inside the epoch
            rows = [{k: float(v[i]) for k, v in batch_metrics[0].items()} for i in range(done)]
            trials[0].save(program.host_states(state)[0], checkpoint.Position(epoch - 1, done), rows)
            raise TrainingInterrupted(f"stopped in epoch {epoch} after batch {done}; checkpoint written")
        seconds = time.perf_counter() - t_epoch
        evaluated = program.evaluate(state)
        shots = program.snapshot(state) if program.snapshot is not None else None
        every = trials[0].cfg.trainer.checkpoint_every
        due = bool(every and epoch % every == 0) or epoch == last_epoch or stop.requested
        host = program.host_states(state) if due or failed else None
        write = time.perf_counter() - last_write > METRICS_WRITE_INTERVAL
        for i, trial in enumerate(trials):
            if i in failed:
                trial.error = divergence_message(trial, epoch, failed[i] + 1, program.steps_per_epoch)
                trial.finish(None)
                trial.tracking.close("diverged")
                if on_fail:
                    on_fail(trial)
                continue
            examples = epoch * program.steps_per_epoch * trial.cfg.data.batch_size
            trial.rows.append(epoch_row(epoch, batch_metrics[i], evaluated[i], seconds, examples))
            if shots is not None:
                trial.keep_snapshot(epoch, shots[i])
            trial.tracking.epoch(trial.rows[-1], batch_metrics[i], program.steps_per_epoch)
            trial.position = checkpoint.Position(epoch, 0)
            if due:
                trial.save(host[i], trial.position)
            elif host is not None:
                trial.state = host[i]
            if write:
                trial.write_metrics()
        if write:
            last_write = time.perf_counter()
        if len(trials) == 1 and not failed:
            reporter.epoch(trials[0].rows[-1])
        if failed:
            survivors = [i for i in range(len(trials)) if i not in failed]
            trials = [trials[i] for i in survivors]
            if not trials:
                return state, []
            program, state = rebuild(survivors, [t.state for t in trials])
        if stop.requested and epoch < trials[0].cfg.trainer.epochs:
            raise TrainingInterrupted(f"stopped after epoch {epoch}; checkpoint written")
    return state, trials
