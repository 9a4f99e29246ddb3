"""Files written whole or not at all, with the modes the umask allows, and run-directory locks.

The bottom of dlrun's I/O: data downloads and caches (`core.data`), checkpoints and metrics
(`core.training`) and reports (`core.report`) all write through these. A file is written to a
temporary file in its own directory, flushed to disk and renamed into place, so that a reader
(or a crash) never sees half a file and an older version survives a failed write.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

from .errors import RunDirError


def umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def shareable(path: str | Path, directory: bool = False) -> None:
    """Give a file made by `tempfile` (0600; a directory 0700) the mode the umask allows, as any
    other file would have: run directories and data caches are shared."""
    os.chmod(path, (0o777 if directory else 0o666) & ~umask())


@contextlib.contextmanager
def temporary_beside(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary file's path in `path`'s directory (so that a rename onto `path` is atomic),
    removed at the end unless it was `publish`ed."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def publish(tmp: str | Path, path: str | Path) -> None:
    """Move a finished temporary file onto `path` in one step, with the umask's mode."""
    shareable(tmp)
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_file(path: str | Path, suffix: str = ".tmp") -> Iterator[IO[bytes]]:
    """A binary file whose content replaces `path` when the block ends without an error (and
    is flushed to disk first); on an error, `path` is left as it was."""
    with temporary_beside(path, suffix) as tmp:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        publish(tmp, path)


def write_atomic(path: str | Path, data: str | bytes) -> None:
    with atomic_file(path) as f:
        f.write(data.encode() if isinstance(data, str) else data)


def write_json(path: str | Path, obj: dict[str, Any]) -> None:
    """JSON with non-finite floats as strings ("nan", "inf"), which JSON cannot hold."""
    write_atomic(path, json.dumps(_jsonable(obj), indent=2) + "\n")


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)  # JSON has no NaN/inf
    return obj


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
