"""`dlrun sweep`: run a sweep's trials in groups, prune with successive halving, and bring the
results back as one table.

Execution: trials that differ only in state values (`core.sweep.groups.group_key`) are trained
as one vectorised program; each group (or single trial) is a task, run in this process, in a
pool of worker processes that split the CPU cores between them, or on a Ray cluster
(`core.sweep.executors`). The sweep directory is described in `core.sweep.plan`.

This module imports JAX only inside tasks: a worker limits its CPU threads before JAX starts.
"""

from __future__ import annotations

import math
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

from .. import disk
from ..config import load_config
from ..errors import DlrunError, TrainingInterrupted
from ..report import compare, tracking
from ..report.status import read_status, write_status
from . import executors
from .plan import (
    FINAL,
    Plan,
    SingleRunner,
    checkpoint_epoch,
    reset_trial,
)
from .spec import SweepSpec, swept_keys


class Task(NamedTuple):
    """One unit of work for an executor: trial directories trained together (`vectorised`) or
    one after another, up to `stop_epoch` (None: to the end)."""

    dirs: tuple[str, ...]
    vectorised: bool
    stop_epoch: int | None
    run_single: SingleRunner
    plot: bool = False


# ----------------------------------------------------------------------------- tasks


def run_task(task: Task) -> list[dict[str, Any]]:
    """Train one task's trials; write each one's status.json; return one outcome per trial.

    A trial that fails is recorded (status "failed" and the message) and reported on stderr at
    once; the task goes on with the others.
    """
    dirs = [Path(d) for d in task.dirs]
    configs = [load_config(d / "config.yaml") for d in dirs]
    results: list[dict[str, Any]] = []
    if task.vectorised:
        from .groups import train_chunks

        t0 = time.perf_counter()

        def on_event(i: int, status: str, message: str) -> None:
            if status == "failed":
                print(f"trial {dirs[i].name} failed: {message}", file=sys.stderr, flush=True)

        try:
            outcomes = train_chunks(configs, dirs, task.stop_epoch, on_event, plot=task.plot)
        except Exception as err:  # the whole group failed before training (data, memory, ...)
            message = _message(err)
            print(f"group of {len(dirs)} trials ({dirs[0].name}, ...) failed: {message}", file=sys.stderr, flush=True)
            outcomes = [None] * len(dirs)
            results = [_record(d, "failed", time.perf_counter() - t0, error=message) for d in dirs]
            return results
        seconds = time.perf_counter() - t0
        for d, o in zip(dirs, outcomes):
            results.append(_record(d, o.status, seconds, error=o.error, summary=o.summary))
        return results
    for cfg, d in zip(configs, dirs):
        t0 = time.perf_counter()
        try:
            summary = task.run_single(cfg, d, task.stop_epoch, task.plot)
        except TrainingInterrupted:  # Ctrl-C: stop the sweep, not just this trial
            raise
        except Exception as err:
            message = _message(err)
            print(f"trial {d.name} failed: {message}", file=sys.stderr, flush=True)
            results.append(_record(d, "failed", time.perf_counter() - t0, error=message))
            continue
        epochs = summary.get("epochs", cfg.trainer.epochs)
        status = "done" if task.stop_epoch is None or epochs >= cfg.trainer.epochs else "stopped"
        results.append(_record(d, status, time.perf_counter() - t0, summary=summary))
    return results


def _message(err: BaseException) -> str:
    """A user's error as its message; anything else (a bug) with its type and where it happened."""
    if isinstance(err, DlrunError):
        return str(err)
    return f"internal error {type(err).__name__}: {err}\n{''.join(traceback.format_exception(err)[-3:])}"


