"""What ran: each run's status.json, kept current by the command that runs it, and `dlrun runs`,
which lists run directories with their status, progress and result.

status.json says `running` while a run trains (with its pid and start time), then `done`,
`stopped` (at a requested epoch), `interrupted` (Ctrl-C, SIGTERM), `diverged` or `failed`. A run
killed with SIGKILL cannot say so: it still says `running`, but its directory's lock is free, so
it is listed as interrupted. A sweep's trials keep the sweep's own status.json (done, failed,
pruned); they are listed through their sweep. A damaged file (a special file where it belongs,
not what it should hold, a field of the wrong type) is read as absent and named in the row's
`problems`: the run is still listed.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import disk
from ..config import metrics
from .status import (
    RESUMABLE,
    SUMMARY_FIELDS,
    DamagedFile,
    check_regular,
    checked_fields,
    checked_status,
    read_bytes,
    read_object,
)

MAX_METRICS_BYTES = 64 << 20  # one row per epoch: even a long run's metrics.csv is far smaller


def _epochs_done(run_dir: Path, problems: list[str]) -> int:
    try:
        data = read_bytes(run_dir / "metrics.csv", MAX_METRICS_BYTES)
    except DamagedFile as err:
        problems.append(str(err))
        return 0
    return max(len(data.splitlines()) - 1, 0) if data else 0


def _summary(run_dir: Path, problems: list[str]) -> dict[str, Any]:
    path = run_dir / "summary.json"
    try:
        summary = read_object(path) or {}
    except DamagedFile as err:
        problems.append(str(err))
        return {}
    summary, wrong = checked_fields(summary, SUMMARY_FIELDS, path)
    problems += wrong.values()
    return summary


def read_config(run_dir: Path) -> dict[str, Any]:
    """The mapping in the run's config.yaml, read as every config is (bounded, no duplicate keys,
    no alias bombs), but not validated: a run may be older than the config's current schema.

    Raises:
        DamagedFile: no regular file, or not a YAML mapping; the message names the file.
    """
    from ..config.loading import read_yaml_mapping
    from ..errors import ConfigError

    path = run_dir / "config.yaml"
    try:
        if not check_regular(path):  # a FIFO or a directory is refused before YAML opens it
            raise DamagedFile(f"{path}: no such file")
        return read_yaml_mapping(path)
    except ConfigError as err:
        raise DamagedFile(str(err)) from None
    except (ValueError, AttributeError, KeyError) as err:  # PyYAML's constructors: `!!int x`, a date 2020-13-45
        raise DamagedFile(f"{path}: is not valid YAML ({type(err).__name__}: {' '.join(str(err).split())[:120]})") from None


def _planned(raw: dict[str, Any] | None) -> int | None:
    """trainer.epochs of the run's config; None for an experiment (it runs whole) or an unreadable one."""
    if raw is None:
        return None
    experiment, trainer = raw.get("experiment") or {}, raw.get("trainer") or {}
    if not isinstance(experiment, dict) or not isinstance(trainer, dict) or experiment.get("name", "train") != "train":
        return None
    epochs = trainer.get("epochs", 10)
    return epochs if isinstance(epochs, int) and not isinstance(epochs, bool) else None


def _config(raw: dict[str, Any] | None, run_dir: Path):
    """The run's config, or None when config.yaml is unreadable or no longer a valid config."""
    from ..config import validate
    from ..errors import DlrunError

    try:
        return validate(raw, source=str(run_dir / "config.yaml")) if raw is not None else None
    except DlrunError:
        return None


