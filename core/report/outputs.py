"""The run directory: config.yaml, metrics.csv, summary.json, curves.png, each written atomically.

Every file is written to a temporary file in the same directory and renamed into place, so a
reader (or a crash) never sees half a file; metrics.csv is rewritten after each epoch, so a run
that stops keeps every finished epoch.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import math
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

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


class RunLock:
    """An exclusive lock on a run directory, so that two processes never write the same run.
    With `reentrant`, a lock this process already holds is entered again (the training loop
    inside the command that runs a config); otherwise holding it already is a refusal too."""

    _held: dict[Path, int] = {}  # this process's locks: path -> depth

    def __init__(self, run_dir: Path, reentrant: bool = False):
        self.path = (Path(run_dir) / ".lock").resolve()
        self.file = None
        self.reentrant = reentrant

    def __enter__(self) -> RunLock:
        if self.path in RunLock._held:
            if not self.reentrant:
                raise RunDirError(f"{self.path.parent} is in use by another dlrun process")
            RunLock._held[self.path] += 1
            return self
        self.file = open(self.path, "a")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.close()
            raise RunDirError(f"{self.path.parent} is in use by another dlrun process") from None
        RunLock._held[self.path] = 1
        return self

    def __exit__(self, *exc) -> None:
        RunLock._held[self.path] -= 1
        if RunLock._held[self.path] == 0:
            del RunLock._held[self.path]
            fcntl.flock(self.file, fcntl.LOCK_UN)
            self.file.close()


def is_locked(run_dir: Path) -> bool:
    """Whether a process holds the run directory's lock (a run killed with SIGKILL holds none)."""
    path = Path(run_dir) / ".lock"
    if not path.is_file():
        return False
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def shareable(path: str | Path, directory: bool = False) -> None:
    """Give a file made by `tempfile` (0600; a directory 0700) the mode the umask allows, as any
    other file would have: run directories are shared."""
    os.chmod(path, (0o777 if directory else 0o666) & ~umask())


def write_atomic(path: str | Path, data: str | bytes) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        shareable(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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
    write_atomic(path, metrics_csv(rows))


def write_json(path: str | Path, obj: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(_jsonable(obj), indent=2) + "\n")


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)  # JSON has no NaN/inf
    return obj
