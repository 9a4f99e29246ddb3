"""Random-search distributions of a sweep: `uniform(low, high)`, `loguniform(low, high)`,
`randint(low, high)` (an integer, low <= n < high) and `choice(a, b, ...)`, parsed from their
text with their bounds checked, and drawn from a NumPy generator."""

from __future__ import annotations

import math
import re
from typing import Any, NamedTuple

import numpy as np
import yaml

from ..config import ConfigError

DISTRIBUTIONS = ("uniform", "loguniform", "randint", "choice")
MAX_RANDINT = 2**53  # an int64 draw, and exact as a float in a results table
_CALL = re.compile(r"^\s*([A-Za-z_]+)\s*\((.*)\)\s*$", re.S)


class Distribution(NamedTuple):
    kind: str
    args: tuple

    def sample(self, rng: np.random.Generator) -> Any:
        if self.kind == "uniform":
            return float(rng.uniform(*self.args))
        if self.kind == "loguniform":
            return float(math.exp(rng.uniform(math.log(self.args[0]), math.log(self.args[1]))))
        if self.kind == "randint":
            return int(rng.integers(*self.args))
        return self.args[int(rng.integers(len(self.args)))]

    def __str__(self) -> str:
        return f"{self.kind}({', '.join(map(str, self.args))})"


def parse_distribution(text: str, where: str) -> Distribution:
    """`loguniform(1e-3, 1)` -> Distribution("loguniform", (0.001, 1.0))."""
    match = _CALL.match(text)
    if not match or match.group(1) not in DISTRIBUTIONS:
        raise ConfigError(f"{where}: expected a list of values or one of {', '.join(d + '(...)' for d in DISTRIBUTIONS)}, found {text!r}")
    kind = match.group(1)
    try:
        args = yaml.safe_load(f"[{match.group(2)}]")
    except yaml.YAMLError:
        raise ConfigError(f"{where}: cannot read the arguments of {text!r}") from None
    args = [_number(a) for a in args]
    if kind == "choice":
        if len(args) == 1 and isinstance(args[0], list):
            args = args[0]
        if not args:
            raise ConfigError(f"{where}: choice() needs at least one value")
        return Distribution(kind, tuple(args))
    if len(args) != 2 or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
        raise ConfigError(f"{where}: {kind}(low, high) takes two numbers, found {text!r}")
    low, high = args
    if not all(math.isfinite(a) for a in args) or not math.isfinite(high - low):
        raise ConfigError(f"{where}: {kind}(low, high) needs finite bounds with a finite difference, found {text!r}")
    if kind == "randint" and max(abs(low), abs(high)) > MAX_RANDINT:
        raise ConfigError(f"{where}: randint(low, high) bounds must lie within +-{MAX_RANDINT:.0e}, found {text!r}")
    if not low < high:
        raise ConfigError(f"{where}: {kind}(low, high) needs low < high, found {text!r}")
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"{where}: loguniform(low, high) needs low > 0, found {text!r}")
    if kind == "randint" and not (isinstance(low, int) and isinstance(high, int)):
        raise ConfigError(f"{where}: randint(low, high) takes integers, found {text!r}")
    return Distribution(kind, (float(low), float(high)) if kind != "randint" else (low, high))


def _number(value: Any) -> Any:
    """YAML 1.1 reads `1e-3` as a string; here it means the number."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value
