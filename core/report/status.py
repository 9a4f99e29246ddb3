"""status.json: where a run stands, the one module that reads and writes it.

A run started by `dlrun train` says `running` while it trains (with its pid, host and start
time), then `done`, `stopped` (at a requested epoch), `interrupted` (Ctrl-C, SIGTERM),
`diverged` or `failed`; a sweep's trial says `done`, `stopped`, `failed` or `pruned`, with its
seconds. Every write keeps the fields it does not set, stamps `updated` and is atomic; every read
takes only a regular file holding a JSON object (anything else reads as no status), so that a
damaged or special file never stops a listing.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import disk

STATUS_FILE = "status.json"
RESUMABLE = ("interrupted", "diverged", "failed")
MAX_BYTES = 1 << 20  # a status.json is a few hundred bytes


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a regular file of at most 1 MiB; {} for anything else (missing,
    unreadable, not JSON, not an object, a FIFO or a device)."""
    try:
        if not path.is_file() or path.stat().st_size > MAX_BYTES:
            return {}
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def read_status(run_dir: Path) -> dict[str, Any]:
    return read_json(Path(run_dir) / STATUS_FILE)


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
