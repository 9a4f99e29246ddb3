"""Parameters by name, between runs: every finished run leaves params.npz (each parameter and
model-state array under its path, `params/dense0/w`, `model_state/bn0/mean`), and a run whose
config has `init_from` starts from another run's (D2L 13.2, fine-tuning).

Paths are the parameter pytree's keys, the names `dlrun summary` shows; they are stable across
runs of the same architecture, so a new output layer is named by its path (`exclude:
[output/*]`) and everything else is copied.
"""

from __future__ import annotations

import fnmatch
import zipfile
from pathlib import Path

import jax
import numpy as np

from .. import disk
from ..errors import ConfigError
from ..nn.params import path_name
from .state import TrainState

PARAMS_FILE = "params.npz"
PARTS = ("params", "model_state")


def named_arrays(state: TrainState) -> dict[str, np.ndarray]:
    """`{"params/dense0/w": array, "model_state/bn0/mean": array, ...}` on the host."""
    out = {}
    for part in PARTS:
        for path, leaf in jax.tree_util.tree_leaves_with_path(getattr(state, part)):
            out[f"{part}/{path_name(path)}"] = np.asarray(jax.device_get(leaf))
    return out


def save_params(run_dir: Path, state: TrainState) -> None:
    with disk.atomic_file(Path(run_dir) / PARAMS_FILE) as f:
        np.savez(f, **named_arrays(state))


def load_params(run_dir: str | Path, source: str = "init_from.run") -> dict[str, np.ndarray]:
    """The named arrays of a finished run.

    Raises:
        ConfigError: no params.npz there (not a run, or one that has not finished), or a damaged one.
    """
    path = Path(run_dir) / PARAMS_FILE
    if not path.is_file():
        raise ConfigError(f"{source}: {run_dir} holds no {PARAMS_FILE} (expected the directory of a finished run)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise ConfigError(f"{source}: {path} cannot be read ({err})") from None


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def transplant(state: TrainState, named: dict[str, np.ndarray], include: tuple[str, ...], exclude: tuple[str, ...],
               source: str = "init_from") -> tuple[TrainState, list[str]]:
    """`state` with each array whose path (without its `params/` or `model_state/` part)
    matches `include` and not `exclude` taken from `named`; the copied paths. The optimizer
    state stays as initialised: a fine-tuned run starts its own optimisation.

    Raises:
        ConfigError: a path to copy that the other run lacks or holds in another shape, or
            patterns that copy nothing.
    """
    copied, missing, shapes = [], [], []

    def take(part: str):
        def one(path, leaf):
            name = path_name(path)
            if not _matches(name, include) or _matches(name, exclude):
                return leaf
            key = f"{part}/{name}"
            if key not in named:
                missing.append(name)
                return leaf
            if tuple(named[key].shape) != tuple(leaf.shape):
                shapes.append(f"{name} ({tuple(named[key].shape)} there, {tuple(leaf.shape)} here)")
                return leaf
            copied.append(name)
            return jax.numpy.asarray(named[key], leaf.dtype)

        return one

    params = jax.tree_util.tree_map_with_path(take("params"), state.params)
    model_state = jax.tree_util.tree_map_with_path(take("model_state"), state.model_state)
    if missing or shapes:
        problems = ([f"missing there: {', '.join(missing[:8])}"] if missing else []) + \
                   ([f"other shapes: {', '.join(shapes[:8])}"] if shapes else [])
        raise ConfigError(f"{source}: {'; '.join(problems)}; exclude them (init_from.exclude) to initialise them afresh")
    if not copied:
        raise ConfigError(f"{source}: include {list(include)} and exclude {list(exclude)} copy no parameter")
    return state._replace(params=params, model_state=model_state), copied
