"""Sweep files: which config to start from, which keys to vary, and how; expanded into trials.

```yaml
# What the sweep studies, and the command that runs it.
base: ../softmax.yaml            # the config every trial starts from (relative to this file)
set: {trainer.epochs: 10}        # applied to every trial
parameters:
  optimizer.lr: [0.03, 0.1, 0.3] # a list: a grid axis
  model.dropout: uniform(0, 0.5) # a distribution: random search (needs `trials`)
trials: 16                       # random search: how many draws
seeds: 3                         # each trial repeated with seeds seed, seed+1, ... (error bars)
metric: val/acc                  # what "best" means (default: val/acc; val/ppl for language models, else val/loss)
scheduler: {name: halving, eta: 3, min_epochs: 1}
```
`cases:` lists settings that go together (values of several keys at once), one trial each,
crossed with the grid of `parameters` when there is one:
```yaml
cases:
  - {data.batch_size: 1, optimizer.lr: 0.005}
  - {data.batch_size: 1500, optimizer.lr: 1.0, trainer.epochs: 10}
```
Distributions: `uniform(low, high)`, `loguniform(low, high)`, `randint(low, high)` (an integer,
low <= n < high) and `choice(a, b, ...)`; in a random search, a list is a choice too.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path
from typing import Any, Literal, NamedTuple, Optional

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..config import Config, ConfigError, load_config, metrics, read_yaml_mapping
from ..config.messages import describe_errors
from .distributions import DISTRIBUTIONS, Distribution, _number, parse_distribution  # noqa: F401 - the sweep's vocabulary

MAX_TRIALS = 10_000  # a sweep larger than this is refused unless asked for (--max-trials)


class HalvingConfig(BaseModel):
    """Successive halving (Jamieson & Talwalkar 2016): train every trial `min_epochs`, keep the
    best 1/eta, train those eta times longer, and so on up to trainer.epochs."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Literal["halving"] = "halving"
    eta: int = Field(3, ge=2)
    min_epochs: int = Field(1, ge=1)


class SweepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Optional[str] = Field(None, pattern=r"^[A-Za-z0-9_.-]+$")
    base: str
    set: dict[str, Any] = {}
    parameters: dict[str, Any] = {}
    cases: list[dict[str, Any]] = []
    trials: Optional[int] = Field(None, gt=0)
    seeds: int = Field(1, gt=0)
    sample_seed: int = Field(0, ge=0, description="seed of the random-search sampler")
    metric: Optional[str] = Field(None, pattern=r"^(train|val)/\w+$")
    mode: Optional[Literal["max", "min"]] = None
    scheduler: Optional[HalvingConfig] = None
    vectorize: bool = True
    max_group: int = Field(64, gt=0, description="most trials in one vectorised program")
    trial_plots: bool = Field(False, description="curves.png in every trial's directory, besides the sweep's own plots")


class Trial(NamedTuple):
    index: int
    params: dict[str, Any]  # the swept values, by dotted key
    seed: int

    @property
    def dirname(self) -> str:
        parts = [f"{k.rsplit('.', 1)[-1]}={_short(v)}" for k, v in self.params.items()]
        return re.sub(r"[^A-Za-z0-9._=,-]", "_", "-".join([f"{self.index:03d}", *parts, f"seed={self.seed}"]))[:120]

    def overrides(self) -> list[str]:
        return [f"{k}={json.dumps(v)}" for k, v in self.params.items()] + [
            f"seed={self.seed}"
        ]


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return ",".join(_short(x) for x in v)
    return str(v)


def split_values(text: str) -> list[Any]:
    """`0.01,0.1` -> [0.01, 0.1]; `[128],[256, 128]` -> [[128], [256, 128]] (commas inside
    brackets belong to the value); each value is parsed as YAML."""
    values, depth, current = [], 0, ""
    for ch in text:
        depth += ch in "[{("
        depth -= ch in "]})"
        if ch == "," and depth == 0:
            values.append(current)
            current = ""
        else:
            current += ch
    values.append(current)
    try:
        return [_number(yaml.safe_load(v)) for v in values if v.strip()]
    except yaml.YAMLError as err:
        raise ConfigError(f"cannot read the values {text!r}: {err}") from None


def read_spec(path: str | Path) -> tuple[SweepSpec, Path]:
    """Read and validate a sweep file; returns the spec and the base config's path."""
    path = Path(path)
    raw = read_yaml_mapping(path)
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(describe_errors(err, SweepSpec, str(path))) from None
    base = (path.parent / spec.base).resolve()
    if not base.is_file():
        raise ConfigError(f"{path}: base: no config file {spec.base!r} (looked for {base})")
    return spec.model_copy(update={"name": spec.name or path.stem}), base


def is_sweep_file(path: str | Path) -> bool:
    """A sweep file has `parameters:` or `cases:`; anything else is a config."""
    try:
        raw = read_yaml_mapping(Path(path))
    except (ConfigError, OSError):
        return False
    return "parameters" in raw or "cases" in raw


