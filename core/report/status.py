"""status.json: where a run stands, the one module that reads and writes it; and the checked
reads of a run's other small files, which the commands that list runs share.

A run started by `dlrun train` says `running` while it trains (with its pid, host and start
time), then `done`, `stopped` (at a requested epoch), `interrupted` (Ctrl-C, SIGTERM),
`diverged` or `failed`; a sweep's trial says `done`, `stopped`, `failed` or `pruned`, with its
seconds. Every write keeps the fields it does not set, stamps `updated` and is atomic. Every read
takes only a regular file of bounded size (a FIFO or a device never ends, a directory is no file),
so that a damaged or special file never stops a listing: `read_status` and `read_json` read
anything else as no status, `checked_status` and `read_object` also say what is wrong with it.
"""

from __future__ import annotations

import json
import os
import socket
import stat
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import disk

STATUS_FILE = "status.json"
RESUMABLE = ("interrupted", "diverged", "failed")
MAX_BYTES = 1 << 20  # a status.json is a few hundred bytes

# what each field of status.json holds; a field that is null is not set
FIELDS: dict[str, type] = {"status": str, "started": str, "updated": str, "host": str, "error": str,
                           "pid": int, "planned": int, "epochs": int, "rung": int, "seconds": float}
# the fields of a run's summary.json that listings use (the metrics are taken where they are numbers)
SUMMARY_FIELDS: dict[str, type] = {"epochs": int, "wall_seconds": float}
NUMBER_WORDS = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}  # disk.write_json's spellings
_KINDS = {str: "a string", int: "a whole number", float: "a number"}


class DamagedFile(Exception):
    """A run's file that is there but cannot be used; the message names it and says why."""


def read_bytes(path: Path, limit: int = MAX_BYTES) -> bytes | None:
    """The contents of a regular file of at most `limit` bytes; None when there is no such file.

    Raises:
        DamagedFile: it is a directory, FIFO, device or socket, is larger than `limit`, or cannot
            be read.
    """
    if not check_regular(path):
        return None
    try:  # O_NONBLOCK: should a FIFO take its place now, opening it does not wait for a writer
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise DamagedFile(f"{path}: cannot be read ({err.strerror or err})") from None
    try:
        if not stat.S_ISREG(mode := os.fstat(fd).st_mode):
            raise DamagedFile(f"{path}: is {_file_kind(mode)}, not a regular file")
        data = bytearray()
        while len(data) <= limit and (chunk := os.read(fd, limit + 1 - len(data))):
            data += chunk
    except OSError as err:
        raise DamagedFile(f"{path}: cannot be read ({err.strerror or err})") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise DamagedFile(f"{path}: is larger than {limit >> 20} MiB; a run's file is far smaller")
    return bytes(data)


def check_regular(path: Path) -> bool:
    """Whether there is a file at `path` (False: none), refusing one that is not a regular file
    without opening it.

    Raises:
        DamagedFile: a directory, FIFO, device or socket is there, or it cannot be looked at.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return False
    except OSError as err:
        raise DamagedFile(f"{path}: cannot be read ({err.strerror or err})") from None
    if not stat.S_ISREG(mode):
        raise DamagedFile(f"{path}: is {_file_kind(mode)}, not a regular file")
    return True


def _file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a socket" if stat.S_ISSOCK(mode) else "a special file"


def read_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in the file `path`; None when there is no such file.

    Raises:
        DamagedFile: not a regular file of at most 1 MiB, not UTF-8, not JSON, or JSON but not an object.
    """
    data = read_bytes(path)
    if data is None:
        return None
    try:
        value = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise DamagedFile(f"{path}: is not UTF-8 text, so not JSON") from None
    except ValueError as err:
        raise DamagedFile(f"{path}: is not valid JSON ({err})") from None
    except RecursionError:
        raise DamagedFile(f"{path}: is nested too deeply to be a run's record") from None
    if not isinstance(value, dict):
        raise DamagedFile(f"{path}: expected a JSON object, found {_json_kind(value)}")
    return value


def checked_fields(record: dict[str, Any], kinds: dict[str, type], path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """`record` without the fields of `kinds` that do not hold what they should (a number may be
    written "nan", "inf" or "-inf"; null is not set), and what is wrong with each, by field."""
    kept, wrong = dict(record), {}
    for key, kind in kinds.items():
        value = kept.pop(key, None)
        if value is None:
            continue
        if kind is float and isinstance(value, str) and value in NUMBER_WORDS:
            value = NUMBER_WORDS[value]
        if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else kind):
            shown = json.dumps(value)
            wrong[key] = f"{path}: {key}: expected {_KINDS[kind]}, found {shown if len(shown) <= 60 else shown[:57] + '...'}"
            continue
        kept[key] = float(value) if kind is float else value
    return kept, wrong


def _json_kind(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return {list: "a list", str: "a string", int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a regular file of at most 1 MiB; {} for anything else (missing,
    unreadable, not JSON, not an object, a FIFO or a device)."""
    try:
        return read_object(Path(path)) or {}
    except DamagedFile:
        return {}


def read_status(run_dir: Path) -> dict[str, Any]:
    return read_json(Path(run_dir) / STATUS_FILE)


def checked_status(run_dir: Path) -> tuple[dict[str, Any], dict[str | None, str]]:
    """The fields of the run's status.json that hold what they should (FIELDS), and what is wrong,
    by field; None for the whole file, which is then read as no status."""
    path = Path(run_dir) / STATUS_FILE
    try:
        record = read_object(path) or {}
    except DamagedFile as err:
        return {}, {None: str(err)}
    return checked_fields(record, FIELDS, path)


def write_status(run_dir: Path, status: str, **fields: Any) -> None:
    """Set the run's status (and `fields`), keeping its other fields."""
    record = read_status(run_dir) | {"status": status, **fields,
                                     "updated": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    disk.write_json(Path(run_dir) / STATUS_FILE, record)


def mark_started(run_dir: Path, epochs: int, resumed: bool) -> None:
    """`running`, with this process's pid and host, the planned epochs and (unless a resume
    continues a run that had started) the start time."""
    fields = {"pid": os.getpid(), "host": socket.gethostname(), "planned": epochs, "error": ""}
    if not resumed or "started" not in read_status(run_dir):
        fields["started"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    write_status(run_dir, "running", **fields)
