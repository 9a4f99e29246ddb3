"""How a command ends when something goes wrong: one place for every command.

A `DlrunError` is the user's to fix: its message is printed as is and the process exits with
the class's code (config or data 2, divergence 1, interruption 130). Anything else is a bug in
dlrun: it says so, exits 1, and keeps the traceback (printed with `dlrun --debug`, otherwise
written to `error.log` in the run directory when there is one).
"""

from __future__ import annotations

import contextlib
import traceback
from pathlib import Path
from typing import Iterator

import typer

from dlrun.core.errors import DlrunError, TrainingInterrupted


def fail(message: str, code: int) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=code)


@contextlib.contextmanager
def guarded(ctx: typer.Context | None = None, run_dir: Path | None = None, resume_hint: str = "") -> Iterator[None]:
    """Turn every failure inside the block into a message and an exit code."""
    try:
        yield
    except typer.Exit:
        raise
    except TrainingInterrupted as err:
        typer.secho(f"interrupted: {err}." + (f" Resume with:\n  {resume_hint}" if resume_hint else ""), err=True)
        raise typer.Exit(code=err.exit_code) from None
    except DlrunError as err:
        raise fail(str(err), err.exit_code) from None
    except OSError as err:  # the machine, not dlrun: a full disk, a directory without write permission
        raise fail(f"cannot write the run: {err.strerror or err} ({err.filename or run_dir or 'output'})", 1) from None
    except Exception as err:
        debug = bool(ctx and isinstance(ctx.obj, dict) and ctx.obj.get("debug"))
        text = "".join(traceback.format_exception(err))
        where = "run again with dlrun --debug to see where"
        if debug:
            typer.echo(text, err=True)
            where = "traceback above"
        elif run_dir is not None and run_dir.is_dir():
            (run_dir / "error.log").write_text(text)
            where = f"traceback in {run_dir / 'error.log'}"
        raise fail(f"internal error (a bug in dlrun, not in your config): {type(err).__name__}: {err} ({where})", 1) from None
