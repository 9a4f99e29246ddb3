"""dlrun's Python API, for notebooks and scripts; the command line calls the same functions.

    import dlrun
    cfg = dlrun.load_config("configs/mlp.yaml", ["optimizer.lr=0.05"])
    result = dlrun.train(cfg, "outputs/mlp-notebook")
    result.summary["val/acc"], result.rows[-1], result.state.params

`train` runs the generic loop (`dlrun.core.training.train`); `run` also runs configs that name an
experiment module and returns its summary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlrun.core.config import Config, load_config
from dlrun.core.errors import ConfigError, DlrunError

__all__ = ["Config", "ConfigError", "DlrunError", "load_config", "run", "train"]


def train(cfg: Config, run_dir: str | Path, **options: Any):
    """Train `cfg` into `run_dir` (created if needed); returns a `Result` with the final
    `state`, the metrics `rows` (one per epoch) and the `summary`. `options` are those of
    `dlrun.core.training.train.train` (resume, data, stop_epoch, plot, reporter, ...).

    Raises:
        ConfigError: the config names an experiment module (use `run`) or cannot be trained.
    """
    from dlrun.core.training.train import train as train_config

    if cfg.experiment.name != "train":
        raise ConfigError(f"experiment '{cfg.experiment.name}' is not the generic loop; run it with dlrun.run(cfg, run_dir)")
    return train_config(cfg, run_dir, **options)


def run(cfg: Config, run_dir: str | Path, **options: Any) -> dict[str, Any]:
    """Run any config (the generic loop or its experiment module) into `run_dir`; its summary."""
    from dlrun.experiments import run_config

    return run_config(cfg, run_dir, **options)
