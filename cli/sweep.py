"""`dlrun sweep` and `dlrun compare`: parse arguments, call core.sweep / core.compare."""

from __future__ import annotations

import contextlib
import os
import signal
from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional

import typer

from dlrun.cli.errors import fail, guarded
from dlrun.cli.options import LogToOpt, MlflowUriOpt, tracking_overrides
from dlrun.core.errors import ConfigError


def _spec_from_arguments(target: Path, grid, random, trials, seeds, metric, scheduler, vectorize):
    """A sweep file read and completed by the options, or a spec built from a config and options."""
    from dlrun.core.sweep.spec import SweepSpec, is_sweep_file, read_spec, split_values

    params = {}
    for item in grid:
        key, sep, values = item.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise ConfigError(f"--grid {item}: expected KEY=V1,V2,... e.g. optimizer.lr=0.01,0.1")
        if key.strip() in params:
            raise ConfigError(f"--grid {item}: {key.strip()} is given twice; give each key once, with all its values")
        params[key.strip()] = split_values(values)
    for item in random:
        key, sep, dist = item.partition("=")
        if not sep or not key.strip() or not dist.strip():
            raise ConfigError(f"--random {item}: expected KEY=DISTRIBUTION, e.g. optimizer.lr=loguniform(1e-3,1)")
        if key.strip() in params:
            raise ConfigError(f"--random {item}: {key.strip()} is given twice (by --grid or --random); give each key once")
        params[key.strip()] = dist.strip()
    if is_sweep_file(target):
        spec, base = read_spec(target)
        raw = spec.model_dump() | {"parameters": spec.parameters | params}
    else:
        if not params:
            raise ConfigError(f"{target}: is a config, not a sweep file; say what to vary with --grid KEY=V1,V2 or --random KEY=DIST")
        base = target.resolve()
        raw = {"name": target.stem, "base": str(base), "parameters": params}
    raw |= {k: v for k, v in {"trials": trials, "seeds": seeds, "metric": metric}.items() if v is not None}
    if scheduler == "halving":
        raw["scheduler"] = raw.get("scheduler") or {"name": "halving"}
    if not vectorize:
        raw["vectorize"] = False
    from pydantic import ValidationError

    from dlrun.core.config.messages import describe_errors

    try:
        return SweepSpec.model_validate(raw), base
    except ValidationError as err:
        raise ConfigError(describe_errors(err, SweepSpec, "command line")) from None


