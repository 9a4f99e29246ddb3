"""Checkpoints: the whole training state, written atomically, loaded without executing code.

A checkpoint is a directory `checkpoints/epoch_EEEE[_bBBBB]/` holding
- `arrays.npz`: every leaf of the `TrainState` pytree (params, optimizer state, model state,
  step) and the run's RNG keys, as plain arrays (NumPy's format, loaded with allow_pickle=False);
- `meta.json`: the position in the data order (epoch, batches done in it), the per-epoch metric
  rows so far (full precision, so a resumed run rewrites metrics.csv exactly), the partial
  epoch's per-batch metrics, and the resolved config.
The tree structure is not stored: it is rebuilt from the config (the same model and optimizer
give the same structure) and every array's shape and dtype is checked against it. That is why
a format this simple serves as well as Orbax here: one host, one process, small pytrees.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from ..errors import CheckpointError

FORMAT = 1



class Position(NamedTuple):
    epoch: int  # epochs finished
    batch: int = 0  # batches of epoch + 1 finished (only the per-step loop stops mid-epoch)


class Checkpoint(NamedTuple):
    state: Any
    keys: dict[str, np.ndarray]
    position: Position
    rows: list[dict[str, Any]]
    partial: list[dict[str, float]]  # per-batch metrics of the unfinished epoch
    config_yaml: str
    path: Path


def save(
    directory: Path,
    state: Any,
    keys: dict[str, Any],
    position: Position,
    rows: list[dict[str, Any]],
    partial: list[dict[str, float]],
    config_yaml: str,
    keep: int,
) -> Path:
    """Write a checkpoint into a temporary directory, rename it into place, prune to `keep`."""
    directory.mkdir(parents=True, exist_ok=True)
    name = f"epoch_{position.epoch:04d}" + (f"_b{position.batch:05d}" if position.batch else "")
    leaves = jax.device_get(jax.tree_util.tree_leaves(state))
    arrays = {f"state_{i:04d}": np.asarray(leaf) for i, leaf in enumerate(leaves)}
    arrays |= {f"key_{k}": np.asarray(jax.random.key_data(v) if _is_typed_key(v) else v) for k, v in keys.items()}
    meta = {
        "format": FORMAT,
        "epoch": position.epoch,
        "batch": position.batch,
        "num_state_arrays": len(leaves),
        "rows": rows,
        "partial": partial,
        "config": config_yaml,
    }
    tmp = Path(tempfile.mkdtemp(dir=directory, prefix=f".{name}."))
    try:
        with open(tmp / "arrays.npz", "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        (tmp / "meta.json").write_text(json.dumps(meta))
        target = directory / name
        if target.exists():
            shutil.rmtree(target)
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in list_checkpoints(directory)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


_NAME = re.compile(r"^epoch_(\d+)(?:_b(\d+))?$")


def position_of(path: Path) -> tuple[int, int] | None:
    """(epoch, batch) from a checkpoint's name, `epoch_0003` or `epoch_0003_b00012`; None otherwise."""
    match = _NAME.match(path.name)
    return (int(match[1]), int(match[2] or 0)) if match else None


def list_checkpoints(directory: Path) -> list[Path]:
    """Finished checkpoints, oldest first, ordered by their numbers (past epoch 9999 the names
    no longer sort; temporary directories start with '.')."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if p.is_dir() and position_of(p) is not None]
    return sorted(found, key=position_of)


def load_latest(directory: Path, template_state: Any) -> Checkpoint:
    """Load the newest checkpoint in `directory` onto the structure of `template_state`."""
    found = list_checkpoints(directory)
    if not found:
        raise CheckpointError(f"{directory}: no checkpoint to resume from")
    return load(found[-1], template_state)


def load(path: Path, template_state: Any) -> Checkpoint:
    try:
        meta = json.loads((path / "meta.json").read_text())
        with np.load(path / "arrays.npz", allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, KeyError) as err:
        raise CheckpointError(f"{path}: unreadable checkpoint ({err})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {meta.get('format')}, expected {FORMAT}")
    leaves, treedef = jax.tree_util.tree_flatten(template_state)
    if meta["num_state_arrays"] != len(leaves):
        raise CheckpointError(
            f"{path}: holds {meta['num_state_arrays']} state arrays but the config's model and optimizer have {len(leaves)}"
        )
    restored = []
    for i, leaf in enumerate(leaves):
        saved = arrays[f"state_{i:04d}"]
        if saved.shape != np.shape(leaf) or saved.dtype != np.asarray(leaf).dtype:
            raise CheckpointError(
                f"{path}: state array {i} is {saved.dtype}{list(saved.shape)}, the config expects "
                f"{np.asarray(leaf).dtype}{list(np.shape(leaf))}"
            )
        restored.append(saved)
    keys = {k.removeprefix("key_"): v for k, v in arrays.items() if k.startswith("key_")}
    return Checkpoint(
        state=jax.tree_util.tree_unflatten(treedef, restored),
        keys=keys,
        position=Position(meta["epoch"], meta["batch"]),
        rows=meta["rows"],
        partial=meta["partial"],
        config_yaml=meta["config"],
        path=path,
    )


def _is_typed_key(x) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
