"""Progress reporting: a rich progress bar on a terminal, one plain line per epoch otherwise."""

from __future__ import annotations

import sys
from typing import Any, Protocol


class Reporter(Protocol):
    def epoch(self, row: dict[str, Any]) -> None: ...
    def note(self, text: str) -> None: ...  # a line of an experiment's own progress
    def close(self) -> None: ...


def _fmt(row: dict[str, Any]) -> str:
    parts = [f"{k} {v:.4f}" for k, v in row.items() if "/" in k]
    return "  ".join(parts) + f"  ({row['seconds']:.2f}s)"


class PlainReporter:
    def __init__(self, total: int, stream=None):
        self.total = total
        self.stream = stream or sys.stdout

    def epoch(self, row):
        print(f"epoch {row['epoch']}/{self.total}  {_fmt(row)}", file=self.stream, flush=True)

    def note(self, text):
        print(text, file=self.stream, flush=True)

    def close(self):
        pass


class BarReporter:
    def __init__(self, total: int, title: str):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[metrics]}"),
        )
        self.task = self.progress.add_task(title, total=total, metrics="compiling...")
        self.progress.start()

    def epoch(self, row):
        self.progress.update(self.task, advance=1, metrics=_fmt(row))

    def note(self, text):
        self.progress.console.print(text)

    def close(self):
        self.progress.stop()


class SilentReporter:
    def epoch(self, row):
        pass

    def note(self, text):
        pass

    def close(self):
        pass


def notes(mode: str) -> Reporter:
    """A reporter for an experiment's own lines: plain lines unless `trainer.progress: none`."""
    return SilentReporter() if mode == "none" else PlainReporter(0)


def make_reporter(mode: str, total: int, title: str) -> Reporter:
    """mode: auto (bar on a terminal, plain lines otherwise), bar, plain or none."""
    if mode == "auto":
        mode = "bar" if sys.stdout.isatty() else "plain"
    if mode == "bar":
        return BarReporter(total, title)
    if mode == "plain":
        return PlainReporter(total)
    return SilentReporter()