def _record(run_dir: Path, status: str, seconds: float, error: str | None = None, summary: dict | None = None) -> dict[str, Any]:
    epochs = (summary or {}).get("epochs")
    before = read_status(run_dir)
    earlier = before.get("seconds")
    if before.get("status") == "stopped" and isinstance(earlier, (int, float)) and not isinstance(earlier, bool):
        seconds += earlier  # trained rung by rung: the seconds add up (a damaged record adds nothing)
    write_status(run_dir, status, seconds=seconds, epochs=epochs, error=error or "")
    return {"dir": str(run_dir), "status": status, "seconds": seconds, "error": error or "", "summary": summary or {}}


def plan_tasks(plan: Plan, pending: Sequence[int], stop_epoch: int | None, workers: int,
               single: SingleRunner) -> list[Task]:
    """Group pending trials into tasks: shape-compatible trials that stand at the same epoch
    form one vectorised task (at most `max_group` trials); the rest run one by one. With more
    workers than tasks, the largest groups are split so that every worker has work."""
    from .groups import group_key

    groups: dict[tuple, list[int]] = {}
    singles: list[int] = []
    for i in pending:
        cfg = plan.config(i)
        start = checkpoint_epoch(plan.dirs[i])
        # a trial on several devices trains alone: a vectorised group runs on one device
        if not plan.spec.vectorize or cfg.experiment.name != "train" or start is None or cfg.trainer.devices != 1:
            singles.append(i)
        else:
            groups.setdefault((group_key(cfg), start), []).append(i)
    chunks = []
    for members in groups.values():
        for k in range(0, len(members), plan.spec.max_group):
            chunks.append(members[k : k + plan.spec.max_group])
    while len(chunks) + len(singles) < workers and any(len(c) > 1 for c in chunks):
        largest = max(chunks, key=len)
        chunks.remove(largest)
        half = math.ceil(len(largest) / 2)
        chunks += [largest[:half], largest[half:]]
    tasks = []
    for c in sorted(chunks, key=lambda c: c[0]):
        tasks.append(Task(tuple(str(plan.dirs[i]) for i in c), len(c) > 1, stop_epoch, single, plan.spec.trial_plots))
    tasks += [Task((str(plan.dirs[i]),), False, stop_epoch, single, plan.spec.trial_plots) for i in singles]
    return tasks


# ----------------------------------------------------------------------------- the sweep


def run(plan: Plan, single: SingleRunner, workers: int = 1, executor: str = "local", address: str | None = None,
        echo: Callable[[str], None] = print) -> Any:
    """Run every trial that has not ended (done or pruned), then write the results table and plots.

    With `scheduler: halving`, trials are trained rung by rung (min_epochs, x eta, ...) and at
    each rung all but the best 1/eta of those still in are pruned; the ranking uses the target
    metric at the rung's epoch, so a resumed sweep makes the same decisions again.

    `single(cfg, run_dir, stop_epoch, plot) -> summary` trains a trial that is not vectorised
    (the generic loop or the config's experiment module: `dlrun.experiments.run_trial`).

    Returns the results table (a pandas DataFrame, one row per trial).
    """
    with disk.RunLock(plan.path):
        for i, d in enumerate(plan.dirs):
            if read_status(d).get("status") == "failed":
                reset_trial(d)
        first = plan.config(0)
        epochs = first.trainer.epochs
        tracking.prepare_sweep(first, plan.path, plan.spec.name, plan.dirs,
                               [{**t.params, "seed": t.seed} for t in plan.trials], plan.metric)
        rungs = _rungs(plan.spec, epochs)
        total = len(plan.trials)
        for stop in [*rungs, None]:
            target = stop or epochs
            pending = [i for i in range(total) if _needs_training(plan.dirs[i], target)]
            if pending:
                tasks = plan_tasks(plan, pending, stop, workers, single)
                _run_tasks(tasks, workers, executor, address, echo, stop, total)
            if stop is not None:
                _prune(plan, stop, echo)
        runs = compare.load_runs(plan.dirs, [d.name for d in plan.dirs], lambda m: echo(f"warning: {m}"))
        params = swept_keys(plan.spec)
        df = compare.write_report(plan.path, runs, params, plan.metric, plan.mode, title=plan.spec.name)
        if first.trainer.log_to:
            tracking.finish_sweep(plan.path, _best(df, plan.metric, plan.mode))
    return df