def axes(spec: SweepSpec, source: str) -> dict[str, list[Any] | Distribution]:
    """Each parameter as a list of values (grid) or a Distribution (random search)."""
    out: dict[str, list[Any] | Distribution] = {}
    for key, value in spec.parameters.items():
        where = f"{source}: parameters.{key}"
        if isinstance(value, str):
            out[key] = parse_distribution(value, where)
        elif isinstance(value, list) and value:
            out[key] = value
        else:
            raise ConfigError(f"{where}: expected a non-empty list of values or a distribution such as loguniform(1e-3, 1), found {value!r}")
    if not out and not spec.cases:
        raise ConfigError(f"{source}: parameters: a sweep needs at least one parameter to vary, or `cases:`")
    for i, case in enumerate(spec.cases):
        if not case:
            raise ConfigError(f"{source}: cases[{i}]: expected a mapping of keys to values, found an empty one")
        if both := sorted(set(case) & set(out)):
            raise ConfigError(f"{source}: cases[{i}]: {', '.join(both)} also in parameters; give each key in one place")
    random = any(isinstance(v, Distribution) for v in out.values())
    if random and spec.trials is None:
        raise ConfigError(f"{source}: trials: a random search ({', '.join(k for k, v in out.items() if isinstance(v, Distribution))}) needs `trials: N`")
    if not random and spec.trials is not None:
        raise ConfigError(f"{source}: trials: only a random search takes `trials`; every parameter here is a grid list")
    if "seed" in out and spec.seeds > 1:
        raise ConfigError(f"{source}: seeds: cannot repeat over seeds when `seed` itself is swept")
    return out


def swept_keys(spec: SweepSpec) -> list[str]:
    """The keys the trials differ in (but the seed): the parameters', then the cases'."""
    keys = [*spec.parameters, *(k for case in spec.cases for k in case)]
    return [k for k in dict.fromkeys(keys) if k != "seed"]


def count_trials(spec: SweepSpec, source: str) -> int:
    """How many trials `spec` expands to, counted without expanding it."""
    ax = axes(spec, source)
    combos = spec.trials if spec.trials is not None else math.prod(len(v) for v in ax.values())
    seeds = 1 if "seed" in ax else spec.seeds
    return combos * max(len(spec.cases), 1) * seeds


def expand(spec: SweepSpec, source: str, base_seed: int = 0, max_trials: int = MAX_TRIALS) -> list[Trial]:
    """The trials a spec asks for, in a fixed order (grid: row-major; random: draws from
    `sample_seed`), each repeated for `seeds` seeds: base_seed, base_seed + 1, ...

    Raises:
        ConfigError: more than `max_trials` trials (counted before any is made).
    """
    n = count_trials(spec, source)
    if n > max_trials:
        raise ConfigError(f"{source}: the sweep has {n:,} trials, more than {max_trials:,}; "
                          f"give --max-trials {n} if that many is meant")
    ax = axes(spec, source)
    if spec.trials is None:
        combos = [dict(zip(ax, values)) for values in itertools.product(*ax.values())]
    else:
        rng = np.random.default_rng([spec.sample_seed, 4_2])
        combos = [
            {k: (v.sample(rng) if isinstance(v, Distribution) else v[int(rng.integers(len(v)))]) for k, v in ax.items()}
            for _ in range(spec.trials)
        ]
    if spec.cases:
        combos = [combo | case for combo in combos for case in spec.cases]
    trials = []
    for combo in combos:
        params = {k: v for k, v in combo.items() if k != "seed"}
        seeds = [int(combo["seed"])] if "seed" in combo else [base_seed + s for s in range(spec.seeds)]
        for seed in seeds:
            trials.append(Trial(len(trials), params, seed))
    return trials


def trial_config(base: Path, spec: SweepSpec, trial: Trial, extra: list[str], source: str) -> Config:
    """The full config of one trial: base file, then `set:`, then --set, then the trial's values."""
    common = [f"{k}={json.dumps(v)}" for k, v in spec.set.items()] + list(extra)
    try:
        load_config(base, common)
    except ConfigError as err:
        raise ConfigError(f"{source}: set: {err}") from None
    try:
        return load_config(base, [*common, *trial.overrides(), f"name={spec.name}"])
    except ConfigError as err:
        shown = ", ".join(f"{k}={v!r}" for k, v in trial.params.items())
        inner = str(err).replace("--set ", "")
        raise ConfigError(f"{source}: parameters: the trial {shown} is not a valid config: {inner}") from None


def metric_and_mode(spec: SweepSpec, cfg: Config) -> tuple[str, str]:
    """The target metric and whether higher is better: the sweep's, or the config's default
    (`core.config.metrics.target`)."""
    metric = spec.metric or metrics.target(cfg)[0]
    return metric, spec.mode or metrics.mode(metric)


def check_metric(metric: str, cfg: Config, source: str) -> None:
    """A sweep's target must be a metric its trials report (the generic loop's, per epoch);
    an experiment's trials are checked by what they write."""
    if cfg.experiment.name != "train":
        return
    reported = sorted(m for m in metrics.reported(cfg) if m.startswith(("train/", "val/")))
    if metric not in reported:
        raise ConfigError(f"{source}: metric: the trials never report {metric!r}; they report {', '.join(reported)}")
