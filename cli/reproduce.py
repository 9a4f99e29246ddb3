"""`dlrun reproduce`: parse arguments, call core.report.reproduce."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional

import typer

from dlrun.cli.errors import fail, guarded


def reproduce(
    ctx: typer.Context,
    targets: Annotated[Optional[list[str]], typer.Argument(
        help="Sections (4.6), chapters (4) or config files; none: every config with a book result.")] = None,
    *,
    workers: Annotated[int, typer.Option(min=1, help="Run this many configs at once, in worker processes.")] = 1,
    executor: Annotated[str, typer.Option(help="local (worker processes) or ray.")] = "local",
    address: Annotated[Optional[str], typer.Option(help="Ray cluster address (default: a local Ray instance).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Report directory (default: outputs/reproduce-<time>).")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue this report: finished runs are kept.")] = None,
    quick: Annotated[bool, typer.Option(help="Every config at a reduced size (1 epoch, few examples), no verdicts.")] = False,
    configs: Annotated[Optional[Path], typer.Option(
        help="The directory of configs (default: ./configs, or on --resume the report's own).")] = None,
) -> None:
    """Run the configs of book sections and report ours next to the book's: reproduction.csv,
    .md and a self-contained .html. Exit 0 when none falls short of the book, 1 listing those that do."""
    from dlrun.core.report import reproduce as core

    if executor not in ("local", "ray"):
        raise fail(f"--executor {executor}: expected local or ray", 2)
    if resume is not None and out is not None:
        raise fail("--resume DIR continues that report; give no --out", 2)
    with guarded(ctx):
        if resume is not None and resume.is_dir() and core.is_report(resume):
            targets, quick, configs = core.report_targets(resume, targets, quick, configs)  # what the report was made of
        configs = configs if configs is not None else Path("configs")
        if not configs.is_dir():
            raise fail(f"{configs}: no such directory of configs (run from the project root or give --configs)", 2)
        entries = core.select(configs, targets or [])
        if not entries:
            raise fail(f"{configs}: no config declares a book result", 2)
        report = resume or out or Path("outputs") / f"reproduce-{datetime.now():%Y%m%d-%H%M%S}"
        if resume is not None and not resume.is_dir():
            raise fail(f"--resume {resume}: no such report directory", 2)
        if resume is not None and not core.is_report(resume):
            raise fail(f"--resume {resume}: not a report of dlrun reproduce (it has no {core.REPORT_MARK}); "
                       "give a report directory, or --out DIR for a new report", 2)
        report.mkdir(parents=True, exist_ok=True)
        core.mark_report(report, quick, targets or [], configs)
    typer.echo(f"report directory: {report} ({len(entries)} configs{', quick' if quick else ''})")
    hint = f"dlrun reproduce --resume {report}"
    from dlrun.core.training.signals import StopFlag

    # one flag for the whole report: a stop asked for between configs, or while a run closes,
    # stops the report after that config, with the command that finishes what is missing
    try:
        with guarded(ctx, report, resume_hint=hint), StopFlag().installed() as stop:
            rows = _run(core, entries, report, workers, executor, address, quick, stop)
    except KeyboardInterrupt:  # Ctrl-C twice: at once
        typer.secho(f"interrupted; finished configs are kept. Resume with:\n  {hint}", err=True)
        raise typer.Exit(code=130) from None
    typer.echo(core.headline(rows, quick))
    typer.echo(f"report: {report}/reproduction.md, reproduction.html, reproduction.csv")
    short = [r for r in rows if r["verdict"] in ("short", "failed")]
    if short:
        typer.echo("short of the book or failed: " + ", ".join(f"{r['config']} ({r['verdict']})" for r in short))
        raise typer.Exit(code=1)


def _run(core, entries, report: Path, workers: int, executor: str, address, quick: bool, stop) -> list[dict]:
    from dlrun.core.config import load_config
    from dlrun.core.sweep import executors
    from dlrun.experiments import ReproductionTask, run_reproduction

    results, tasks = {}, []
    for entry in entries:
        run_dir = report / entry.name
        done = core.finished(run_dir)
        if done is not None and done.get("quick", False) == quick:
            results[entry.name] = done
            typer.echo(f"  kept    {entry.section:6s} {entry.name}")
            continue
        quiet = ("trainer.progress=none",)  # one line per config here; the runs' own reports are in their directories
        overrides = quiet + (tuple(core.quick_overrides(load_config(entry.path))) if quick else ())
        tasks.append(ReproductionTask(str(entry.path), str(run_dir), overrides, resume=core.unfinished(run_dir)))
    by_dir = {t.run_dir: t for t in tasks}
    names = {str(report / e.name): e for e in entries}
    if executor == "ray":
        stream = executors.execute_ray(run_reproduction, tasks, address, 1)
    elif workers > 1 and len(tasks) > 1:
        stream = executors.execute_pool(run_reproduction, tasks, workers)
    else:
        stream = executors.execute_local(run_reproduction, tasks)
    for task, result in stream:
        entry = names[by_dir[task.run_dir].run_dir]
        result["quick"] = quick
        core.record(Path(task.run_dir), result)
        results[entry.name] = result
        value = result["summary"].get(entry.metric)
        shown = f"{entry.metric} {value:.4g}" if isinstance(value, (int, float)) else result["error"][:120]
        typer.echo(f"  {result['status']:7s} {entry.section:6s} {entry.name}  {shown}  ({result['seconds']:.1f} s)")
        done = sum(1 for e in entries if e.name in results)
        stop.check(f"after {done} of {len(entries)} configs (each finished one is kept)")
    rows = [core.row(e, results[e.name], quick) for e in entries]
    core.write_report(report, rows, {e.name: report / e.name for e in entries}, quick)
    return rows
