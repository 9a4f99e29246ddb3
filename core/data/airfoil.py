"""NASA airfoil self-noise, the data of D2L 11.5-11.10's optimizer experiments.

1,503 rows of 6 tab-separated numbers. As the book prepares it: every column, the target (the
last) included, standardised with its mean and standard deviation over all rows; then the first
1,500 rows are the examples, and the loss the book prints is measured on those same rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config import AirfoilData
from ..errors import DataError
from .dataset import Dataset
from .files import RemoteFile, find_or_fetch
from .sampling import Sampling
from .text import D2L_DATA_URL

AIRFOIL = RemoteFile("airfoil_self_noise.dat", D2L_DATA_URL + "airfoil_self_noise.dat",
                     "76e5be1548fd8222e5074cf0faae75edff8cf93f")
COLUMNS = 6


def read_airfoil(path: Path) -> np.ndarray:
    """The table as float64, checked: six finite numbers on every row.

    Raises:
        DataError: a row that is not six numbers, or a value that is not finite.
    """
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise DataError(f"{path}: is not a text file; expected {COLUMNS} tab-separated numbers per row") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            values = [float(f) for f in fields]
        except ValueError:
            values = []
        if len(values) != COLUMNS:
            raise DataError(f"{path}, line {number}: expected {COLUMNS} tab-separated numbers, got {line[:80]!r}")
        if not np.all(np.isfinite(values)):
            raise DataError(f"{path}, line {number}: holds a value that is not finite: {line[:80]!r}")
        rows.append(values)
    return np.asarray(rows, np.float64).reshape(-1, COLUMNS)


def standardise(table: np.ndarray, source: Path) -> np.ndarray:
    """Each column less its mean, over its standard deviation (the book's `data.std(axis=0)`)."""
    std = table.std(axis=0)
    if np.any(std == 0):
        raise DataError(f"{source}: column {int(np.argmin(std)) + 1} is constant, so it cannot be standardised")
    return (table - table.mean(axis=0)) / std


def airfoil(cfg: AirfoilData, seed: int) -> Dataset:
    path = find_or_fetch(AIRFOIL, cfg.dir)
    table = read_airfoil(path)
    if len(table) < cfg.num_rows:
        raise DataError(f"{path}: has {len(table)} rows; data.num_rows asks for {cfg.num_rows}")
    data = standardise(table, path)[: cfg.num_rows].astype(np.float32)
    x, y = data[:, :-1], data[:, -1:]
    steps = (cfg.examples_per_epoch or cfg.num_rows) // cfg.batch_size
    sampling = Sampling("stream", stream_steps=steps) if cfg.examples_per_epoch else Sampling()
    return Dataset(x, y, x, y, None, meta={"source": str(path)}, sampling=sampling)
