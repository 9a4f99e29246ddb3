"""The run directory: where it goes, its name, and metrics.csv.

Every file of a run is written whole or not at all (`core.disk`); metrics.csv is rewritten after
each epoch, so a run that stops keeps every finished epoch.
"""

from __future__ import annotations

import csv
import io
import math
import os
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

from .. import disk
from ..errors import RunDirError


def new_run_dir(name: str, out: str | Path | None = None, root: str | Path = "outputs") -> Path:
    """Create the run directory: `out` if given (it must not hold a run), else
    `<root>/<name>-<YYYYmmdd-HHMMSS>[-k]`, never reusing an existing one."""
    if out is not None:
        path = Path(out)
        check_names(path)
        if (path / "config.yaml").exists() or (path / "metrics.csv").exists():
            raise RunDirError(f"{path} already holds a run; choose another --out or remove it")
        if (path / "checkpoints").is_dir() and any(p.name.startswith("epoch_") for p in (path / "checkpoints").iterdir()):
            raise RunDirError(f"{path} holds checkpoints of another run; choose another --out or remove it")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise RunDirError(f"cannot create run directory {path}: {err.strerror}") from None
        return path
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    check_names(Path(root) / f"{name}-{stamp}-999")
    for k in range(1000):
        path = Path(root) / (f"{name}-{stamp}" if k == 0 else f"{name}-{stamp}-{k}")
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            continue
        except OSError as err:
            raise RunDirError(f"cannot create run directory {path}: {err.strerror}") from None
    raise RunDirError(f"too many runs named {name} in {root} this second")


def check_names(path: Path) -> None:
    """Refuse a path with a component longer than file names may be (255 bytes on most file
    systems), before any of it is made.

    Raises:
        RunDirError: naming the component's length and the limit.
    """
    limit = 255
    try:
        existing = next((p for p in [path, *path.parents] if p.is_dir()), Path("."))
        limit = os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError):
        pass
    for part in path.parts:
        if len(part.encode()) > limit:
            shown = str(path) if len(str(path)) <= 80 else str(path)[:77] + "..."
            raise RunDirError(f"{shown}: a file name of {len(part.encode())} bytes ({part[:12]}...), more than the "
                              f"{limit} this file system allows; choose a shorter --out or config name")


def metrics_csv(rows: Sequence[dict[str, Any]]) -> str:
    """Rows as CSV: the columns in order of first appearance, floats to 8 significant digits,
    a missing or NaN value empty (as pandas' `to_csv(float_format="%.8g")` writes them, without
    importing pandas, which would cost every run a third of a second of start-up)."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(k)) for k in columns])
    return out.getvalue()


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return "%.8g" % value
    return str(value)


def write_metrics(path: str | Path, rows: Sequence[dict[str, Any]]) -> None:
    disk.write_atomic(path, metrics_csv(rows))