def _best(df, metric: str, mode: str) -> dict[str, float]:
    """The final metrics of the trial whose final target metric is best (for the sweep's parent
    run in MLflow), named without the table's "final " prefix."""
    column = f"final {metric}"
    if df is None or df.empty or column not in df or df[column].isna().all():
        return {}
    values = df[column].astype(float)
    row = df.loc[values.idxmax() if mode == "max" else values.idxmin()]
    return {k.removeprefix("final "): float(v) for k, v in row.items()
            if str(k).startswith("final ") and isinstance(v, (int, float)) and v == v}


def _rungs(spec: SweepSpec, epochs: int) -> list[int]:
    if spec.scheduler is None:
        return []
    rungs, r = [], spec.scheduler.min_epochs
    while r < epochs:
        rungs.append(r)
        r *= spec.scheduler.eta
    return rungs


def _needs_training(run_dir: Path, target_epoch: int) -> bool:
    status = read_status(run_dir)
    if status.get("status") in FINAL or status.get("status") == "failed":
        return False
    return not (status.get("status") == "stopped" and (status.get("epochs") or 0) >= target_epoch)


def _run_tasks(tasks, workers, executor, address, echo, stop, total) -> None:
    if executor == "ray":
        results = executors.execute_ray(run_task, tasks, address, max(1, (os.cpu_count() or 1) // max(workers, 1)))
    elif workers > 1 and len(tasks) > 1:
        results = executors.execute_pool(run_task, tasks, workers)
    else:
        results = executors.execute_local(run_task, tasks)
    what = f" to epoch {stop}" if stop else ""
    echo(f"{sum(len(t.dirs) for t in tasks)} trials{what} in {len(tasks)} tasks "
         f"({sum(t.vectorised for t in tasks)} vectorised), executor {executor}, {workers} worker(s)")
    for task, outcomes in results:
        for o in outcomes:
            name = Path(o["dir"]).name
            metrics = "  ".join(f"{k} {v:.4f}" for k, v in o["summary"].items() if "/" in k and isinstance(v, float))
            echo(f"  {o['status']:<7} {name}  {metrics or o['error'].splitlines()[0] if o['error'] else metrics}  ({o['seconds']:.1f} s)")


def _prune(plan: Plan, rung: int, echo) -> None:
    """Keep the best ceil(n / eta) of the trials still in at this rung; mark the rest pruned."""
    import pandas as pd

    eta = plan.spec.scheduler.eta
    scores = {}
    for i, d in enumerate(plan.dirs):
        status = read_status(d)
        if status.get("status") == "failed" or (status.get("status") == "pruned" and status.get("rung", 0) < rung):
            continue
        metrics = pd.read_csv(d / "metrics.csv") if (d / "metrics.csv").is_file() else None
        row = metrics[metrics["epoch"] == rung] if metrics is not None and "epoch" in metrics else None
        if row is None or row.empty or plan.metric not in row:
            continue
        value = float(row[plan.metric].iloc[0])
        scores[i] = value if math.isfinite(value) else (-math.inf if plan.mode == "max" else math.inf)
    ranked = sorted(scores, key=lambda i: (-scores[i] if plan.mode == "max" else scores[i], i))
    keep = set(ranked[: max(1, math.ceil(len(ranked) / eta))])
    for i in ranked:
        if i not in keep and read_status(plan.dirs[i]).get("status") != "done":
            status = read_status(plan.dirs[i])
            write_status(plan.dirs[i], "pruned", rung=rung, epochs=rung, seconds=status.get("seconds", 0.0), error="")
    echo(f"halving at epoch {rung}: {len(keep)} of {len(ranked)} trials go on ({plan.metric}, {plan.mode})")
