"""A trial: one run's host-side record (config, directory, keys, metrics rows, position), how it
starts (fresh, or from its newest checkpoint) and what it keeps on disk as it trains.

The epoch loop (`core.training.loop`) appends rows and checkpoints through it; the run's
lifecycle (`core.training.lifecycle`) starts it and closes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import disk
from ..config import Config, ConfigError, to_yaml, validate
from ..config.changes import require_resumable
from ..errors import RunDirError
from ..report import outputs
from ..report.figures import Figures, Pictures
from ..report.tracking import Tracking, open_tracking, warn
from . import checkpoint
from .setup import Setup, start_state
from .state import TrainState
from .transfer import load_params, transplant


@dataclass
class Trial:
    """One run's host-side record: its config, directory, keys, metrics rows and where it stands."""

    cfg: Config
    run_dir: Path
    state: TrainState  # the initial or restored state; the last checkpointed one afterwards
    keys: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    position: checkpoint.Position = checkpoint.Position(0, 0)
    partial: list[dict[str, float]] = field(default_factory=list)  # per-batch metrics of a stopped epoch
    error: str | None = None
    tracking: Tracking = field(default_factory=Tracking)  # TensorBoard, MLflow (trainer.log_to)

    def save(self, state: TrainState, position: checkpoint.Position, partial: list[dict[str, float]] = ()) -> None:
        self.state = state
        checkpoint.save(self.run_dir / "checkpoints", state, self.keys, position, self.rows, list(partial),
                        to_yaml(self.cfg), self.cfg.trainer.keep_checkpoints)

    def write_metrics(self) -> None:
        if self.rows:
            outputs.write_metrics(self.run_dir / "metrics.csv", self.rows)

    def keep_snapshot(self, epoch: int, snapshot: np.ndarray) -> None:
        """What the model shows after `epoch` (`Model.snapshot`: a GAN's samples), kept as
        samples/epoch_NNNN.npy; a resumed run writes the epochs it trains again anew, the same."""
        path = self.run_dir / "samples" / f"epoch_{epoch:04d}.npy"
        path.parent.mkdir(exist_ok=True)
        with disk.atomic_file(path, suffix=".part") as f:
            np.save(f, snapshot, allow_pickle=False)

    def snapshots(self) -> list[tuple[int, np.ndarray]]:
        """The kept snapshots of the epochs this run has trained, in order."""
        found = []
        for row in self.rows:
            path = self.run_dir / "samples" / f"epoch_{row['epoch']:04d}.npy"
            if path.is_file():
                found.append((row["epoch"], np.load(path, allow_pickle=False)))
        return found

    def finish(self, figures: Figures | None, pictures: Pictures | None = None) -> None:
        """metrics.csv and the run's pictures (by default its curves): written whenever the run
        ends, however."""
        self.write_metrics()
        if self.rows and figures is not None:
            figures.draw(self.run_dir, self.cfg.name, pictures or Pictures(self.rows))


def start_trial(cfg: Config, run_dir: Path, setup: Setup, key, resume: bool) -> Trial:
    """A trial at its initial state, or at its newest checkpoint when `resume` and there is one
    (a run stopped before its first checkpoint starts over)."""
    state, keys = start_state(setup, key)
    trial = Trial(cfg, run_dir, state, keys)
    checkpoint.remove_temporary(run_dir / "checkpoints")  # a killed run's unfinished checkpoint
    found = checkpoint.list_checkpoints(run_dir / "checkpoints")
    if found and not resume:  # its newer checkpoints would outrank this run's and be resumed
        raise RunDirError(f"{run_dir} holds checkpoints of another run ({', '.join(p.name for p in found[-3:])}); "
                          "resume that run with dlrun train --resume, or train into another directory")
    if resume and found:
        ckpt = checkpoint.load_latest(run_dir / "checkpoints", state, warn=warn)
        refuse_another_config(cfg, ckpt)
        trial.state, trial.keys = ckpt.state, {k: np.asarray(v) for k, v in ckpt.keys.items()}
        trial.rows, trial.position, trial.partial = list(ckpt.rows), ckpt.position, list(ckpt.partial)
    if cfg.init_from is not None and not (resume and found):  # a resumed run holds what it started from
        named = load_params(cfg.init_from.run)
        state, _ = transplant(trial.state, named, cfg.init_from.include, cfg.init_from.exclude)
        trial.state = state
    if cfg.trainer.log_to:
        from .optimizers import learning_rates

        trial.tracking = open_tracking(cfg, run_dir, lambda: learning_rates(cfg, setup.steps_per_epoch), warn)
    return trial


def refuse_another_config(cfg: Config, ckpt: checkpoint.Checkpoint) -> None:
    """A checkpoint resumes only the run it was saved from: `cfg` (config.yaml, edited or not)
    may differ from the config in the checkpoint only as a resume may (`unsafe_changes`).

    Raises:
        ConfigError: naming each key that differs, with both values.
    """
    import yaml

    try:
        saved = validate(yaml.safe_load(ckpt.config_yaml) or {}, f"{ckpt.path}/meta.json")
    except (ConfigError, yaml.YAMLError) as err:  # a checkpoint from a version with other config keys
        warn(f"{ckpt.path}: its config cannot be compared with config.yaml ({str(err).splitlines()[0]})")
        return
    require_resumable(saved, cfg, f"{ckpt.path.parent.parent / 'config.yaml'}: the config differs from the one "
                                  f"checkpoint {ckpt.path.name} was trained with", "Restore config.yaml, or start a new run.")
