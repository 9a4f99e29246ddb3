"""Experiment families that need more than the generic training loop.

A config selects one with `experiment: {name: ..., <options>}`; `dlrun train` then calls
`run(cfg, run_dir, source) -> summary`, which composes `dlrun.core` pieces, validates its own
options (`core.config.validate_options`) and writes the run directory with `core.outputs`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from dlrun.core.config import Config

from . import distribution_shift, initialization, kaggle_house, polynomial

Experiment = Callable[[Config, Path, str], dict[str, Any]]

EXPERIMENTS: dict[str, Experiment] = {
    "polynomial_degrees": polynomial.run,
    "initialization": initialization.run,
    "distribution_shift": distribution_shift.run,
    "kaggle_house": kaggle_house.run,
}