def describe(run_dir: Path) -> dict[str, Any]:
    """One row of `dlrun runs` for a run directory."""
    status_file, wrong = checked_status(run_dir)
    problems = list(wrong.values())
    summary = _summary(run_dir, problems)
    try:
        raw = read_config(run_dir)
    except DamagedFile as err:
        raw = None
        problems.append(str(err))
    epochs_done = _epochs_done(run_dir, problems)
    status = status_file.get("status") or None
    if status is None and (None in wrong or "status" in wrong):
        status = "unknown"  # status.json is damaged: guess nothing
    elif status is None:  # a run from before status.json, or one that never started
        status = "done" if summary else ("interrupted" if (run_dir / "checkpoints").is_dir() else "unknown")
    elif status == "running" and not _locked(run_dir, problems):
        status = "interrupted"  # killed without a chance to say so (SIGKILL, power loss)
    metric = metrics.result_of(summary, _config(raw, run_dir))
    started = status_file.get("started")
    if started is None:
        try:
            written = os.stat(run_dir / "config.yaml").st_mtime
        except OSError:
            started = ""
        else:
            started = datetime.fromtimestamp(written, timezone.utc).isoformat(timespec="seconds")
    planned = _planned(raw)
    can_resume = status in RESUMABLE and (run_dir / "checkpoints").is_dir()
    return {
        "name": run_dir.name,
        "path": str(run_dir),
        "started": started,
        "status": status,
        "epochs": summary.get("epochs", epochs_done) if planned is not None else None,
        "planned": planned,
        "metric": metric or "",
        "value": summary.get(metric) if metric else None,
        "error": status_file.get("error", ""),
        "resume": f"dlrun train --resume {run_dir}" if can_resume else "",
        "problems": problems,
    }


def _locked(run_dir: Path, problems: list[str]) -> bool:
    try:
        return disk.is_locked(run_dir)
    except OSError as err:
        problems.append(f"{run_dir / '.lock'}: cannot be opened ({err.strerror or err}); the run may be training")
        return True


def describe_sweep(sweep_dir: Path) -> dict[str, Any]:
    """One row for a sweep: how many trials stand where, and the sweep's resume command."""
    trials = sorted(p for p in (sweep_dir / "trials").glob("*") if p.is_dir()) if (sweep_dir / "trials").is_dir() else []
    counts: dict[str, int] = {}
    problems: list[str] = []
    for t in trials:
        fields, wrong = checked_status(t)
        problems += wrong.values()
        s = fields.get("status") or ("unknown" if wrong else "pending")
        counts[s] = counts.get(s, 0) + 1
    finished = counts.get("done", 0) + counts.get("pruned", 0) + counts.get("failed", 0)
    status = "done" if trials and finished == len(trials) else ("running" if disk.is_locked(sweep_dir) else "interrupted")
    started = datetime.fromtimestamp((sweep_dir / "sweep.yaml").stat().st_mtime, timezone.utc).isoformat(timespec="seconds")
    return {
        "name": sweep_dir.name, "path": str(sweep_dir), "started": started, "status": f"sweep {status}",
        "epochs": finished, "planned": len(trials), "metric": ", ".join(f"{v} {k}" for k, v in sorted(counts.items())),
        "value": None, "error": "", "resume": f"dlrun sweep --resume {sweep_dir}" if status == "interrupted" else "",
        "problems": problems,
    }


def list_runs(root: Path) -> list[dict[str, Any]]:
    """The run and sweep directories directly under `root`, newest first. A directory is a run
    when it holds something named config.yaml, even a damaged one (which its row then names).

    Raises:
        OSError: `root` cannot be listed.
    """
    rows = []
    for d in sorted(root.iterdir()):
        try:
            if not d.is_dir():
                continue
            if (d / "sweep.yaml").is_file():
                rows.append(describe_sweep(d))
            elif os.path.lexists(d / "config.yaml"):
                rows.append(describe(d))
        except OSError as err:  # a directory that cannot be looked into: said on its row
            rows.append({"name": d.name, "path": str(d), "started": "", "status": "unreadable", "epochs": None,
                         "planned": None, "metric": "", "value": None, "error": "", "resume": "",
                         "problems": [f"{d}: cannot be read ({err.strerror or err})"]})
    return sorted(rows, key=lambda r: r["started"], reverse=True)
