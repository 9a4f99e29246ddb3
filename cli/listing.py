"""`dlrun list` (the configs and what the book reports for each) and `dlrun runs` (what ran)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dlrun.cli.errors import fail
from dlrun.core.config import ConfigError, header_comment, load_config


def list_configs(
    directory: Annotated[Path, typer.Argument(help="Directory of configs.")] = Path("configs"),
) -> None:
    """List the configs in a directory, one line each with the book section they reproduce."""
    if not directory.is_dir():
        raise fail(f"{directory}: no such directory of configs (run from the project root or name it)", 2)
    paths = sorted(p for p in directory.rglob("*.yaml") if p.is_file())
    if not paths:
        raise fail(f"{directory}: holds no .yaml configs", 2)
    width = max(len(str(p.relative_to(directory))) for p in paths)
    for path in paths:
        try:
            lines = header_comment(path)
        except OSError as err:  # unreadable: said on its line, the others still listed
            typer.echo(f"{str(path.relative_to(directory)):<{width}}  (unreadable: {err.strerror or err})")
            continue
        what = lines[0] if lines else "(no description comment)"
        typer.echo(f"{str(path.relative_to(directory)):<{width}}  {_book_column(path):<32}  {what}")


def _book_column(path: Path) -> str:
    """`4.6 val/acc 0.837-0.861`: what the book reports for a config, for `dlrun list`."""
    from dlrun.core.sweep.spec import is_sweep_file

    if is_sweep_file(path):
        return "(sweep)"
    try:
        book = load_config(path).book
    except ConfigError as err:
        return f"(invalid: {str(err).splitlines()[0][:60]})"
    if book is None:
        return ""
    low, high = book.reported
    return f"{book.section} {book.metric} {low:g}" + ("" if low == high else f"-{high:g}")


def runs(
    directory: Annotated[Path, typer.Argument(help="Where the run directories are.")] = Path("outputs"),
    *,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON list, for scripts.")] = False,
) -> None:
    """List runs and sweeps, newest first: status (running, done, interrupted, diverged, failed),
    epochs done of those planned, the result, and the command that resumes one. A damaged file
    is named under its run's line (problem: ...), and the run is listed with what can be read."""
    import json

    from dlrun.core.report.runs import list_runs

    if not directory.is_dir():
        raise fail(f"{directory}: no such directory of runs", 2)
    try:
        rows = list_runs(directory)
    except OSError as err:
        raise fail(f"{directory}: cannot be listed ({err.strerror or err})", 2) from None
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    if not rows:
        typer.echo(f"{directory}: no runs yet")
        return
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        progress = f"{r['epochs']}/{r['planned']}" if r["planned"] is not None else "-"
        result = f"{r['metric']} {r['value']:.4g}" if isinstance(r["value"], (int, float)) else r["metric"]
        typer.echo(f"{r['name']:<{width}}  {r['started'][:16].replace('T', ' '):16}  {r['status']:<16} {progress:>7}  {result}")
        if r["resume"]:
            typer.echo(f"{'':<{width}}  resume: {r['resume']}")
        for problem in r["problems"]:
            typer.echo(f"{'':<{width}}  problem: {problem}")
