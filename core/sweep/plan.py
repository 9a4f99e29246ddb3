"""A sweep on disk: its directory, the trials' configs, and each trial's status.

A sweep directory holds
- `sweep.yaml` (the spec as run) and `trials.json` (each trial's index, directory, values, seed);
- `trials/<NNN-values-seed>/`: one normal run directory per trial, whose `config.yaml` is written
  when the sweep is created, plus `status.json` once the trial ends (done, failed, pruned);
- `results.csv`, `results.md` and plots (core.report.compare) once the sweep ends.
Everything a task produces is on disk when it ends, so `--resume` only needs the directory.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import yaml

from .. import disk
from ..config import Config, ConfigError, load_config, to_yaml
from ..errors import SweepError
from ..report import outputs
from ..report.status import STATUS_FILE
from .spec import MAX_TRIALS, SweepSpec, Trial, check_metric, expand, metric_and_mode, swept_keys, trial_config

SWEEP_FILE, TRIALS_FILE = "sweep.yaml", "trials.json"
FINAL = ("done", "pruned")  # statuses that --resume keeps

# run_single(cfg, run_dir, stop_epoch, plot) -> summary: trains one trial that is not vectorised.
SingleRunner = Callable[[Config, Path, "int | None", bool], dict]



class Plan(NamedTuple):
    path: Path
    spec: SweepSpec
    trials: list[Trial]
    dirs: list[Path]
    metric: str
    mode: str

    def config(self, i: int) -> Config:
        return load_config(self.dirs[i] / "config.yaml")


# ----------------------------------------------------------------------------- create / load


def create(spec: SweepSpec, base: Path, extra_set: Sequence[str], source: str, out: Path | None = None,
           root: str | Path = "outputs/sweeps", max_trials: int = MAX_TRIALS) -> Plan:
    """Validate every trial's config, then create the sweep directory and the trial directories.

    Raises:
        ConfigError: the spec or a trial's config is not valid (nothing is written then).
    """
    trials, configs = resolve(spec, base, extra_set, source, max_trials)
    if out is not None:
        outputs.check_names(Path(out))
    if out is not None and (Path(out) / SWEEP_FILE).exists():
        raise SweepError(f"{out} already holds a sweep; resume it with --resume or choose another --out")
    path = outputs.new_run_dir(spec.name, out, root)
    dirs = [path / "trials" / t.dirname for t in trials]
    for cfg, d in zip(configs, dirs):
        d.mkdir(parents=True, exist_ok=True)
        disk.write_atomic(d / "config.yaml", to_yaml(cfg))
    record = {"spec": spec.model_dump(mode="json"), "base_path": str(base), "set": list(extra_set)}
    disk.write_atomic(path / SWEEP_FILE, yaml.safe_dump(record, sort_keys=False))
    listing = [{"index": t.index, "dir": str(d.relative_to(path)), "params": t.params, "seed": t.seed} for t, d in zip(trials, dirs)]
    disk.write_json(path / TRIALS_FILE, {"trials": listing})
    metric, mode = metric_and_mode(spec, configs[0])
    return Plan(path, spec, trials, dirs, metric, mode)


def resolve(spec: SweepSpec, base: Path, extra_set: Sequence[str], source: str,
            max_trials: int = MAX_TRIALS) -> tuple[list[Trial], list[Config]]:
    """The trials and their full configs, all validated; nothing is written."""
    base_cfg = load_config(base, [f"{k}={json.dumps(v)}" for k, v in spec.set.items()] + list(extra_set))
    trials = expand(spec, source, base_cfg.seed, max_trials)
    configs = [trial_config(base, spec, t, list(extra_set), source) for t in trials]
    check_metric(metric_and_mode(spec, configs[0])[0], configs[0], source)
    if spec.scheduler is not None:
        if configs[0].experiment.name != "train":
            raise ConfigError(f"{source}: scheduler: halving needs the generic training loop, not experiment '{configs[0].experiment.name}'")
        if spec.scheduler.min_epochs >= configs[0].trainer.epochs:
            raise ConfigError(f"{source}: scheduler.min_epochs ({spec.scheduler.min_epochs}) must be below trainer.epochs ({configs[0].trainer.epochs})")
    return trials, configs


def load(path: str | Path) -> Plan:
    """The plan of an existing sweep directory, for --resume and compare."""
    path = Path(path)
    try:
        record = yaml.safe_load((path / SWEEP_FILE).read_text())
        listing = json.loads((path / TRIALS_FILE).read_text())["trials"]
        spec = SweepSpec.model_validate(record["spec"])
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError) as err:
        raise SweepError(f"{path}: not a sweep directory ({SWEEP_FILE} or {TRIALS_FILE} missing or unreadable: {err})") from None
    trials = [Trial(t["index"], t["params"], t["seed"]) for t in listing]
    dirs = [path / t["dir"] for t in listing]
    missing = [i for i, d in enumerate(dirs) if not (d / "config.yaml").is_file()]
    if missing:
        _recreate(path, record, spec, trials, dirs, missing)
    metric, mode = metric_and_mode(spec, load_config(dirs[0] / "config.yaml"))
    return Plan(path, spec, trials, dirs, metric, mode)


def _recreate(path: Path, record: dict, spec: SweepSpec, trials: list[Trial], dirs: list[Path], missing: list[int]) -> None:
    """Trial directories deleted since the sweep began are made again from the base config and
    the trial's values, provided that gives what the other trials were made from (the base
    file may have changed since)."""
    names = ", ".join(dirs[i].name for i in missing[:3]) + (", ..." if len(missing) > 3 else "")
    base = Path(record.get("base_path", ""))
    if not base.is_file():
        raise SweepError(f"{path}: trial directories {names} are gone and the base config {base} is too; "
                         "start the sweep again")
    configs = {i: trial_config(base, spec, trials[i], list(record.get("set", [])), str(path / SWEEP_FILE)) for i in missing}
    kept = next((i for i in range(len(dirs)) if i not in configs), None)
    if kept is not None:
        swept = {*swept_keys(spec), "seed", "name"}
        sibling = load_config(dirs[kept] / "config.yaml")
        rebuilt = trial_config(base, spec, trials[kept], list(record.get("set", [])), str(path / SWEEP_FILE))
        differ = _differences(sibling, rebuilt, swept)
        if differ:
            raise SweepError(f"{path}: trial directories {names} are gone, and {base} has changed since the sweep began "
                             f"({', '.join(differ[:5])}), so they cannot be made as they were; start the sweep again")
    for i, cfg in configs.items():
        dirs[i].mkdir(parents=True, exist_ok=True)
        disk.write_atomic(dirs[i] / "config.yaml", to_yaml(cfg))
    print(f"warning: {path}: trial directories {names} were missing and are made again from {base}", flush=True)


def _differences(a: Config, b: Config, ignore: set[str]) -> list[str]:
    from ..config import flatten

    fa, fb = flatten(a.model_dump(mode="json")), flatten(b.model_dump(mode="json"))
    return sorted(k for k in fa.keys() | fb.keys() if k not in ignore and fa.get(k) != fb.get(k))


# ----------------------------------------------------------------------------- status on disk


def checkpoint_epoch(run_dir: Path) -> int | None:
    """Epochs done by the newest checkpoint; None if it stopped inside an epoch."""
    from ..training.checkpoint import list_checkpoints, position_of

    found = list_checkpoints(run_dir / "checkpoints")
    if not found:
        return 0
    epoch, batch = position_of(found[-1])
    return None if batch else epoch


def reset_trial(run_dir: Path) -> None:
    """Clear a failed trial's outputs (not its config) so that it can run again from the start."""
    for name in ("metrics.csv", "summary.json", "curves.png", STATUS_FILE):
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    from ..report.tracking import forget_run

    forget_run(run_dir)
