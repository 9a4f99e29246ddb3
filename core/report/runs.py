"""What ran: each run's status.json, kept current by the command that runs it, and `dlrun runs`,
which lists run directories with their status, progress and result.

status.json says `running` while a run trains (with its pid and start time), then `done`,
`stopped` (at a requested epoch), `interrupted` (Ctrl-C, SIGTERM), `diverged` or `failed`. A run
killed with SIGKILL cannot say so: it still says `running`, but its directory's lock is free, so
it is listed as interrupted. A sweep's trials keep the sweep's own status.json (done, failed,
pruned); they are listed through their sweep.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import disk
from ..config import metrics
from .status import RESUMABLE, read_json, read_status


def _epochs_done(run_dir: Path) -> int:
    try:
        lines = (run_dir / "metrics.csv").read_text().splitlines()
    except OSError:
        return 0
    return max(len(lines) - 1, 0)


def _planned(run_dir: Path) -> int | None:
    """trainer.epochs of the run's config; None for an experiment (it runs whole) or an unreadable one."""
    import yaml

    try:
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
        if (cfg.get("experiment") or {}).get("name", "train") != "train":
            return None
        return int((cfg.get("trainer") or {}).get("epochs", 10))
    except (OSError, yaml.YAMLError, AttributeError, TypeError, ValueError):
        return None


def _config(run_dir: Path):
    """The run's config, or None when config.yaml is missing or no longer a valid config."""
    from ..config import load_config
    from ..errors import DlrunError

    try:
        return load_config(run_dir / "config.yaml") if (run_dir / "config.yaml").is_file() else None
    except (DlrunError, OSError, ValueError):
        return None


def describe(run_dir: Path) -> dict[str, Any]:
    """One row of `dlrun runs` for a run directory."""
    status_file = read_status(run_dir)
    summary = read_json(run_dir / "summary.json")
    status = status_file.get("status")
    if status is None:  # a run from before status.json, or one that never started
        status = "done" if summary else ("interrupted" if (run_dir / "checkpoints").is_dir() else "unknown")
    elif status == "running" and not disk.is_locked(run_dir):
        status = "interrupted"  # killed without a chance to say so (SIGKILL, power loss)
    metric = metrics.result_of(summary, _config(run_dir))
    started = status_file.get("started")
    if started is None and (run_dir / "config.yaml").is_file():
        started = datetime.fromtimestamp((run_dir / "config.yaml").stat().st_mtime, timezone.utc).isoformat(timespec="seconds")
    can_resume = status in RESUMABLE and (run_dir / "checkpoints").is_dir()
    return {
        "name": run_dir.name,
        "path": str(run_dir),
        "started": started or "",
        "status": status,
        "epochs": summary.get("epochs", _epochs_done(run_dir)) if _planned(run_dir) is not None else None,
        "planned": _planned(run_dir),
        "metric": metric or "",
        "value": summary.get(metric) if metric else None,
        "error": status_file.get("error", ""),
        "resume": f"dlrun train --resume {run_dir}" if can_resume else "",
    }


def describe_sweep(sweep_dir: Path) -> dict[str, Any]:
    """One row for a sweep: how many trials stand where, and the sweep's resume command."""
    trials = sorted(p for p in (sweep_dir / "trials").glob("*") if p.is_dir()) if (sweep_dir / "trials").is_dir() else []
    counts: dict[str, int] = {}
    for t in trials:
        s = read_status(t).get("status", "pending")
        counts[s] = counts.get(s, 0) + 1
    finished = counts.get("done", 0) + counts.get("pruned", 0) + counts.get("failed", 0)
    status = "done" if trials and finished == len(trials) else ("running" if disk.is_locked(sweep_dir) else "interrupted")
    started = datetime.fromtimestamp((sweep_dir / "sweep.yaml").stat().st_mtime, timezone.utc).isoformat(timespec="seconds")
    return {
        "name": sweep_dir.name, "path": str(sweep_dir), "started": started, "status": f"sweep {status}",
        "epochs": finished, "planned": len(trials), "metric": ", ".join(f"{v} {k}" for k, v in sorted(counts.items())),
        "value": None, "error": "", "resume": f"dlrun sweep --resume {sweep_dir}" if status == "interrupted" else "",
    }


def list_runs(root: Path) -> list[dict[str, Any]]:
    """The run and sweep directories directly under `root`, newest first."""
    rows = []
    for d in (p for p in root.iterdir() if p.is_dir()):
        if (d / "sweep.yaml").is_file():
            rows.append(describe_sweep(d))
        elif (d / "config.yaml").is_file():
            rows.append(describe(d))
    return sorted(rows, key=lambda r: r["started"], reverse=True)