def sweep(
    ctx: typer.Context,
    target: Annotated[Optional[Path], typer.Argument(help="A sweep file (configs/sweeps/*.yaml), or a config to sweep with --grid/--random.")] = None,
    overrides: Annotated[Optional[list[str]], typer.Option("--set", help="Override a value in every trial: --set trainer.epochs=5.")] = None,
    *,
    grid: Annotated[Optional[list[str]], typer.Option("--grid", help="A grid axis: --grid optimizer.lr=0.01,0.1,0.5 (repeatable).")] = None,
    random: Annotated[Optional[list[str]], typer.Option("--random", help="A random-search axis: --random 'optimizer.lr=loguniform(1e-3,1)'.")] = None,
    trials: Annotated[Optional[int], typer.Option(help="Random search: how many draws.")] = None,
    seeds: Annotated[Optional[int], typer.Option(help="Repeat each trial with this many seeds.")] = None,
    metric: Annotated[Optional[str], typer.Option(help="Target metric, e.g. val/acc (default) or val/loss.")] = None,
    scheduler: Annotated[Optional[str], typer.Option(help="'halving': successive halving of the trials.")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes (the CPU cores are split between them).")] = 1,
    executor: Annotated[str, typer.Option(help="'local' (this machine) or 'ray' (a Ray cluster).")] = "local",
    address: Annotated[Optional[str], typer.Option(help="Ray cluster address HOST:PORT (default: start a local one).")] = None,
    vectorize: Annotated[bool, typer.Option(help="Train shape-compatible trials together under jax.vmap.")] = True,
    out: Annotated[Optional[Path], typer.Option(help="Sweep directory (default: outputs/sweeps/<name>-<time>).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the trials and their groups; run nothing.")] = False,
    max_trials: Annotated[int, typer.Option(min=1, help="Refuse a sweep of more trials than this (counted before any is made).")] = 10_000,
    resume: Annotated[Optional[Path], typer.Option(help="Finish the sweep in this directory: skip finished trials.")] = None,
    log_to: LogToOpt = None,
    mlflow_uri: MlflowUriOpt = None,
) -> None:
    """Run a grid or random search over a config; one table (results.csv/.md) and plots at the end."""
    from dlrun.core.sweep import plan as sweep_plan
    from dlrun.core.sweep import run as sweep_run
    from dlrun.core.sweep.spec import swept_keys
    from dlrun.experiments import run_trial

    if executor not in ("local", "ray"):
        raise fail(f"--executor {executor}: expected 'local' or 'ray'", 2)
    if scheduler not in (None, "halving"):
        raise fail(f"--scheduler {scheduler}: expected 'halving'", 2)
    tracked = tracking_overrides(log_to, mlflow_uri)
    with guarded(ctx):
        if resume is not None:
            if target is not None or grid or random or overrides or tracked:
                raise fail("--resume DIR takes everything from the sweep directory; "
                           "give no TARGET, --grid, --random, --set, --log-to or --mlflow-uri", 2)
            plan = sweep_plan.load(resume)
        else:
            if target is None:
                raise fail("give a sweep file or a config with --grid/--random, or --resume DIR", 2)
            spec, base = _spec_from_arguments(target, grid or [], random or [], trials, seeds, metric, scheduler, vectorize)
            if dry_run:
                _print_dry_run(spec, base, [*(overrides or []), *tracked], str(target), max_trials)
                return
            plan = sweep_plan.create(spec, base, [*(overrides or []), *tracked], str(target), out, max_trials=max_trials)
    typer.echo(f"sweep directory: {plan.path} ({len(plan.trials)} trials)")
    resume_hint = f"dlrun sweep --resume {plan.path}"
    try:
        with guarded(ctx, plan.path, resume_hint=resume_hint), _sigterm_interrupts():
            df = sweep_run.run(plan, run_trial, workers=workers, executor=executor, address=address, echo=typer.echo)
    except KeyboardInterrupt:
        typer.secho(f"interrupted; finished trials are kept. Resume with:\n  {resume_hint}", err=True)
        raise typer.Exit(code=130) from None
    _print_results(plan.path, df, plan.metric, plan.mode, swept_keys(plan.spec))
    if (df["status"] == "failed").any():
        raise typer.Exit(code=1)


@contextlib.contextmanager
def _sigterm_interrupts():
    """SIGTERM stops a sweep as Ctrl-C does: its workers stop after a checkpoint, the resume
    command is printed (a trial training in this process handles SIGTERM itself meanwhile)."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _print_dry_run(spec, base: Path, extra: list[str], source: str, max_trials: int) -> None:
    from dlrun.core.sweep.groups import group_key
    from dlrun.core.sweep.plan import resolve
    from dlrun.core.sweep.spec import _short, metric_and_mode

    trials, configs = resolve(spec, base, extra, source, max_trials)
    groups: dict[str, int] = {}
    for t, cfg in zip(trials, configs):
        group = groups.setdefault(group_key(cfg), len(groups)) if spec.vectorize and cfg.experiment.name == "train" and cfg.trainer.devices == 1 else "-"
        values = "  ".join(f"{k}={_short(v)}" for k, v in t.params.items())
        typer.echo(f"{t.index:>4}  group {group}  {values}  seed={t.seed}")
    metric, mode = metric_and_mode(spec, configs[0])
    typer.echo(f"{len(trials)} trials in {len(groups) or len(trials)} group(s) from {base}; target {metric} ({mode})"
               + (f"; successive halving, eta {spec.scheduler.eta}" if spec.scheduler else ""))


def _print_results(path: Path, df, metric: str, mode: str, params: list[str]) -> None:
    from dlrun.core.report.compare import by_setting

    table = by_setting(df, params, metric, mode)
    counts = df["status"].value_counts().to_dict()
    typer.echo("trials: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    if not table.empty:
        best = table.iloc[0]
        shown = ", ".join(f"{p}={best[p]}" for p in params) or str(best.get("trial"))
        typer.echo(f"best: {shown}: {metric} {best['mean']:.4f} +- {best['std']:.4f} over {int(best['count'])} seed(s)")
        done = df[df["status"] == "done"]
        top = done[f"final {metric}"].idxmax() if mode == "max" else done[f"final {metric}"].idxmin()
        typer.echo(f"best trial: {path / 'trials' / done['trial'][top]} ({metric} {done[f'final {metric}'][top]:.4f})")
    typer.echo(f"results: {path}/results.csv, results.md, curves.png")


def compare(
    paths: Annotated[list[Path], typer.Argument(help="A sweep directory, or run directories to compare.")],
    *,
    metric: Annotated[Optional[str], typer.Option(help="Target metric (default val/acc where runs have it, else val/loss).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Where to write the table and plots (default: the sweep directory, or outputs/compare-<time>).")] = None,
) -> None:
    """Compare finished runs: one table (results.csv/.md) and plots of their curves and settings."""
    from dlrun.core.report import compare as core_compare
    from dlrun.core.sweep import plan as sweep_plan
    from dlrun.core.sweep.spec import swept_keys

    with guarded():
        if len(paths) == 1 and os.path.lexists(paths[0] / sweep_plan.SWEEP_FILE):
            _regular_files(paths[0], sweep_plan.SWEEP_FILE, sweep_plan.TRIALS_FILE)
            plan = sweep_plan.load(paths[0])
            runs = core_compare.load_runs(plan.dirs, [d.name for d in plan.dirs], _warn)
            params = swept_keys(plan.spec)
            metric, mode = metric or plan.metric, plan.mode if metric in (None, plan.metric) else _mode(metric)
            target, title = out or plan.path, plan.spec.name
        else:
            runs = core_compare.load_runs(paths, [str(p) for p in paths], _warn)
            params = core_compare.differing_keys(runs)
            metric = metric or ("val/acc" if all("val/acc" in r.metrics for r in runs) else "val/loss")
            mode = _mode(metric)
            target = out or Path("outputs") / f"compare-{datetime.now():%Y%m%d-%H%M%S}"
            title = "comparison"
    _make_out(target, given=out is not None)
    try:
        df = core_compare.write_report(target, runs, params, metric, mode, title)
    except OSError as err:
        why = f"cannot be written ({err.strerror or err}: {err.filename or target})"
        raise _out_error(target, out is not None, why) from None
    typer.echo(core_compare.markdown(df, params, metric, mode, title).split("## All trials")[0].rstrip())
    typer.echo(f"\nwritten: {target}/results.csv, results.md, curves.png")


def _regular_files(directory: Path, *names: str) -> None:
    """A usage error naming the first of the sweep's files that is a FIFO, a device or a
    directory (reading one would hang, or fail later with less to say)."""
    from dlrun.core.report.status import DamagedFile, check_regular

    for name in names:
        try:
            check_regular(directory / name)
        except DamagedFile as err:
            raise fail(f"{err}; not a sweep directory that can be compared", 2) from None


def _make_out(target: Path, given: bool) -> None:
    """The directory for the table and plots, made if need be; a usage error (exit 2) naming it
    when it is a file, or cannot be made or written."""
    try:
        if target.exists() and not target.is_dir():
            raise _out_error(target, given, "exists and is not a directory; give a directory for the table and plots")
        target.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _out_error(target, given, f"cannot be made ({err.strerror or err})") from None
    if not os.access(target, os.W_OK | os.X_OK):
        raise _out_error(target, given, "is not writable")


def _out_error(target: Path, given: bool, why: str) -> typer.Exit:
    return fail(f"--out {target}: {why}" if given else f"{target}: {why}; choose another directory with --out", 2)


def _warn(message: str) -> None:
    typer.secho(f"warning: {message}", err=True, fg=typer.colors.YELLOW)


def _mode(metric: str) -> str:
    return "max" if metric.endswith("acc") else "min"
