"""The one hook through which training asks for a run's pictures.

Training never draws: it describes what a run has to show (its metrics rows, the learning rates
of its schedule, a model family's attention panels) as `Pictures` and hands them to a
`Figures` hook, which the command (or a notebook) chooses. `RunFigures` draws them as PNG files
in the run directory with `core.report.plots`; `None` (a sweep's trials, drawn together by the
sweep instead) draws nothing.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, NamedTuple, Protocol, Sequence


class Schedule(NamedTuple):
    lrs: Any  # the learning rate at every optimizer update
    steps_per_epoch: int
    name: str


class Pictures(NamedTuple):
    """What a run has to show; any part may be missing."""

    rows: Sequence[dict[str, Any]] = ()  # metrics.csv's rows: curves.png
    schedule: Schedule | None = None  # schedule.png
    attention: Sequence[Sequence[tuple]] = ()  # attention.png: rows of (title, weights, queries, keys) panels
    samples: Sequence[tuple[int, Any]] = ()  # samples.png: (epoch, what a generator made of fixed noise) per epoch
    real: Any = None  # beside 2-d samples: real examples, for the scatter
    predictions: Any = None  # detections.png or masks.png: `core.training.predictions.Predictions`


class Figures(Protocol):
    def preload(self) -> None:
        """Start what drawing needs (matplotlib's import) while the run trains."""

    def draw(self, run_dir: Path, title: str, pictures: Pictures) -> None:
        """Write the pictures of a run into `run_dir`."""


class RunFigures:
    """curves.png, schedule.png, attention.png, samples.png and detections.png or masks.png in
    the run directory."""

    def __init__(self) -> None:
        self._loading: threading.Thread | None = None

    def preload(self) -> None:
        from .plots import preload_plotting

        self._loading = preload_plotting()

    def draw(self, run_dir: Path, title: str, pictures: Pictures) -> None:
        from . import plots

        if self._loading is not None:  # an import still under way in another thread must end first
            self._loading.join()
            self._loading = None
        run_dir = Path(run_dir)
        if pictures.rows:
            plots.plot_curves(run_dir / "curves.png", pictures.rows, title=title)
        if pictures.schedule is not None:
            s = pictures.schedule
            plots.plot_schedule(run_dir / "schedule.png", s.lrs, s.steps_per_epoch, title=f"{title}: {s.name} schedule")
        if pictures.attention:
            plots.plot_heatmaps(run_dir / "attention.png", pictures.attention, f"{title}: attention weights")
        if pictures.samples:
            plots.plot_samples(run_dir / "samples.png", pictures.samples, pictures.real, f"{title}: generated, by epoch")
        if pictures.predictions is not None:
            _draw_predictions(run_dir, title, pictures.predictions)


def _draw_predictions(run_dir: Path, title: str, predictions) -> None:
    """A detector's boxes (detections.png) or a segmenter's masks (masks.png) on validation images."""
    a = predictions.arrays
    if predictions.kind == "detections":
        from .detections import plot_detections

        plot_detections(run_dir / "detections.png", a["images"], a["detections"], a["boxes"], a["classes"], a["threshold"],
                        f"{title}: detections above {a['threshold']:g} (predicted) and the objects (true)")
    else:
        from .masks import plot_masks

        plot_masks(run_dir / "masks.png", a["images"], a["true"], a["predicted"], a["colormap"], f"{title}: true and predicted labels")
